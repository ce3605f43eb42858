package certs_test

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// roundRobin accepts connections on front and splices each to the next
// backend in turn, as an L4 load balancer in front of a cluster does.
func roundRobin(t *testing.T, front net.Listener, backends ...string) {
	t.Helper()
	var n atomic.Uint64
	var wg sync.WaitGroup
	t.Cleanup(func() {
		front.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			addr := backends[n.Add(1)%uint64(len(backends))]
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				b, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{})
				go func() {
					io.Copy(b, c)
					b.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				io.Copy(c, b)
				<-done
			}()
		}
	}()
}

// TestACMEClusterOneCertificate: two fedgate instances behind a load
// balancer share one Redis. Pebble's HTTP-01 validation reaches either of
// them; one instance orders the certificate under the Redis lock, and both
// serve that same certificate.
func TestACMEClusterOneCertificate(t *testing.T) {
	t.Parallel()
	bin := fedtest.PebbleBinary(t)
	r := fedtest.StartRedis(t)
	const name = "cluster.fedgate.test"
	dns := fedtest.StartDNS(t, name+". 60 IN A 127.0.0.1")
	front := listen(t) // where Pebble validates HTTP-01
	p := fedtest.StartPebble(t, fedtest.PebbleOptions{Binary: bin, DNS: dns, HTTPPort: portOf(front), Validity: time.Hour})

	type instance struct {
		m       *certs.Manager
		tlsAddr string
		obtains func() bool
	}
	var inst [2]instance
	var httpAddrs []string
	for i := range inst {
		cl, err := cluster.New(cluster.Options{URL: r.URL, Prefix: "acmetest:", Node: []string{"a", "b"}[i], Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		fedtest.RunUntilCleanup(t, cl.Run, cl.Close)
		logger, logs := observedLogger()
		httpLn, tlsLn := listen(t), listen(t)
		m, err := certs.New(certs.Options{
			Mode:              certs.ModeACME,
			Names:             []string{name},
			Logger:            logger,
			Email:             "ops@fedgate.test",
			CA:                p.DirURL,
			CARoot:            p.APIRootFile,
			SharedStorage:     cl.CertStorage(cluster.CertStorageOptions{}),
			HTTPChallengeAddr: httpLn.Addr().String(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Stop)
		httpAddrs = append(httpAddrs, serveHTTP(t, httpLn, m.HTTPHandler(http.NotFoundHandler())))
		inst[i] = instance{m: m, tlsAddr: serveTLS(t, tlsLn, m.TLSConfig(), okHandler), obtains: func() bool { return hasLog(logs, "certificate obtained") }}
	}
	roundRobin(t, front, httpAddrs...)
	for i := range inst {
		if err := inst[i].m.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range inst {
		waitFor(t, 90*time.Second, "a certificate on every instance", func() bool { ok, _ := inst[i].m.Ready(); return ok })
	}
	a := getOverTLS(t, inst[0].tlsAddr, name, p.IssuerRoots).PeerCertificates[0]
	b := getOverTLS(t, inst[1].tlsAddr, name, p.IssuerRoots).PeerCertificates[0]
	if a.SerialNumber.Cmp(b.SerialNumber) != 0 {
		t.Fatalf("the instances serve different certificates: %s and %s", a.SerialNumber.Text(16), b.SerialNumber.Text(16))
	}
	if inst[0].obtains() == inst[1].obtains() {
		t.Fatalf("certificate obtained by instance a: %v, by b: %v; want exactly one", inst[0].obtains(), inst[1].obtains())
	}
}
