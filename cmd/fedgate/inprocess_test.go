package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// inProcessRun is "fedgate run" going on its own goroutine of the test,
// logging to an observer at Info level, until stop or the test's end.
type inProcessRun struct {
	t       *testing.T
	logs    *observer.ObservedLogs
	signals chan os.Signal // what run reads: send SIGHUP to reload
	done    chan error
	ended   bool
	err     error
}

// startRun runs fedgate on c, loaded from path. When the test ends it
// stops fedgate with SIGTERM, unless it has stopped already, and fails
// the test if run returned an error.
func startRun(t *testing.T, c *config.Config, path string) *inProcessRun {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	r := &inProcessRun{t: t, logs: logs, signals: make(chan os.Signal, 1), done: make(chan error, 1)}
	go func() { r.done <- run(c, path, zap.New(core), r.signals) }()
	t.Cleanup(func() {
		if r.ended {
			return
		}
		if err := r.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return r
}

// wait waits up to d for run to return, and reports whether it has and
// with what error.
func (r *inProcessRun) wait(d time.Duration) (ended bool, err error) {
	if !r.ended {
		select {
		case r.err = <-r.done:
			r.ended = true
		case <-time.After(d):
		}
	}
	return r.ended, r.err
}

// stop sends SIGTERM, unless run has returned already, and returns run's
// error.
func (r *inProcessRun) stop() error {
	if !r.ended {
		r.signals <- syscall.SIGTERM
		r.err, r.ended = <-r.done, true
	}
	return r.err
}

// waitReady waits up to 20 s until fedgate has logged "fedgate ready" and
// a "listening" line for each of listeners (listeners log from their own
// goroutines, after Start returned), and returns the address of every
// listener logged so far, by name ("federation", "admin", "egress").
func (r *inProcessRun) waitReady(listeners ...string) map[string]string {
	t := r.t
	t.Helper()
	addrs := map[string]string{}
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, e := range r.logs.FilterMessage("listening").All() {
			addr, _ := e.ContextMap()["addr"].(string)
			name, _ := e.ContextMap()["listener"].(string)
			addrs[name] = addr
		}
		ready := r.logs.FilterMessage("fedgate ready").Len() > 0
		for _, l := range listeners {
			ready = ready && addrs[l] != ""
		}
		if ready {
			return addrs
		}
		if ended, err := r.wait(10 * time.Millisecond); ended {
			t.Fatalf("run ended: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("fedgate did not start")
		}
	}
}

// wellKnownOnceCertified asks fedgate's federation listener at tlsAddr
// for name's /.well-known/matrix/server, trusting only what p issues
// (HTTP/2 when offered), until fedgate answers over TLS or 60 s pass,
// and returns the response and its body. It fails the test if fedgate
// stops meanwhile.
func (r *inProcessRun) wellKnownOnceCertified(p *fedtest.Pebble, tlsAddr, name string) (*http.Response, []byte) {
	t := r.t
	t.Helper()
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: p.IssuerRoots, ServerName: name},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
			},
			ForceAttemptHTTP2: true,
		},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("https://" + name + "/.well-known/matrix/server")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp, body
		}
		if ended, err := r.wait(50 * time.Millisecond); ended {
			t.Fatalf("fedgate stopped: %v; logs: %v", err, r.logs.All())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s after 60s (last error %v); logs: %v", name, err, r.logs.All())
		}
	}
}

// startPebbleForRun starts Pebble resolving names to 127.0.0.1 and
// validating on two loopback addresses free a moment ago, which it
// returns for fedgate's plain listener (HTTP-01) and its federation
// listener (TLS-ALPN-01).
func startPebbleForRun(t *testing.T, names ...string) (p *fedtest.Pebble, httpAddr, tlsAddr string) {
	t.Helper()
	bin := fedtest.PebbleBinary(t)
	var records []string
	for _, n := range names {
		records = append(records, n+". 60 IN A 127.0.0.1")
	}
	dns := fedtest.StartDNS(t, records...)
	httpAddr, tlsAddr = fedtest.FreeAddr(t), fedtest.FreeAddr(t)
	_, httpPort, _ := net.SplitHostPort(httpAddr)
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	hp, _ := strconv.Atoi(httpPort)
	tp, _ := strconv.Atoi(tlsPort)
	p = fedtest.StartPebble(t, fedtest.PebbleOptions{Binary: bin, DNS: dns, HTTPPort: hp, TLSPort: tp})
	return p, httpAddr, tlsAddr
}
