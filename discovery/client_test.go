package discovery_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func put(t *testing.T, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, "/_matrix/federation/v1/send/1", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// TestFailover: targets are tried in order while connecting fails.
func TestFailover(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		first func(t *testing.T, e *env) int // port of the first SRV target
		body  io.Reader                      // nil: strings.Reader (has GetBody)
	}{
		{"connection refused", func(t *testing.T, _ *env) int { return closedPort(t) }, nil},
		{"certificate for another name", func(t *testing.T, e *env) int {
			return int(startServer(t, e.ca, "nope.test").Port)
		}, nil},
		{"certificate from an unknown CA", func(t *testing.T, _ *env) int {
			return int(startServer(t, fedtest.NewCA(t), "wk.test").Port)
		}, nil},
		{"body without GetBody is buffered", func(t *testing.T, _ *env) int { return closedPort(t) },
			io.MultiReader(strings.NewReader(`{"pdus":`), strings.NewReader(`[]}`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			first := tt.first(t, e)
			e.zone("wk.test. 300 IN A 127.0.0.1",
				"_matrix-fed._tcp.wk.test. 300 IN SRV 10 0 "+strconv.Itoa(first)+" target.test.",
				"_matrix-fed._tcp.wk.test. 300 IN SRV 20 0 {port} target.test.",
				"target.test. 300 IN A 127.0.0.1")
			c := e.client(e.options())
			req := put(t, `{"pdus":[]}`)
			if tt.body != nil {
				req.Body, req.GetBody, req.ContentLength = io.NopCloser(tt.body), nil, 0
			}
			resp, err := c.Do(ctxT(t), "wk.test", req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var got []seen
			for _, r := range e.srv.Requests() {
				if r.Method == http.MethodPut {
					got = append(got, r)
				}
			}
			if len(got) != 1 || got[0].Body != `{"pdus":[]}` || got[0].SNI != "wk.test" || got[0].Host != "wk.test" {
				t.Fatalf("second target saw %+v", got)
			}
		})
	}
}

// TestNoRetryAfterWrite: once a target may have received the request, no
// other target is tried.
func TestNoRetryAfterWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The first target completes TLS, reads the request and hangs up.
	cert := e.ca.Issue(t, "wk.test")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err == nil {
			b, _ := io.ReadAll(req.Body)
			got <- string(b)
		}
		conn.Close()
	}()
	e.zone("wk.test. 300 IN A 127.0.0.1",
		"_matrix-fed._tcp.wk.test. 300 IN SRV 10 0 "+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)+" target.test.",
		"_matrix-fed._tcp.wk.test. 300 IN SRV 20 0 {port} target.test.",
		"target.test. 300 IN A 127.0.0.1")
	c := e.client(e.options())
	_, err = c.Do(ctxT(t), "wk.test", put(t, `{"pdus":[]}`))
	if phaseOf(err) != discovery.PhaseRequest {
		t.Fatalf("want a request error, got %v", err)
	}
	if b := <-got; b != `{"pdus":[]}` {
		t.Fatalf("first target got %q", b)
	}
	if n := e.srv.Count("/_matrix/"); n != 0 {
		t.Fatalf("the request was sent again to the second target (%d)", n)
	}
}

func TestAllTargetsFail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p1, p2 := closedPort(t), closedPort(t)
	e.zone("wk.test. 300 IN A 127.0.0.1",
		"_matrix-fed._tcp.wk.test. 300 IN SRV 10 0 "+strconv.Itoa(p1)+" target.test.",
		"_matrix-fed._tcp.wk.test. 300 IN SRV 20 0 "+strconv.Itoa(p2)+" target.test.",
		"target.test. 300 IN A 127.0.0.1")
	c := e.client(e.options())
	_, err := c.Get(ctxT(t), "wk.test", "/_matrix/key/v2/server", 1<<16)
	if phaseOf(err) != discovery.PhaseDial {
		t.Fatalf("want a dial error, got %v", err)
	}
	for _, p := range []int{p1, p2} {
		if !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(p)) {
			t.Errorf("error does not mention target port %d: %v", p, err)
		}
	}
}

