package hosting_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/hosting"
)

// hostedConfig parses a configuration with the top-level server and the
// given [[servers]] entries (TOML bodies after server_name).
func hostedConfig(t testing.TB, top string, servers ...string) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString(top + "\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n[keys]\ngenerate = true\n")
	for i, s := range servers {
		fmt.Fprintf(&b, "\n[[servers]]\n%s\n[servers.upstream]\nurl = \"http://127.0.0.1:%d\"\n[servers.keys]\ngenerate = true\n", s, 9000+i)
	}
	c, err := config.Parse(filepath.Join(t.TempDir(), "gateway.toml"), []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return c
}

func TestLookups(t *testing.T) {
	c := hostedConfig(t, `server_name = "a.example"
[well_known]
server = "matrix.a.example:443"`,
		"server_name = \"b.example\"\n[servers.well_known]\nserver = \"fed.provider.net:443\"",
		"server_name = \"c.example:8448\"\n[servers.well_known]\nserver = \"fed.provider.net\"",
		"server_name = \"d.example\"\n[servers.tls]\nnames = [\"d.example\", \"chat.d.example\"]",
		"server_name = \"[2001:db8::1]:8448\"",
	)
	tb := hosting.New(c.Hosted())
	if tb.Len() != 5 || tb.Name(2) != "c.example:8448" {
		t.Fatalf("table of %d: %v", tb.Len(), tb.Names())
	}
	for _, tc := range []struct {
		what string
		got  int
		want int
	}{
		{"lookup exact", tb.Lookup("b.example"), 1},
		{"lookup case", tb.Lookup("B.Example"), 1},
		{"lookup with port", tb.Lookup("c.example:8448"), 2},
		{"lookup without the port", tb.Lookup("c.example"), hosting.None},
		{"lookup ipv6", tb.Lookup("[2001:db8::1]:8448"), 4},
		{"lookup stranger", tb.Lookup("evil.example"), hosting.None},
		{"host: name", tb.ForHost("a.example"), 0},
		{"host: name with default port", tb.ForHost("a.example:8448"), 0},
		{"host: name upper case", tb.ForHost("A.EXAMPLE"), 0},
		{"host: trailing dot", tb.ForHost("a.example."), 0},
		{"host: delegated", tb.ForHost("matrix.a.example"), 0},
		{"host: delegated with port", tb.ForHost("matrix.a.example:443"), 0},
		{"host: name with its port", tb.ForHost("c.example:8448"), 2},
		{"host: name host, other port", tb.ForHost("c.example:9999"), 2},
		{"host: shared delegated host", tb.ForHost("fed.provider.net"), hosting.Ambiguous},
		{"host: certificate name", tb.ForHost("chat.d.example:443"), 3},
		{"host: ipv6", tb.ForHost("[2001:db8::1]:8448"), 4},
		{"host: ipv6 other port", tb.ForHost("[2001:db8::1]"), 4},
		{"host: unknown", tb.ForHost("127.0.0.1:8448"), hosting.None},
		{"host: empty", tb.ForHost(""), hosting.None},
		{"sni: name", tb.ForSNI("b.example"), 1},
		{"sni: delegated", tb.ForSNI("MATRIX.A.EXAMPLE"), 0},
		{"sni: shared", tb.ForSNI("fed.provider.net"), hosting.Ambiguous},
		{"sni: none", tb.ForSNI(""), hosting.None},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, tc.got, tc.want)
		}
	}
	for _, tc := range []struct {
		host, sni    string
		want         int
		wantConflict bool
	}{
		{"b.example", "fed.provider.net", 1, false}, // Synapse: Host is the server name
		{"fed.provider.net", "fed.provider.net", hosting.Ambiguous, false},
		{"fed.provider.net", "", hosting.Ambiguous, false},
		{"127.0.0.1:8448", "matrix.a.example", 0, false}, // Host says nothing, SNI does
		{"b.example", "matrix.a.example", 1, true},       // a connection made for a, a request for b
		{"127.0.0.1:8448", "", hosting.None, false},
		{"d.example", "chat.d.example", 3, false},
	} {
		got, conflict := tb.Sent(tc.host, tc.sni)
		if got != tc.want || conflict != tc.wantConflict {
			t.Errorf("Sent(%q, %q) = %d, %v; want %d, %v", tc.host, tc.sni, got, conflict, tc.want, tc.wantConflict)
		}
	}
}

// TestSingleServer: a configuration without [[servers]] has one entry and
// unknown hosts name nothing (the gateway answers them as that server).
func TestSingleServer(t *testing.T) {
	tb := hosting.New(hostedConfig(t, `server_name = "localhost:8448"`).Hosted())
	if tb.Len() != 1 || tb.ForHost("localhost:8448") != 0 || tb.ForHost("localhost") != 0 || tb.ForHost("127.0.0.1:8448") != hosting.None {
		t.Fatal("single server table")
	}
}

// FuzzForHost: Host headers and SNI names come from the network; lookups
// never panic and return a position or None/Ambiguous.
func FuzzForHost(f *testing.F) {
	c := hostedConfig(f, `server_name = "a.example"
[well_known]
server = "fed.example:443"`,
		"server_name = \"b.example:8448\"\n[servers.well_known]\nserver = \"fed.example:443\"",
		"server_name = \"[::1]:8448\"")
	tb := hosting.New(c.Hosted())
	for _, s := range []string{"a.example", "A.EXAMPLE.:443", "[::1]:8448", "[::1", "::1", "fed.example", "b.example:8448", ":", "[]:", "a.example::", "\x00", "é.example"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, host, sni string) {
		for _, i := range []int{tb.ForHost(host), tb.ForSNI(sni), tb.Lookup(host)} {
			if i < hosting.Ambiguous || i >= tb.Len() {
				t.Fatalf("position %d out of range", i)
			}
		}
		i, conflict := tb.Sent(host, sni)
		if i < hosting.Ambiguous || i >= tb.Len() || (conflict && i < 0) {
			t.Fatalf("Sent = %d, %v", i, conflict)
		}
	})
}

// BenchmarkSent measures the per-request lookup with 1 and 50 hosted
// servers: it is two map accesses whatever the number.
func BenchmarkSent(b *testing.B) {
	for _, n := range []int{1, 50} {
		servers := make([]string, n-1)
		for i := range servers {
			servers[i] = fmt.Sprintf("server_name = \"s%d.example\"", i)
		}
		tb := hosting.New(hostedConfig(b, `server_name = "a.example"`, servers...).Hosted())
		host := "a.example"
		if n > 1 {
			host = fmt.Sprintf("s%d.example:8448", n-2)
		}
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if i, _ := tb.Sent(host, ""); i < 0 {
					b.Fatal("not found")
				}
			}
		})
	}
}
