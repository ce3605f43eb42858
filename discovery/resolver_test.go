package discovery_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestSpecTable walks every row of the spec's resolution table: it resolves
// the name, then sends a request and checks the Host header and SNI the
// server received.
func TestSpecTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		serverName string
		zone       []string
		wellKnown  map[string]string // host -> m.server
		ipv6       bool
		rule       string
		host       string // Host header expected ({port} expanded)
		sni        string // SNI expected; "" = none
	}{
		{name: "1 IPv4 literal with port", serverName: "127.0.0.1:{port}", rule: "1", host: "127.0.0.1:{port}"},
		{name: "1 IPv4 literal, default port 8448", serverName: "127.0.0.1", rule: "1", host: "127.0.0.1"},
		{name: "1 IPv6 literal with port", serverName: "[::1]:{port}", ipv6: true, rule: "1", host: "[::1]:{port}"},
		{name: "1 IPv6 literal, default port", serverName: "[::1]", ipv6: true, rule: "1", host: "[::1]"},
		{
			name: "2 explicit port", serverName: "host.test:{port}",
			zone: []string{"host.test. 300 IN A 127.0.0.1"},
			rule: "2", host: "host.test:{port}", sni: "host.test",
		},
		{
			name: "2 explicit port through a CNAME", serverName: "alias.test:{port}",
			zone: []string{"alias.test. 300 IN CNAME host.test.", "host.test. 300 IN A 127.0.0.1"},
			rule: "2", host: "alias.test:{port}", sni: "alias.test",
		},
		{
			name: "3.1 delegated to an IPv4 literal with port", serverName: "wk.test",
			zone:      []string{"wk.test. 300 IN A 127.0.0.1"},
			wellKnown: map[string]string{"wk.test": "127.0.0.1:{port}"},
			rule:      "3.1", host: "127.0.0.1:{port}",
		},
		{
			name: "3.1 delegated to an IPv6 literal without port", serverName: "wk.test",
			zone:      []string{"wk.test. 300 IN A 127.0.0.1"},
			wellKnown: map[string]string{"wk.test": "[::1]"}, ipv6: true,
			rule: "3.1", host: "[::1]",
		},
		{
			name: "3.2 delegated hostname with port", serverName: "wk.test",
			zone:      []string{"wk.test. 300 IN A 127.0.0.1", "deleg.test. 300 IN A 127.0.0.1"},
			wellKnown: map[string]string{"wk.test": "deleg.test:{port}"},
			rule:      "3.2", host: "deleg.test:{port}", sni: "deleg.test",
		},
		{
			name: "3.3 delegated hostname, _matrix-fed SRV", serverName: "wk.test",
			zone: []string{"wk.test. 300 IN A 127.0.0.1",
				"_matrix-fed._tcp.deleg.test. 300 IN SRV 10 5 {port} target.test.",
				"_matrix._tcp.deleg.test. 300 IN SRV 10 5 1 nowhere.test.",
				"target.test. 300 IN A 127.0.0.1"},
			wellKnown: map[string]string{"wk.test": "deleg.test"},
			rule:      "3.3", host: "deleg.test", sni: "deleg.test",
		},
		{
			name: "3.4 delegated hostname, deprecated _matrix SRV", serverName: "wk.test",
			zone: []string{"wk.test. 300 IN A 127.0.0.1",
				"_matrix._tcp.deleg.test. 300 IN SRV 10 5 {port} target.test.",
				"target.test. 300 IN A 127.0.0.1"},
			wellKnown: map[string]string{"wk.test": "deleg.test"},
			rule:      "3.4", host: "deleg.test", sni: "deleg.test",
		},
		{
			name: "3.5 delegated hostname, A on 8448", serverName: "wk.test",
			zone:      []string{"wk.test. 300 IN A 127.0.0.1", "deleg.test. 300 IN A 127.0.0.1"},
			wellKnown: map[string]string{"wk.test": "deleg.test"},
			rule:      "3.5", host: "deleg.test", sni: "deleg.test",
		},
		{
			name: "4 no well-known, _matrix-fed SRV", serverName: "wk.test",
			zone: []string{"wk.test. 300 IN A 127.0.0.1",
				"_matrix-fed._tcp.wk.test. 300 IN SRV 10 5 {port} target.test.",
				"target.test. 300 IN A 127.0.0.1"},
			rule: "4", host: "wk.test", sni: "wk.test",
		},
		{
			// RFC 2782 forbids aliases as SRV targets, but Synapse and
			// Dendrite follow them; refusing would break federation with
			// servers that work with everyone else.
			name: "4 SRV target is a CNAME", serverName: "wk.test",
			zone: []string{"wk.test. 300 IN A 127.0.0.1",
				"_matrix-fed._tcp.wk.test. 300 IN SRV 10 5 {port} alias.test.",
				"alias.test. 300 IN CNAME target.test.", "target.test. 300 IN A 127.0.0.1"},
			rule: "4", host: "wk.test", sni: "wk.test",
		},
		{
			name: "5 no well-known, deprecated _matrix SRV", serverName: "wk.test",
			zone: []string{"wk.test. 300 IN A 127.0.0.1",
				"_matrix._tcp.wk.test. 300 IN SRV 10 5 {port} target.test.",
				"target.test. 300 IN A 127.0.0.1"},
			rule: "5", host: "wk.test", sni: "wk.test",
		},
		{
			name: "6 no well-known, no SRV, A on 8448", serverName: "wk.test",
			zone: []string{"wk.test. 300 IN A 127.0.0.1"},
			rule: "6", host: "wk.test", sni: "wk.test",
		},
		{
			name: "6 AAAA on 8448", serverName: "wk.test", ipv6: true,
			zone: []string{"wk.test. 300 IN AAAA ::1"},
			rule: "6", host: "wk.test", sni: "wk.test",
		},
		{
			name: "6 through a CNAME", serverName: "alias.test",
			zone: []string{"alias.test. 300 IN CNAME host.test.", "host.test. 300 IN A 127.0.0.1"},
			rule: "6", host: "alias.test", sni: "alias.test",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tt.ipv6 && !e.srv.V6 {
				t.Skip("no IPv6 loopback")
			}
			e.zone(tt.zone...)
			for host, ms := range tt.wellKnown {
				e.srv.WellKnown(host, reply{header: map[string]string{"Content-Type": "application/json"},
					body: `{"m.server":"` + e.expand(ms) + `"}`})
			}
			c := e.client(e.options())
			name := e.expand(tt.serverName)
			res, err := c.Resolver().Resolve(ctxT(t), name)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if res.Rule != tt.rule || res.Host != e.expand(tt.host) || res.TLSServerName != tt.sni {
				t.Fatalf("got rule %q Host %q TLS name %q, want %q %q %q\nsteps: %v",
					res.Rule, res.Host, res.TLSServerName, tt.rule, e.expand(tt.host), tt.sni, res.Steps)
			}
			if res.ServerName != name {
				t.Errorf("ServerName %q", res.ServerName)
			}
			if _, err := c.Get(ctxT(t), name, "/_matrix/federation/v1/version", 1<<20); err != nil {
				t.Fatalf("Get: %v", err)
			}
			var fed []seen
			for _, r := range e.srv.Requests() {
				if r.URI == "/.well-known/matrix/server" {
					// The well-known fetch goes to the server name's host
					// with normal SNI and no port in Host.
					if r.SNI != strings.Split(name, ":")[0] || r.Host != r.SNI {
						t.Errorf("well-known fetch arrived with SNI %q Host %q", r.SNI, r.Host)
					}
					continue
				}
				fed = append(fed, r)
			}
			if len(fed) != 1 {
				t.Fatalf("server saw %d federation requests: %+v", len(fed), fed)
			}
			got := fed[0]
			if got.Host != e.expand(tt.host) || got.SNI != tt.sni || got.URI != "/_matrix/federation/v1/version" {
				t.Errorf("server saw Host %q SNI %q URI %q, want Host %q SNI %q", got.Host, got.SNI, got.URI, e.expand(tt.host), tt.sni)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		serverName string
		zone       []string
		setup      func(*env)
		phase      discovery.Phase
		is         error
	}{
		{name: "invalid name", serverName: "bad name", phase: discovery.PhaseName},
		{name: "port out of range", serverName: "host.test:70000", phase: discovery.PhaseName},
		{name: "unbracketed IPv6", serverName: "::1", phase: discovery.PhaseName},
		{name: "no such host", serverName: "missing.test:8448", phase: discovery.PhaseDNS, is: discovery.ErrNotFound},
		{name: "nothing at all", serverName: "missing.test", phase: discovery.PhaseDNS, is: discovery.ErrNotFound},
		{
			name: "SRV target dot: no service", serverName: "wk.test",
			zone:  []string{"wk.test. 300 IN A 127.0.0.1", "_matrix-fed._tcp.wk.test. 300 IN SRV 0 0 0 ."},
			phase: discovery.PhaseDNS, is: discovery.ErrServiceUnavailable,
		},
		{
			// SERVFAIL on the SRV question must not fall through to port 8448.
			name: "SRV SERVFAIL stops", serverName: "wk.test",
			zone:  []string{"wk.test. 300 IN A 127.0.0.1"},
			setup: func(e *env) { e.dns.Set("_matrix-fed._tcp.wk.test", fedtest.ServFail) },
			phase: discovery.PhaseDNS,
		},
		{
			name: "A SERVFAIL", serverName: "host.test:8448",
			setup: func(e *env) { e.dns.Set("host.test", fedtest.ServFail) },
			phase: discovery.PhaseDNS,
		},
		{
			name: "CNAME loop", serverName: "alias.test:8448",
			zone:  []string{"alias.test. 300 IN CNAME other.test.", "other.test. 300 IN CNAME alias.test."},
			phase: discovery.PhaseDNS,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.zone(tt.zone...)
			if tt.setup != nil {
				tt.setup(e)
			}
			c := e.client(e.options())
			res, err := c.Resolver().Resolve(ctxT(t), tt.serverName)
			if err == nil {
				t.Fatalf("resolved to %+v", res)
			}
			if phaseOf(err) != tt.phase || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("error %v: phase %q, want %q (is %v)", err, phaseOf(err), tt.phase, tt.is)
			}
			if !strings.HasPrefix(err.Error(), tt.serverName+": ") {
				t.Errorf("error does not name the server: %v", err)
			}
		})
	}
}