// TestRequestTargetExact: the request-target goes out byte for byte.
func TestRequestTargetExact(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone("host.test. 300 IN A 127.0.0.1")
	c := e.client(e.options())
	name := e.expand("host.test:{port}")
	for _, target := range []string{
		"/_matrix/federation/v1/send/%21abc%3Ahost.test",
		"/_matrix/federation/v1/state/%21a%3Ab/?event_id=%24x%2Fy",
		"/_matrix/federation/v1/query/profile?user_id=%40u%3ahost.test&field=displayname",
		"/_matrix/federation/v1/make_join/!r:h/@u:h?ver=1&ver=10",
		"/_matrix/media/v3/x;y?a=%zz;b",
	} {
		path, query, _ := strings.Cut(target, "?")
		req := &http.Request{Method: http.MethodGet, URL: &url.URL{Opaque: path, RawQuery: query}, Header: http.Header{}}
		resp, err := c.Do(ctxT(t), name, req)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		resp.Body.Close()
		reqs := e.srv.Requests()
		if got := reqs[len(reqs)-1].URI; got != target {
			t.Errorf("sent %q, server saw %q", target, got)
		}
	}
}

// TestConnectionReuse: connections are pooled per (TLS name, address).
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	t.Run("pooled", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.zone("host.test. 300 IN A 127.0.0.1", "alias.test. 300 IN A 127.0.0.1")
		c := e.client(e.options())
		for range 3 {
			for _, n := range []string{"host.test:{port}", "alias.test:{port}", "127.0.0.1:{port}"} {
				if _, err := c.Get(ctxT(t), e.expand(n), "/_matrix/federation/v1/version", 1<<10); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Same address, three TLS names: three connections, each reused.
		if n := e.srv.Conns(); n != 3 {
			t.Fatalf("%d connections, want 3", n)
		}
		seenSNI := map[string]bool{}
		for _, r := range e.srv.Requests() {
			seenSNI[r.SNI] = true
		}
		if len(seenSNI) != 3 {
			t.Fatalf("SNI values %v", seenSNI)
		}
	})
	t.Run("keep-alive off", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		o := e.options()
		o.MaxIdlePerHost = -1
		c := e.client(o)
		for range 3 {
			if _, err := c.Get(ctxT(t), e.expand("127.0.0.1:{port}"), "/_matrix/federation/v1/version", 1<<10); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.srv.Conns(); n != 3 {
			t.Fatalf("%d connections, want 3", n)
		}
	})
}

func TestCertificateChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		serverName string
		names      []string // the server certificate's names
		otherCA    bool
		insecure   []string
		zone       []string
		ok         bool
	}{
		{name: "SRV: checked against the name looked up, not the target", serverName: "wk.test",
			names: []string{"target.test"},
			zone:  []string{"_matrix-fed._tcp.wk.test. 300 IN SRV 10 0 {port} target.test.", "target.test. 300 IN A 127.0.0.1"}},
		{name: "IP literal needs an IP SAN", serverName: "127.0.0.1:{port}", names: []string{"localhost"}},
		{name: "unknown CA", serverName: "host.test:{port}", names: []string{"host.test"}, otherCA: true,
			zone: []string{"host.test. 300 IN A 127.0.0.1"}},
		{name: "insecure glob skips verification", serverName: "host.test:{port}", names: []string{"host.test"}, otherCA: true,
			insecure: []string{"*.test"}, zone: []string{"host.test. 300 IN A 127.0.0.1"}, ok: true},
		{name: "insecure glob for another name", serverName: "host.test:{port}", names: []string{"host.test"}, otherCA: true,
			insecure: []string{"other.test"}, zone: []string{"host.test. 300 IN A 127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ca := e.ca
			if tt.otherCA {
				ca = fedtest.NewCA(t)
			}
			e.srv = startServer(t, ca, tt.names...)
			e.zone(tt.zone...)
			o := e.options()
			o.InsecureSkipVerify = tt.insecure
			c := e.client(o)
			_, err := c.Get(ctxT(t), e.expand(tt.serverName), "/_matrix/federation/v1/version", 1<<10)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok && phaseOf(err) != discovery.PhaseTLS {
				t.Fatalf("phase %q: %v", phaseOf(err), err)
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, serverName, target string
		zone                     []string
		sni                      string
	}{
		{"IP target", "override.test", "127.0.0.1:{port}", nil, "override.test"},
		{"host target", "override.test:8448", "host.test:{port}", []string{"host.test. 300 IN A 127.0.0.1"}, "override.test"},
		{"case-insensitive key", "OVERRIDE.test", "127.0.0.1:{port}", nil, "OVERRIDE.test"},
		{"IP literal server name", "[2001:db8::1]", "127.0.0.1:{port}", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tt.sni == "" {
				e.srv = startServer(t, e.ca, "2001:db8::1")
			}
			e.zone(tt.zone...)
			o := e.options()
			o.AllowNetworks = nil // the guard does not apply to overrides
			o.Overrides = map[string]string{strings.ToLower(tt.serverName): e.expand(tt.target)}
			c := e.client(o)
			res, err := c.Resolver().Resolve(ctxT(t), tt.serverName)
			if err != nil {
				t.Fatal(err)
			}
			if res.Rule != discovery.RuleOverride || !res.Targets[0].Override {
				t.Fatalf("%+v", res)
			}
			if _, err := c.Get(ctxT(t), tt.serverName, "/_matrix/key/v2/server", 1<<10); err != nil {
				t.Fatal(err)
			}
			got := e.srv.Requests()
			if len(got) != 1 || got[0].Host != tt.serverName || got[0].SNI != tt.sni {
				t.Fatalf("server saw %+v, want Host %q SNI %q", got, tt.serverName, tt.sni)
			}
			for _, q := range e.dns.Queries() {
				if strings.Contains(q.Name, "override") || strings.HasPrefix(q.Name, "_") {
					t.Errorf("discovery ran for an overridden name: %+v", q)
				}
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	t.Run("response headers", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop) })
		e.srv.Handle(func(http.ResponseWriter, *http.Request) { <-stop })
		o := e.options()
		o.ResponseHeaderTimeout = 100 * time.Millisecond
		c := e.client(o)
		_, err := c.Get(ctxT(t), e.expand("127.0.0.1:{port}"), "/_matrix/federation/v1/version", 1<<10)
		if phaseOf(err) != discovery.PhaseRequest || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("stalled body", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop) })
		e.srv.Handle(func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(`{"partial":`))
			w.(http.Flusher).Flush()
			<-stop
		})
		o := e.options()
		o.ReadIdleTimeout = 100 * time.Millisecond
		c := e.client(o)
		_, err := c.Get(ctxT(t), e.expand("127.0.0.1:{port}"), "/_matrix/federation/v1/version", 1<<10)
		if phaseOf(err) != discovery.PhaseRequest || !strings.Contains(err.Error(), "read idle timeout") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestGetStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.srv.Handle(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		w.Write(bytes.Repeat([]byte("x"), 1000))
	})
	c := e.client(e.options())
	_, err := c.Get(ctxT(t), e.expand("127.0.0.1:{port}"), "/_matrix/key/v2/server", 1<<10)
	var se *discovery.StatusError
	if phaseOf(err) != discovery.PhaseStatus || !errors.As(err, &se) || se.StatusCode != 404 || len(se.Body) != 256 {
		t.Fatalf("got %v", err)
	}
	e.srv.Handle(func(w http.ResponseWriter, _ *http.Request) { w.Write(make([]byte, 2000)) })
	if _, err = c.Get(ctxT(t), e.expand("127.0.0.1:{port}"), "/_matrix/key/v2/server", 1000); !strings.Contains(err.Error(), "larger than 1000 bytes") {
		t.Fatalf("got %v", err)
	}
}

