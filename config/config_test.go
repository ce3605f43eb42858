package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden .err files of testdata/invalid")

// TestInvalidFiles loads every file in testdata/invalid and compares the
// problems with the golden .err file beside it. The folder prefix is
// replaced by "TESTDATA" so goldens do not depend on the checkout path.
func TestInvalidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatal("no test files", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			dir, _ := filepath.Abs(filepath.Dir(file))
			c, err := Load(file)
			if err == nil {
				t.Fatalf("loaded without error: %+v", c)
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T, want Problems: %v", err, err)
			}
			got := strings.ReplaceAll(err.Error(), dir, "TESTDATA") + "\n"
			golden := strings.TrimSuffix(file, ".toml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
			for _, p := range ps {
				if p.Line < 1 {
					t.Errorf("problem without a line: %v", p)
				}
			}
		})
	}
}

func TestValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.toml")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if _, err := Load(file); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestExampleFileIsValid(t *testing.T) {
	c, err := Load("../gateway.toml.example")
	if err != nil {
		t.Fatalf("gateway.toml.example: %v", err)
	}
	if c.ServerName == "" || c.Upstream.URL == "" {
		t.Fatal("example lacks the required keys")
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load("testdata/valid/minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata/valid")
	want := Default()
	want.ServerName = "example.org"
	want.Upstream.URL = "http://127.0.0.1:8008"
	want.Keys.Generate = true
	want.derive(dir)
	want.File = c.File
	want.src = c.src
	if !reflect.DeepEqual(*c, want) {
		t.Fatalf("defaults differ:\n got %+v\nwant %+v", *c, want)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"data_dir", c.DataDir, filepath.Join(dir, "data")},
		{"signing_key", c.Keys.SigningKey, filepath.Join(dir, "data", "signing.key")},
		{"keyring cache", c.Keys.CacheFile, filepath.Join(dir, "data", "keyring.json")},
		{"acme storage", c.TLS.Storage, filepath.Join(dir, "data", "acme")},
		{"egress ca", c.Egress.CADir, filepath.Join(dir, "data", "egress-ca")},
		{"tls mode", c.TLS.Mode, TLSModeSelfSigned},
		{"tls names", c.TLS.Names, []string{"localhost", "127.0.0.1", "::1"}},
		{"federation listener", c.Listen.Federation, []string{"[::]:8448"}},
		{"upstream timeout", c.Upstream.Timeout.D(), 60 * time.Second},
		{"valid_for", c.Keys.ValidFor.D(), 24 * time.Hour},
		{"max_body", c.Inbound.MaxBody, ByteSize(1 << 20)},
		{"max_body_send", c.Inbound.MaxBodySend, ByteSize(8 << 20)},
		{"policy default", c.Policy.Default, PolicyAllow},
		{"locality checks", c.Policy.LocalityChecks, true},
		{"per_ip", c.RateLimit.PerIP.Rate.PerSecond, 100.0},
		{"egress connect", c.Egress.Connect, ConnectIntercept},
		{"log level", c.Log.Level, "info"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestFullFile(t *testing.T) {
	c, err := Load("testdata/valid/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata/valid")
	if c.DataDir != filepath.Join(dir, "state") {
		t.Errorf("data_dir %s", c.DataDir)
	}
	if got := c.TLS.Names; !reflect.DeepEqual(got, []string{"example.org", "matrix.example.org"}) {
		t.Errorf("acme default names %v", got)
	}
	if c.RateLimit.PerIP.Rate.PerSecond != 10 {
		t.Errorf("600/m = %v/s", c.RateLimit.PerIP.Rate.PerSecond)
	}
	if c.RateLimit.Classes["send"].Enabled() {
		t.Error("rate 0 should be unlimited")
	}
	if c.Inbound.MaxBodySend != 16_000_000 || c.Server.MaxHeaderBytes != 32768 {
		t.Errorf("sizes %d %d", c.Inbound.MaxBodySend, c.Server.MaxHeaderBytes)
	}
	if len(c.Keys.Old) != 1 || c.Keys.Old[0].ExpiredTS != 1700000000000 {
		t.Errorf("old keys %+v", c.Keys.Old)
	}
	if c.Policy.Origins["partner.example"].AllowEndpoints[0] != "media" {
		t.Errorf("origins %+v", c.Policy.Origins)
	}
	if c.Outbound.Overrides["partner.example:8448"] != "10.1.2.3:8448" {
		t.Errorf("overrides %+v", c.Outbound.Overrides)
	}
	if !c.IsSet("policy.deny") || c.IsSet("policy.dry_run") {
		t.Error("IsSet")
	}
	if l := c.Line("policy.allow[1]"); l != 50 {
		t.Errorf("policy.allow[1] line %d", l)
	}
	if l := c.Line("keys.trusted_key_servers[0].verify_keys"); l != 30 {
		t.Errorf("verify_keys line %d", l)
	}
}

func TestErrorfLocatesNestedKeys(t *testing.T) {
	c, err := Parse("/x/f.toml", []byte("server_name = \"a.example\"\n[upstream]\nurl = \"http://h:1\"\n[keys]\ngenerate = true\n\n[[keys.pinned]]\nserver_name = \"b.example\"\nkey_id = \"ed25519:x\"\npublic_key = \"XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for key, line := range map[string]int{
		"keys.pinned[0].key_id":  9,
		"keys.pinned[0]":         7,
		"keys.pinned[0].missing": 7,
		"keys.generate":          5,
		"nothing.here":           1,
		"upstream.url":           3,
	} {
		if got := c.Errorf(key, "x").Line; got != line {
			t.Errorf("%s: line %d, want %d", key, got, line)
		}
	}
	if got := c.Errorf("keys.pinned[0].key_id", "bad %d", 1).Error(); got != "/x/f.toml:9: keys.pinned[0].key_id: bad 1" {
		t.Errorf("rendered %q", got)
	}
}

func TestByteSizeAndRate(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "64KiB": 65536, "8MiB": 8 << 20, "1GiB": 1 << 30, "5MB": 5_000_000, "10 KB": 10_000, "7B": 7} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err != nil || int64(s) != want {
			t.Errorf("%q -> %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "lots", "99999999999GiB"} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	for in, want := range map[string]float64{"": 0, "0": 0, "10/s": 10, "60/m": 1, "3600/h": 1, "0.5/s": 0.5} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err != nil || r.PerSecond != want {
			t.Errorf("%q -> %v, %v", in, r.PerSecond, err)
		}
	}
	for _, in := range []string{"10", "10/d", "x/s", "-1/s", "NaN/s", "Inf/s"} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	b, _ := ByteSize(8 << 20).MarshalText()
	if string(b) != "8MiB" {
		t.Errorf("marshal %s", b)
	}
}

// FuzzParse feeds arbitrary files to the loader: it must never panic and a
// failure must always be Problems with lines.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/valid/full.toml", "testdata/valid/servers.toml", "testdata/invalid/bad_values.toml", "testdata/invalid/servers.toml", "testdata/invalid/syntax.toml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("/fuzz/f.toml", data)
		if err == nil {
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("error %T %v", err, err)
		}
		for _, p := range ps {
			if p.Line < 1 {
				t.Fatalf("problem without line: %v", p)
			}
		}
	})
}

