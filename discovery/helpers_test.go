package discovery_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// loopback is what tests that expect success allow through the SSRF guard.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func newClock() *fedtest.Clock { return fedtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) }

// seen is what a test server saw of one request.
type seen struct {
	SNI, Host, URI, Method, Body string
	Local                        string // the listener's address
}

// reply is a canned answer.
type reply struct {
	status int
	header map[string]string
	body   string
	wait   <-chan struct{} // if set, the answer waits until it is closed
}

// server is a TLS server on 127.0.0.1 and, when available, [::1], on the
// same port. It serves well-known documents per Host and records every
// request with the SNI it arrived with.
type server struct {
	t      testing.TB
	Port   uint16
	V6     bool // also listening on [::1]
	mu     sync.Mutex
	reqs   []seen
	wk     map[string]reply // by Host header
	conns  int              // TCP connections accepted
	handle http.HandlerFunc // non-well-known requests; nil answers 200 {"server":{...}}
}

// startServer starts a server whose certificate (from ca) covers names.
func startServer(t testing.TB, ca *fedtest.CA, names ...string) *server {
	t.Helper()
	s := &server{t: t, wk: map[string]reply{}}
	cert := ca.Issue(t, names...)
	var lns []net.Listener
	for attempt := 0; ; attempt++ {
		ln4, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln4.Addr().(*net.TCPAddr).Port
		ln6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err == nil {
			lns, s.V6 = []net.Listener{ln4, ln6}, true
			break
		}
		if attempt == 20 || !ipv6Works() {
			lns = []net.Listener{ln4}
			break
		}
		ln4.Close() // port taken on ::1; pick another
	}
	s.Port = uint16(lns[0].Addr().(*net.TCPAddr).Port)
	hs := &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.mu.Lock()
				s.conns++
				s.mu.Unlock()
			}
		},
	}
	for _, ln := range lns {
		tl := tls.NewListener(ln, hs.TLSConfig)
		go hs.Serve(tl)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	})
	return s
}

var ipv6Once = sync.OnceValue(func() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
})

func ipv6Works() bool { return ipv6Once() }

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sni := ""
	if r.TLS != nil {
		sni = r.TLS.ServerName
	}
	local := ""
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, seen{SNI: sni, Host: r.Host, URI: r.RequestURI, Method: r.Method, Body: string(body), Local: local})
	wk, hasWK := s.wk[r.Host]
	handle := s.handle
	s.mu.Unlock()
	if r.URL.Path == "/.well-known/matrix/server" {
		if !hasWK {
			http.NotFound(w, r)
			return
		}
		if wk.wait != nil {
			<-wk.wait
		}
		for k, v := range wk.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(max(wk.status, 200))
		io.WriteString(w, wk.body)
		return
	}
	if handle != nil {
		handle(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"server":{"name":"test","version":"1"}}`)
}

// WellKnown sets the answer for GET https://host/.well-known/matrix/server.
func (s *server) WellKnown(host string, r reply) {
	s.mu.Lock()
	s.wk[host] = r
	s.mu.Unlock()
}

// Handle sets the handler for everything but well-known.
func (s *server) Handle(h http.HandlerFunc) {
	s.mu.Lock()
	s.handle = h
	s.mu.Unlock()
}

// Requests returns the requests seen so far.
func (s *server) Requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

// Count counts requests for a path.
func (s *server) Count(path string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasPrefix(r.URI, path) {
			n++
		}
	}
	return n
}

// Conns is the number of TCP connections accepted so far.
func (s *server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// env is one test's little internet: a DNS server, a CA and a server.
type env struct {
	t     testing.TB
	ca    *fedtest.CA
	dns   *fedtest.DNS
	srv   *server
	clock *fedtest.Clock
}

// names every test certificate covers.
var testNames = []string{"127.0.0.1", "::1", "example.test", "host.test", "alias.test", "wk.test",
	"deleg.test", "target.test", "other.test", "override.test"}

func newEnv(t testing.TB) *env {
	t.Helper()
	ca := fedtest.NewCA(t)
	return &env{t: t, ca: ca, dns: fedtest.StartDNS(t), srv: startServer(t, ca, testNames...), clock: newClock()}
}

// zone adds zone lines to the DNS server; "{port}" becomes the server's port.
func (e *env) zone(lines ...string) {
	e.t.Helper()
	for _, l := range lines {
		e.dns.Add(e.t, strings.ReplaceAll(l, "{port}", strconv.Itoa(int(e.srv.Port))))
	}
}

// options returns resolver options for this env: its DNS server, its CA,
// ports 443 and 8448 mapped to the server, loopback allowed.
func (e *env) options() discovery.Options {
	return discovery.Options{
		Resolvers:     []string{e.dns.Addr},
		RootCAs:       e.ca.Pool(),
		AllowNetworks: loopback,
		PortMap:       map[uint16]uint16{443: e.srv.Port, 8448: e.srv.Port},
		DNSTimeout:    2 * time.Second,
		Now:           e.clock.Now,
	}
}

func (e *env) client(o discovery.Options) *discovery.Client {
	e.t.Helper()
	r, err := discovery.NewResolver(o)
	if err != nil {
		e.t.Fatal(err)
	}
	c := discovery.NewClient(r)
	e.t.Cleanup(c.CloseIdleConnections)
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor spins until cond holds (it observes other goroutines arriving
// somewhere, so there is no event to wait on), failing after 20 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never became true")
		}
		runtime.Gosched()
	}
}

// phaseOf returns the Phase of a *discovery.Error, or "".
func phaseOf(err error) discovery.Phase {
	var de *discovery.Error
	if errors.As(err, &de) {
		return de.Phase
	}
	return ""
}

// expand replaces {port} in s.
func (e *env) expand(s string) string {
	return strings.ReplaceAll(s, "{port}", fmt.Sprint(e.srv.Port))
}
