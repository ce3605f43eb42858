package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestHostedInheritance loads testdata/valid/servers.toml and checks what
// each hosted server's configuration holds: its own sections, the
// inherited ones, and the global ones.
func TestHostedInheritance(t *testing.T) {
	c, err := Load("testdata/valid/servers.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata/valid")
	hosted := c.Hosted()
	if len(hosted) != 3 {
		t.Fatalf("%d hosted servers, want 3", len(hosted))
	}
	a, b, cc := hosted[0], hosted[1], hosted[2]
	if a != c || a.HostedIndex() != 0 || b.HostedIndex() != 1 || cc.HostedIndex() != 2 {
		t.Fatal("the top level must come first, as itself")
	}
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"b name", b.ServerName, "b.example"},
		{"b upstream (own)", b.Upstream.URL, "http://10.0.0.2:8008"},
		{"b upstream timeout (own)", b.Upstream.Timeout.D().String(), "20s"},
		{"c upstream timeout (default, not inherited)", cc.Upstream.Timeout, Default().Upstream.Timeout},
		{"b key (own, absolute)", b.Keys.SigningKey, filepath.Join(dir, "b.key")},
		{"b old keys (own)", len(b.Keys.Old), 1},
		{"a old keys", len(a.Keys.Old), 0},
		{"c key (default under data_dir)", cc.Keys.SigningKey, filepath.Join(dir, "data", "servers", "c.example_8448", "signing.key")},
		{"c keyring cache (global)", cc.Keys.CacheFile, a.Keys.CacheFile},
		{"b well-known (own)", b.WellKnown.Server, "matrix.b.example:443"},
		{"c well-known (not inherited)", cc.WellKnown.Server, ""},
		{"b policy (own, whole)", b.Policy.Default, PolicyDeny},
		{"b policy deny (not merged with the top level)", len(b.Policy.Deny), 0},
		{"c policy (inherited)", cc.Policy.Deny, []string{"evil.example"}},
		{"b rate limit (inherited)", b.RateLimit.PerOrigin.Burst, 40},
		{"b tls mode (inherited)", b.TLS.Mode, TLSModeACME},
		{"b tls email (inherited)", b.TLS.Email, "ops@a.example"},
		{"b tls names (own)", b.TLS.Names, []string{"b.example", "matrix.b.example"}},
		{"c tls names (derived from its own name)", cc.TLS.Names, []string{"c.example"}},
		{"b egress secret (own)", b.Egress.Secret, "b-secret"},
		{"c egress secret (not inherited)", cc.Egress.Secret, ""},
		{"c egress worker_proxy (the listener's)", cc.Egress.WorkerProxy, a.Egress.WorkerProxy},
		{"views hold no servers", len(b.Servers), 0},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	// Problems are located in the entry for its own values, at the top
	// level for inherited ones.
	for _, tc := range []struct {
		cfg      *Config
		key      string
		wantKey  string
		wantLine int
	}{
		{b, "upstream.timeout", "servers[0].upstream.timeout", 22},
		{b, "keys.signing_key", "servers[0].keys.signing_key", 24},
		{b, "keys.old[0].key_id", "servers[0].keys.old[0].key_id", 27},
		{b, "tls.names[1]", "servers[0].tls.names[1]", 33},
		{b, "tls.email", "tls.email", 10},
		{b, "policy.default", "servers[0].policy.default", 35},
		{b, "rate_limit.per_origin", "rate_limit.per_origin", 14},
		{b, "egress.secret", "servers[0].egress.secret", 38},
		{b, "egress.connect", "egress.connect", 15},
		{b, "listen.federation", "listen.federation", 1},
		{cc, "policy.deny[0]", "policy.deny[0]", 12},
		{cc, "upstream.url", "servers[1].upstream.url", 43},
		{cc, "keys.signing_key", "servers[1].keys.signing_key", 44},
	} {
		p := tc.cfg.Errorf(tc.key, "x")
		if p.Key != tc.wantKey || p.Line != tc.wantLine {
			t.Errorf("%s of %s: located at %s line %d, want %s line %d", tc.key, tc.cfg.ServerName, p.Key, p.Line, tc.wantKey, tc.wantLine)
		}
	}
}

// TestSingleServerUnchanged: a file without [[servers]] hosts exactly its
// server_name, and its configuration is itself.
func TestSingleServerUnchanged(t *testing.T) {
	c, err := Load("testdata/valid/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Hosted(); len(h) != 1 || h[0] != c {
		t.Fatalf("Hosted() = %v", h)
	}
}

// TestHostedSameKeyFile: two paths to one key file are refused as well.
func TestHostedSameKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "a.key")
	if err := os.WriteFile(key, []byte("ed25519 a 9FHSoHdqJ1i8O+1TslC3Az9Ia0Gy+2v6m2fnmYbRhlo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(key, filepath.Join(dir, "b.key")); err != nil {
		t.Fatal(err)
	}
	text := `server_name = "a.example"
[upstream]
url = "http://10.0.0.1:8008"
[keys]
signing_key = "a.key"
[[servers]]
server_name = "b.example"
[servers.upstream]
url = "http://10.0.0.2:8008"
[servers.keys]
signing_key = "b.key"
`
	_, err := Parse(filepath.Join(dir, "gateway.toml"), []byte(text))
	if err == nil || !strings.Contains(err.Error(), ":11: servers[0].keys.signing_key: ") || !strings.Contains(err.Error(), "is the same file as") {
		t.Fatalf("shared key file not refused: %v", err)
	}
}