// TestSSRFGuard: special-purpose addresses are refused unless allowed, at
// every step, and never dialled.
func TestSSRFGuard(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		serverName string
		zone       []string
	}{
		{"cloud metadata address", "metadata.test:{port}", []string{"metadata.test. 300 IN A 169.254.169.254"}},
		{"loopback", "host.test:{port}", []string{"host.test. 300 IN A 127.0.0.1"}},
		{"loopback IP literal", "127.0.0.1:{port}", nil},
		{"IPv4-mapped loopback", "host.test:{port}", []string{"host.test. 300 IN AAAA ::ffff:127.0.0.1"}},
		{"NAT64 embedding loopback", "host.test:{port}", []string{"host.test. 300 IN AAAA 64:ff9b::7f00:1"}},
		{"private network", "host.test:{port}", []string{"host.test. 300 IN A 10.1.2.3"}},
		{"SRV target on loopback", "wk.test", []string{"wk.test. 300 IN A 127.0.0.1",
			"_matrix-fed._tcp.wk.test. 300 IN SRV 10 0 {port} target.test.", "target.test. 300 IN A 127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.zone(tt.zone...)
			o := e.options()
			o.AllowNetworks = nil
			o.DialTimeout = 200 * time.Millisecond // 169.254.169.254 must never be dialled, but do not hang if it were
			c := e.client(o)
			_, err := c.Get(ctxT(t), e.expand(tt.serverName), "/_matrix/key/v2/server", 1<<10)
			if phaseOf(err) != discovery.PhaseGuard || !errors.Is(err, discovery.ErrBlocked) {
				t.Fatalf("want the guard to refuse, got %v", err)
			}
			if n := e.srv.Conns(); n != 0 {
				t.Fatalf("%d connections reached the server", n)
			}
		})
	}
}

// TestSSRFGuardWellKnownRedirect: a well-known document on an allowed
// address that redirects to loopback is not followed there.
func TestSSRFGuardWellKnownRedirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if !e.srv.V6 {
		t.Skip("no IPv6 loopback")
	}
	e.zone("wk.test. 300 IN AAAA ::1", "other.test. 300 IN A 127.0.0.1")
	e.srv.WellKnown("wk.test", reply{status: http.StatusFound,
		header: map[string]string{"Location": "https://127.0.0.1/.well-known/matrix/server"}})
	e.srv.WellKnown("127.0.0.1", delegation(`{"m.server":"other.test"}`))
	o := e.options()
	o.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("::1/128")}
	c := e.client(o)
	res, err := c.Resolver().Resolve(ctxT(t), "wk.test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Rule != "6" || !strings.Contains(res.Steps[0].Error, "SSRF guard") {
		t.Fatalf("rule %s, steps %v", res.Rule, res.Steps)
	}
	for _, r := range e.srv.Requests() {
		if !strings.HasPrefix(r.Local, "[::1]") {
			t.Fatalf("a request reached %s: %+v", r.Local, r)
		}
	}
	if n := e.srv.Count("/.well-known/"); n != 1 {
		t.Fatalf("%d well-known requests, want 1", n)
	}
}

func TestDialTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone("host.test. 300 IN A 127.0.0.1", "metadata.test. 300 IN A 169.254.169.254")
	allowed := e.client(e.options()).Resolver()
	o := e.options()
	o.AllowNetworks = nil
	guarded := e.client(o).Resolver()
	conn, err := allowed.DialTCP(ctxT(t), "host.test", e.srv.Port)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	for _, tt := range []struct {
		r     *discovery.Resolver
		host  string
		phase discovery.Phase
	}{
		{guarded, "host.test", discovery.PhaseGuard},
		{guarded, "metadata.test", discovery.PhaseGuard},
		{guarded, "::1", discovery.PhaseGuard},
		{allowed, "missing.test", discovery.PhaseDNS},
	} {
		if _, err := tt.r.DialTCP(ctxT(t), tt.host, e.srv.Port); phaseOf(err) != tt.phase {
			t.Errorf("%s: got %v, want phase %s", tt.host, err, tt.phase)
		}
	}
	if n := e.srv.Conns(); n != 1 {
		t.Fatalf("%d connections reached the server, want 1", n)
	}
}