// TestSRVTargetsFollowCNAMEOwner: the SRV owner name may be an alias; the
// targets are resolved, each in RFC 2782 order, all kept.
func TestSRVTargetsOrdered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone("wk.test. 300 IN A 127.0.0.1",
		"_matrix-fed._tcp.wk.test. 300 IN SRV 20 0 2222 other.test.",
		"_matrix-fed._tcp.wk.test. 300 IN SRV 10 0 1111 target.test.",
		"target.test. 300 IN A 127.0.0.1",
		"target.test. 300 IN AAAA ::1",
		"other.test. 300 IN A 127.0.0.2")
	c := e.client(e.options())
	res, err := c.Resolver().Resolve(ctxT(t), "wk.test")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range res.Targets {
		got = append(got, tg.Addr.String()+"/"+tg.Host)
	}
	want := "[::1]:1111/target.test 127.0.0.1:1111/target.test 127.0.0.2:2222/other.test"
	if strings.Join(got, " ") != want {
		t.Fatalf("targets %v, want %s", got, want)
	}
}

// TestResolveCachesDNS: answers are reused until their TTL passes.
func TestResolveCachesDNS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone("host.test. 300 IN A 127.0.0.1", "missing.test. 300 IN TXT \"x\"")
	c := e.client(e.options())
	r := c.Resolver()
	for i := range 3 {
		res, err := r.Resolve(ctxT(t), "host.test:8448")
		if err != nil {
			t.Fatal(err)
		}
		last := res.Steps[len(res.Steps)-1]
		if last.Cached != (i > 0) {
			t.Errorf("lookup %d: cached=%v", i, last.Cached)
		}
		// The empty AAAA answer (no SOA: cached a minute) expires first.
		if want := e.clock.Now().Add(time.Minute); i == 0 && !res.Expires.Equal(want) {
			t.Errorf("Expires %v, want %v", res.Expires, want)
		}
	}
	if n := e.dns.CountQueries("host.test", "A"); n != 1 {
		t.Fatalf("%d A queries, want 1", n)
	}
	e.clock.Advance(301 * time.Second)
	if _, err := r.Resolve(ctxT(t), "host.test:8448"); err != nil {
		t.Fatal(err)
	}
	if n := e.dns.CountQueries("host.test", "A"); n != 2 {
		t.Fatalf("%d A queries after the TTL, want 2", n)
	}
	// Negative answers are cached too (no SOA here: one minute).
	for range 2 {
		if _, err := r.Resolve(ctxT(t), "missing.test:8448"); !errors.Is(err, discovery.ErrNotFound) {
			t.Fatalf("want ErrNotFound, got %v", err)
		}
	}
	if n := e.dns.CountQueries("missing.test", "A"); n != 1 {
		t.Fatalf("%d negative queries, want 1", n)
	}
	e.clock.Advance(61 * time.Second)
	r.Resolve(ctxT(t), "missing.test:8448")
	if n := e.dns.CountQueries("missing.test", "A"); n != 2 {
		t.Fatalf("%d negative queries after expiry, want 2", n)
	}
}

