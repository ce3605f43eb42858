package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestNameHasher(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	h := newHasher(key)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("example.org"))
	want := "h:" + hex.EncodeToString(mac.Sum(nil))[:16]
	tests := []struct{ in, want string }{
		{"example.org", want},
		{"Example.ORG", want}, // DNS names are case-insensitive
		{"", ""},
	}
	for _, tt := range tests {
		if got := h.name(tt.in); got != tt.want {
			t.Errorf("name(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Keys longer than a block are hashed first, as HMAC says.
	long := make([]byte, 100)
	mac = hmac.New(sha256.New, long)
	mac.Write([]byte("a.example"))
	if got := newHasher(long).name("a.example"); got != "h:"+hex.EncodeToString(mac.Sum(nil))[:16] {
		t.Errorf("100-byte key: %s", got)
	}
	if h.name("example.org:8448") == want {
		t.Error("a port does not change the hash")
	}
	longName := strings.Repeat("a", 300) // longer than the stack buffer
	mac = hmac.New(sha256.New, key)
	mac.Write([]byte(longName))
	if got := h.name(longName); got != "h:"+hex.EncodeToString(mac.Sum(nil))[:16] {
		t.Errorf("long name hashed to %q", got)
	}
	var off *nameHasher
	if off.name("example.org") != "example.org" || off.rule(`policy.deny[0] "x"`) != `policy.deny[0] "x"` {
		t.Error("a nil hasher changes names")
	}
	if got := h.rule(`list_file deny[17] "evil.example"`); got != "list_file deny[17]" {
		t.Errorf("rule %q", got)
	}
}

func TestHashKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "log-hash.key")
	if h, err := newNameHasher(true, path, false); err != nil || h != nil {
		t.Fatalf("check of a missing key file: %v %v", h, err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("check-config mode created the key file")
	}
	h1, err := newNameHasher(true, path, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", st.Mode(), err)
	}
	h2, err := newNameHasher(true, path, true)
	if err != nil || h1.name("a.example") != h2.name("a.example") {
		t.Fatal("the key file is not reused")
	}
	if h, _ := newNameHasher(false, path, true); h != nil {
		t.Fatal("hashing on while off")
	}
	for name, content := range map[string]string{"short": "abcd\n", "not hex": strings.Repeat("zz", 32) + "\n", "empty": ""} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := newNameHasher(true, p, true); err == nil {
			t.Errorf("%s key file accepted", name)
		}
	}
}

// TestHashedLogs: with hash_server_names, no log line fedgate writes
// (access, decision, gateway, keyring and discovery debug lines) contains
// a remote server's name or the peer's address, and the hashes are
// consistent between the access and decision logs.
func TestHashedLogs(t *testing.T) {
	dir := t.TempDir()
	decisions := filepath.Join(dir, "decisions.log")
	og := startOps(t, opsSetup{
		origins: []string{"origin.test", "gone.test"},
		extra: fmt.Sprintf("hash_server_names = true\nhash_key_file = %q\ndecisions = %q\n[policy]\ndeny = [\"denied.test\"]\n",
			filepath.Join(dir, "hash.key"), decisions),
	})
	o, gone := og.origins[0], og.origins[1]
	gone.srv.Close() // its key fetch fails: logged with its name in the error
	const profile = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	if r := og.do("GET", profile, "", o.sign("GET", profile, "gw.test", "")); r.StatusCode != 200 {
		t.Fatalf("allowed request: %d", r.StatusCode)
	}
	og.do("GET", profile, "", signWith(t, o.key, "denied.test", "GET", profile, "gw.test", ""))
	if r := og.do("GET", profile, "", gone.sign("GET", profile, "gw.test", "")); r.StatusCode != 401 {
		t.Fatalf("unreachable origin: %d", r.StatusCode)
	}

	og.settle(3)
	h := og.gw.hasher()
	if !h.enabled() {
		t.Fatal("hashing off")
	}
	secrets := []string{"origin.test", "denied.test", "gone.test", "127.0.0.1"}
	check := func(where, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows %q: %s", where, s, text)
			}
		}
	}
	var access []map[string]any
	for _, e := range og.logs.All() {
		if e.Message == "listening" {
			continue // our own listeners' addresses
		}
		check("log line", e.Message+" "+fmt.Sprint(e.ContextMap()))
		if e.Message == "request" {
			access = append(access, e.ContextMap())
		}
	}
	// Access lines are written once the answer is sent, so a request's line
	// may follow the next request's: find them by origin.
	byOrigin := map[any]map[string]any{}
	for _, a := range access {
		byOrigin[a["origin"]] = a
	}
	allowed, denied := byOrigin[h.name("origin.test")], byOrigin[h.name("denied.test")]
	if len(access) != 3 || allowed == nil || denied == nil || byOrigin[h.name("gone.test")] == nil {
		t.Fatalf("access lines %v", access)
	}
	if p, _ := allowed["peer"].(string); !strings.HasPrefix(p, "h:") {
		t.Errorf("peer not hashed: %v", allowed["peer"])
	}
	if r := denied["rule"]; r != "policy.deny[0]" {
		t.Errorf("rule %v", r)
	}
	data, _ := os.ReadFile(decisions)
	check("decision log", string(data))
	if !strings.Contains(string(data), h.name("denied.test")) {
		t.Errorf("decision log lacks the hashed origin: %s", data)
	}
	if len(og.logs.FilterMessage("key fetch failed").All()) == 0 {
		t.Error("no key fetch failure logged (the test did not exercise error hashing)")
	}
}