// TestPolicyRoomDefaults: a [[policy.rooms]] entry gets the upstream URL,
// apply = "deny" and max_rules filled in, and its token path made
// absolute; list_refresh defaults to 5m.
func TestPolicyRoomDefaults(t *testing.T) {
	_, err := Parse("/x/testdata/valid/f.toml", []byte(`server_name = "a.example"
[upstream]
url = "http://127.0.0.1:8008"
[keys]
generate = true
[[policy.rooms]]
room = "#bans:a.example"
access_token_file = "../../config_test.go"
`))
	if err == nil {
		t.Fatal("an unreadable token file passed validation")
	}
	c, err := Parse(mustAbs(t, "testdata/f.toml"), []byte(`server_name = "a.example"
[upstream]
url = "http://127.0.0.1:8008"
[keys]
generate = true
[[policy.rooms]]
room = "#bans:a.example"
access_token_file = "../config_test.go"
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Policy.Rooms[0]
	if r.Homeserver != "http://127.0.0.1:8008" || r.Apply != ApplyDeny || r.MaxRules != DefaultPolicyRoomMaxRules || r.MaxAge != 0 ||
		r.AccessTokenFile != mustAbs(t, "config_test.go") {
		t.Errorf("room %+v", r)
	}
	if c.Policy.ListRefresh.D().String() != "5m0s" {
		t.Errorf("list_refresh %v", c.Policy.ListRefresh.D())
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
