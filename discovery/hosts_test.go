package discovery_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/discovery"
)

// hostsEnv is an env whose resolver reads a hosts file in a temporary
// folder. The DNS server knows none of the names the file lists, so
// NXDOMAIN would be the answer without the file.
func hostsEnv(t *testing.T, content string) (*env, string) {
	t.Helper()
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return e, path
}

func (e *env) hostsOptions(path string) discovery.Options {
	o := e.options()
	o.HostsFile = path
	return o
}

// TestHostsFileBeforeDNS: every kind of address lookup (explicit port,
// SRV target, well-known host, delegated host, override host, CONNECT
// tunnel) is answered from the hosts file, without a DNS question for the
// name, and a request reaches the server at that address with the right
// SNI and Host.
func TestHostsFileBeforeDNS(t *testing.T) {
	t.Parallel()
	e, path := hostsEnv(t, "# peers the DNS does not know\n127.0.0.1 host.test wk.test deleg.test\n127.0.0.1 target.test\n")
	e.zone("_matrix-fed._tcp.other.test. 300 IN SRV 10 5 {port} target.test.")
	e.srv.WellKnown("wk.test", reply{body: e.expand(`{"m.server":"deleg.test:{port}"}`)})
	o := e.hostsOptions(path)
	o.Overrides = map[string]string{"override.test": e.expand("host.test:{port}")}
	c := e.client(o)
	tests := []struct {
		name, rule, sni, host string
		query                 string // the address step's question
	}{
		{"host.test:{port}", "2", "host.test", "host.test:{port}", "host.test AAAA/A"},
		{"other.test", "4", "other.test", "other.test", "target.test AAAA/A"},
		{"wk.test", "3.2", "deleg.test", "deleg.test:{port}", "deleg.test AAAA/A"},
		{"override.test", "override", "override.test", "override.test", "host.test AAAA/A"},
	}
	for _, tt := range tests {
		name := e.expand(tt.name)
		res, err := c.Resolver().Resolve(ctxT(t), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Rule != tt.rule || len(res.Targets) != 1 || res.Targets[0].Source != discovery.SourceHostsFile ||
			res.Targets[0].Addr.String() != e.expand("127.0.0.1:{port}") {
			t.Fatalf("%s: rule %s, targets %+v", name, res.Rule, res.Targets)
		}
		var step *discovery.Step
		for i := range res.Steps {
			if res.Steps[i].Kind == discovery.StepAddress {
				step = &res.Steps[i]
			}
		}
		if step == nil || step.Query != tt.query || step.Source != discovery.SourceHostsFile || step.Note != path ||
			!strings.Contains(step.String(), "via hosts file: 127.0.0.1") {
			t.Fatalf("%s: address step %+v in %v", name, step, res.Steps)
		}
		body, err := c.Get(ctxT(t), name, "/_matrix/federation/v1/version", 1<<10)
		if err != nil || !strings.Contains(string(body), `"server"`) {
			t.Fatalf("%s: GET: %v %s", name, err, body)
		}
		last := e.srv.Requests()[len(e.srv.Requests())-1]
		if last.SNI != tt.sni || last.Host != e.expand(tt.host) {
			t.Errorf("%s: SNI %q Host %q, want %q %q", name, last.SNI, last.Host, tt.sni, e.expand(tt.host))
		}
	}
	for _, n := range []string{"host.test", "target.test", "wk.test", "deleg.test"} {
		if got := e.dns.CountQueries(n, "A") + e.dns.CountQueries(n, "AAAA"); got != 0 {
			t.Errorf("%d address questions for %s went to DNS", got, n)
		}
	}
	// SRV records are DNS's alone: the SRV question was asked.
	if e.dns.CountQueries("_matrix-fed._tcp.other.test", "SRV") == 0 {
		t.Error("no SRV question for other.test")
	}
	// A plain tunnel (CONNECT passthrough) resolves the same way.
	conn, err := c.Resolver().DialTCP(ctxT(t), "host.test", e.srv.Port)
	if err != nil {
		t.Fatalf("DialTCP: %v", err)
	}
	conn.Close()
}

// TestHostsFileGuard: a hosts file entry in a special-purpose range is
// refused by the SSRF guard exactly as the same DNS answer is, unless
// allow_networks lists it. Overrides stay exempt.
func TestHostsFileGuard(t *testing.T) {
	t.Parallel()
	e, path := hostsEnv(t, "127.0.0.1 host.test\n")
	o := e.hostsOptions(path)
	o.AllowNetworks = nil
	c := e.client(o)
	name := e.expand("host.test:{port}")
	res, err := c.Resolver().Resolve(ctxT(t), name)
	if err != nil || res.Targets[0].Source != discovery.SourceHostsFile {
		t.Fatalf("resolve: %v %+v", err, res)
	}
	_, err = c.Get(ctxT(t), name, "/_matrix/federation/v1/version", 1<<10)
	if phaseOf(err) != discovery.PhaseGuard || !errors.Is(err, discovery.ErrBlocked) || !strings.Contains(err.Error(), "127.0.0.0/8 (loopback)") {
		t.Fatalf("want the guard to refuse a loopback hosts entry, got %v", err)
	}
	if _, err := c.Resolver().DialTCP(ctxT(t), "host.test", e.srv.Port); !errors.Is(err, discovery.ErrBlocked) {
		t.Fatalf("DialTCP: want the guard's refusal, got %v", err)
	}
	if n := e.srv.Conns(); n != 0 {
		t.Fatalf("%d connections reached the server", n)
	}
	// The same entry with the network allowed goes through.
	o.AllowNetworks = loopback
	if _, err := e.client(o).Get(ctxT(t), name, "/_matrix/federation/v1/version", 1<<10); err != nil {
		t.Fatalf("allowed: %v", err)
	}
}

// TestHostsFileEdited: adding, changing and removing an entry take effect
// on the next check (a second later) without a new resolver; a name the
// file no longer lists goes back to DNS.
func TestHostsFileEdited(t *testing.T) {
	t.Parallel()
	e, path := hostsEnv(t, "127.0.0.1 localhost\n")
	e.zone("dns.test. 300 IN A 127.0.0.1")
	c := e.client(e.hostsOptions(path))
	resolve := func(name string) (*discovery.Result, error) {
		return c.Resolver().Resolve(ctxT(t), e.expand(name))
	}
	if _, err := resolve("host.test:{port}"); phaseOf(err) != discovery.PhaseDNS || !errors.Is(err, discovery.ErrNotFound) {
		t.Fatalf("before the edit: want NXDOMAIN, got %v", err)
	}
	write := func(content string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second)
	}
	write("127.0.0.1 localhost\n127.0.0.1 host.test\n::1 dns.test\n")
	res, err := resolve("host.test:{port}")
	if err != nil || res.Targets[0].Source != discovery.SourceHostsFile {
		t.Fatalf("after adding: %v %+v", err, res)
	}
	if _, err := c.Get(ctxT(t), e.expand("host.test:{port}"), "/_matrix/federation/v1/version", 1<<10); err != nil {
		t.Fatalf("GET after adding: %v", err)
	}
	// The hosts file wins over DNS for dns.test.
	if res, err := resolve("dns.test:{port}"); err != nil || res.Targets[0].Addr.Addr().String() != "::1" || len(res.Targets) != 1 {
		t.Fatalf("hosts entry over a DNS record: %v %+v", err, res)
	}
	write("127.0.0.2 host.test\n")
	if res, err := resolve("host.test:{port}"); err != nil || res.Targets[0].Addr.Addr().String() != "127.0.0.2" {
		t.Fatalf("after changing: %v %+v", err, res)
	}
	res, err = resolve("dns.test:{port}")
	if err != nil || res.Targets[0].Source != discovery.SourceDNS || res.Targets[0].Addr.Addr().String() != "127.0.0.1" {
		t.Fatalf("after removing, DNS answers again: %v %+v", err, res)
	}
	if s := fmt.Sprint(res.Steps); !strings.Contains(s, "via dns: 127.0.0.1") {
		t.Fatalf("steps %s", s)
	}
}