// TestHashingHandler: slog records of the packages below gateway get the
// same treatment.
func TestHashingHandler(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := newHasher([]byte("0123456789abcdef"))
	on := true
	g := &Gateway{log: zap.New(core)}
	lg := slog.New(&hashingHandler{next: slogFor(g.log, "keyring").Handler(), hasher: func() *nameHasher {
		if on {
			return h
		}
		return nil
	}})
	lg.Debug("key fetch failed", "server", "evil.example", "error", fmt.Errorf("fetching keys of evil.example: boom"),
		slog.Group("g", "origin", "o.example", "note", "about o.example"), "count", 3)
	lg.With("host", "w.example").Info("well-known fetched", "m.server", "m.example:443")
	on = false
	lg.Info("plain", "server", "evil.example")
	entries := logs.All()
	if len(entries) != 3 {
		t.Fatalf("%d entries", len(entries))
	}
	got := fmt.Sprint(entries[0].ContextMap(), entries[1].ContextMap())
	for _, s := range []string{"evil.example", "o.example", "w.example", "m.example"} {
		if strings.Contains(got, s) {
			t.Errorf("%q left in %s", s, got)
		}
	}
	if m := entries[0].ContextMap(); m["server"] != h.name("evil.example") || m["error"] != "fetching keys of "+h.name("evil.example")+": boom" {
		t.Errorf("entry %v", m)
	}
	if entries[2].ContextMap()["server"] != "evil.example" {
		t.Error("hashing off still hashes")
	}
	if !lg.Handler().Enabled(context.Background(), slog.LevelDebug) {
		t.Error("Enabled not passed through")
	}
}

func TestHashAddresses(t *testing.T) {
	h := newHasher([]byte("0123456789abcdef"))
	n := h.name
	tests := []struct{ in, want string }{
		{"dial tcp 192.0.2.1:8448: connection refused", "dial tcp " + n("192.0.2.1") + ":8448: connection refused"},
		{"dial tcp [2001:db8::1]:8448: timeout", "dial tcp [" + n("2001:db8::1") + "]:8448: timeout"},
		{"192.0.2.1, 198.51.100.7.", n("192.0.2.1") + ", " + n("198.51.100.7") + "."},
		{"version 1.2.3 of host10.0.0.1x and v1.2.3.4", "version 1.2.3 of host10.0.0.1x and v1.2.3.4"},
		{"[not an address] 999.1.1.1 [", "[not an address] 999.1.1.1 ["},
		{"", ""},
	}
	for _, tt := range tests {
		if got := hashAddresses(h, tt.in); got != tt.want {
			t.Errorf("hashAddresses(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func FuzzHashAddresses(f *testing.F) {
	for _, s := range []string{"dial tcp 192.0.2.1:8448", "[::1]:1", "1.2.3.4.5.6", "[", "]", "0.0.0.0.", "[1.2.3.4]", "a[b]c[d"} {
		f.Add(s)
	}
	h := newHasher([]byte("0123456789abcdef"))
	f.Fuzz(func(t *testing.T, s string) {
		out := hashAddresses(h, s)
		if !strings.Contains(s, ".") && !strings.Contains(s, "[") && out != s {
			t.Fatalf("changed a text without addresses: %q -> %q", s, out)
		}
	})
}

func BenchmarkNameHash(b *testing.B) {
	h := newHasher(make([]byte, 32))
	b.ReportAllocs()
	for b.Loop() {
		h.name("matrix.example.org")
	}
}