func TestDNSTransport(t *testing.T) {
	t.Parallel()
	t.Run("truncated UDP answer is retried over TCP", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.zone("host.test. 300 IN A 127.0.0.1")
		e.dns.Set("host.test", fedtest.TruncateUDP)
		c := e.client(e.options())
		res, err := c.Resolver().Resolve(ctxT(t), "host.test:8448")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Targets) != 1 || res.Targets[0].Addr.String() != "127.0.0.1:8448" {
			t.Fatalf("targets %v", res.Targets)
		}
		tcp := 0
		for _, q := range e.dns.Queries() {
			if q.Name == "host.test." && q.Type == "A" && q.Proto == "tcp" {
				tcp++
			}
		}
		if tcp != 1 {
			t.Fatalf("%d TCP queries, want 1: %v", tcp, e.dns.Queries())
		}
	})
	t.Run("a silent resolver times out", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.dns.Set("host.test", fedtest.Silent)
		o := e.options()
		o.DNSTimeout = 200 * time.Millisecond
		c := e.client(o)
		_, err := c.Resolver().Resolve(ctxT(t), "host.test:8448")
		if phaseOf(err) != discovery.PhaseDNS || errors.Is(err, discovery.ErrNotFound) {
			t.Fatalf("want a DNS failure, got %v", err)
		}
	})
	t.Run("the next resolver answers when the first fails", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		bad := fedtest.StartDNS(t, "host.test. 300 IN A 127.0.0.9")
		bad.Set("host.test", fedtest.ServFail)
		e.zone("host.test. 300 IN A 127.0.0.1")
		o := e.options()
		o.Resolvers = []string{bad.Addr, e.dns.Addr}
		c := e.client(o)
		res, err := c.Resolver().Resolve(ctxT(t), "host.test:8448")
		if err != nil {
			t.Fatal(err)
		}
		if res.Targets[0].Addr.Addr().String() != "127.0.0.1" {
			t.Fatalf("targets %v", res.Targets)
		}
	})
	t.Run("CNAME chains are followed hop by hop", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// fedtest's server chases one CNAME per answer, so a two-link
		// chain needs a second question.
		e.zone("alias.test. 300 IN CNAME other.test.", "other.test. 300 IN CNAME host.test.", "host.test. 30 IN A 127.0.0.1")
		c := e.client(e.options())
		res, err := c.Resolver().Resolve(ctxT(t), "alias.test:8448")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Targets) != 1 || !res.Expires.Equal(e.clock.Now().Add(30*time.Second)) {
			t.Fatalf("targets %v expires %v", res.Targets, res.Expires)
		}
	})
}

func TestResultJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(e.options())
	res, err := c.Resolver().Resolve(ctxT(t), "[::1]:8448")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"server_name":"[::1]:8448","rule":"1","host":"[::1]:8448","cert_ip":"::1","targets":[{"addr":"[::1]:8448","source":"ip literal"}],"steps":[{"kind":"ip-literal","query":"[::1]:8448","answer":["[::1]:8448"]}]}`
	if string(b) != want {
		t.Fatalf("JSON\n%s\nwant\n%s", b, want)
	}
}
