package gateway

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/servername"
)

func TestParseWorkerProxyTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri, server, target string
		ok                  bool
	}{
		{"matrix-federation://remote.test/_matrix/federation/v1/version", "remote.test", "/_matrix/federation/v1/version", true},
		{"MATRIX-FEDERATION://remote.test:8448/x?a=%2F&b", "remote.test:8448", "/x?a=%2F&b", true},
		{"matrix-federation://[::1]:8448/x", "[::1]:8448", "/x", true},
		{"matrix-federation://1.2.3.4/x?", "1.2.3.4", "/x?", true},
		{"matrix-federation://remote.test//x", "remote.test", "//x", true}, // refused later by splitTarget
		{"matrix-federation://remote.test", "", "", false},
		{"matrix-federation://remote.test?a=/b", "", "", false},
		{"matrix-federation://user@remote.test/x", "", "", false},
		{"matrix-federation://remote.test:/x", "", "", false},
		{"matrix-federation://remote.test:99999/x", "", "", false},
		{"matrix-federation:///x", "", "", false},
		{"https://remote.test/x", "", "", false},
		{"/x", "", "", false},
	}
	for _, tt := range tests {
		server, target, err := parseWorkerProxyTarget(tt.uri)
		if (err == nil) != tt.ok || server != tt.server || target != tt.target {
			t.Errorf("parseWorkerProxyTarget(%q) = %q, %q, %v", tt.uri, server, target, err)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		target, path, query string
		force, ok           bool
	}{
		{"/a/b?c=d", "/a/b", "c=d", false, true},
		{"/a?", "/a", "", true, true},
		{"/a??b", "/a", "?b", false, true},
		{"//evil.example/a", "", "", false, false},
		{"a/b", "", "", false, false},
		{"", "", "", false, false},
		{"/a#frag", "", "", false, false},
		{"/a b", "", "", false, false},
	}
	for _, tt := range tests {
		var er egressRequest
		err := er.splitTarget(tt.target)
		if (err == nil) != tt.ok {
			t.Errorf("splitTarget(%q): %v", tt.target, err)
			continue
		}
		if tt.ok && (er.path != tt.path || er.rawQuery != tt.query || er.forceQuery != tt.force || er.target != tt.target) {
			t.Errorf("splitTarget(%q) = %q %q %v", tt.target, er.path, er.rawQuery, er.forceQuery)
		}
	}
}

func TestParseConnectAuthority(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		host string
		port uint16
		ok   bool
	}{
		{"remote.test:8448", "remote.test", 8448, true},
		{"Remote.Test:443", "Remote.Test", 443, true},
		{"1.2.3.4:8448", "1.2.3.4", 8448, true},
		{"[2001:db8::1]:8448", "2001:db8::1", 8448, true},
		{"remote.test", "", 0, false},
		{"remote.test:", "", 0, false},
		{"remote.test:0", "", 0, false},
		{"remote.test:65536", "", 0, false},
		{"remote.test:+1", "", 0, false},
		{"remote.test:08448", "remote.test", 8448, true},
		{"2001:db8::1:8448", "", 0, false},
		{"[1.2.3.4]:80", "", 0, false},
		{"[fe80::1%eth0]:443", "", 0, false},
		{":443", "", 0, false},
		{"a..b:443", "", 0, false},
		{"under_score:443", "", 0, false},
		{strings.Repeat("a", 300) + ":443", "", 0, false},
	}
	for _, tt := range tests {
		host, port, err := parseConnectAuthority(tt.in)
		if (err == nil) != tt.ok || host != tt.host || port != tt.port {
			t.Errorf("parseConnectAuthority(%q) = %q, %d, %v", tt.in, host, port, err)
		}
	}
}

func TestParseProxyCredentials(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	basic := []struct {
		in             string
		user, password string
		ok             bool
	}{
		{"Basic " + b64("synapse:s3cret"), "synapse", "s3cret", true},
		{"basic " + b64(":s3cret"), "", "s3cret", true},
		{"Basic " + b64("u:p:q"), "u", "p:q", true},
		{"Basic " + b64("nocolon"), "", "", false},
		{"Basic !!!", "", "", false},
		{"Bearer " + b64("u:p"), "", "", false},
		{"Basic", "", "", false},
	}
	for _, tt := range basic {
		user, password, ok := parseBasic(tt.in)
		if ok != tt.ok || user != tt.user || password != tt.password {
			t.Errorf("parseBasic(%q) = %q, %q, %v", tt.in, user, password, ok)
		}
	}
	bearerTests := []struct {
		in, token string
		ok        bool
	}{
		{"Bearer abc", "abc", true},
		{"Bearer ", "", true}, // an empty token, which no secret matches
		{"bearer abc", "", false},
		{"Bearer  abc", "", false},
		{"Bearer abc def", "", false},
		{"Bearer", "", false},
	}
	for _, tt := range bearerTests {
		token, ok := parseBearer(tt.in)
		if ok != tt.ok || token != tt.token {
			t.Errorf("parseBearer(%q) = %q, %v", tt.in, token, ok)
		}
	}
}

func TestSecretMatches(t *testing.T) {
	t.Parallel()
	c := mustConfig(t, "[egress]\nsecret = \"abc\"\n")
	s, err := newEgressSettings(c)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]bool{"abc": true, "ab": false, "abcd": false, "": false, "ABC": false} {
		if s.secretMatches(in) != want {
			t.Errorf("secretMatches(%q) != %v", in, want)
		}
	}
	none := &egressSettings{}
	if none.secretMatches("") {
		t.Error("an empty secret matched with none configured")
	}
}

// mustConfig loads a minimal configuration plus extra TOML.
func mustConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	return mustConfigText(t, "[listen]\nfederation = [\"127.0.0.1:0\"]\n[keys]\ngenerate = true\n"+extra)
}

// mustConfigText loads server_name and [upstream] plus text.
func mustConfigText(t *testing.T, text string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.toml")
	text = "server_name = \"gw.test\"\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n" + text
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEgressSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	s, err := newEgressSettings(mustConfig(t, fmt.Sprintf("[egress]\nsecret_file = %q\n", file)))
	if err != nil || !s.secretMatches("from-file") || s.secretMatches("from-file\n") {
		t.Fatalf("secret file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := newEgressSettings(mustConfig(t, fmt.Sprintf("[egress]\nsecret_file = %q\n", empty))); err == nil || !strings.Contains(err.Error(), "egress.secret_file") {
		t.Fatalf("empty secret file: %v", err)
	}
}

func TestCopyEndToEndHeaders(t *testing.T) {
	t.Parallel()
	src := http.Header{
		"Connection":        {"keep-alive, X-Private", "close"},
		"X-Private":         {"1"},
		"Keep-Alive":        {"timeout=5"},
		"Transfer-Encoding": {"chunked"},
		"Proxy-Connection":  {"keep-alive"},
		"Upgrade":           {"h2c"},
		"Content-Type":      {"multipart/mixed; boundary=x"},
		"Content-Length":    {"10"},
		"X-Public":          {"a", "b"},
	}
	dst := http.Header{}
	copyEndToEndHeaders(dst, src)
	want := http.Header{"Content-Type": {"multipart/mixed; boundary=x"}, "Content-Length": {"10"}, "X-Public": {"a", "b"}}
	if len(dst) != len(want) {
		t.Fatalf("copied %v", dst)
	}
	for k, v := range want {
		if strings.Join(dst[k], ",") != strings.Join(v, ",") {
			t.Errorf("%s = %v", k, dst[k])
		}
	}
}

// FuzzWorkerProxyTarget feeds arbitrary request-targets of the worker
// proxy protocol: they are refused with an error or split into a valid
// server name and a target that reassembles the input.
func FuzzWorkerProxyTarget(f *testing.F) {
	for _, s := range []string{
		"matrix-federation://remote.test/_matrix/federation/v1/send/1",
		"matrix-federation://[::1]:8448/x?a=%2F",
		"MATRIX-FEDERATION://a/b",
		"matrix-federation://a",
		"matrix-federation://@/x",
		"matrix-federation://a:99999/x",
		"",
		"\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		server, target, err := parseWorkerProxyTarget(uri)
		if err != nil {
			return
		}
		if !servername.Valid(server) || !strings.HasPrefix(target, "/") {
			t.Fatalf("accepted %q as %q %q", uri, server, target)
		}
		if !strings.EqualFold(uri[:len(workerProxyScheme)], workerProxyScheme) || uri[len(workerProxyScheme):] != server+target {
			t.Fatalf("%q does not reassemble from %q %q", uri, server, target)
		}
		var er egressRequest
		if er.splitTarget(target) == nil && er.path+queryPart(er) != target {
			t.Fatalf("split %q into %q %q", target, er.path, er.rawQuery)
		}
	})
}

func queryPart(er egressRequest) string {
	if er.rawQuery != "" || er.forceQuery {
		return "?" + er.rawQuery
	}
	return ""
}

// FuzzConnectAuthority feeds arbitrary CONNECT targets: refused, or a
// host that is a valid server name (an IPv6 literal once bracketed) and a
// port in range.
func FuzzConnectAuthority(f *testing.F) {
	for _, s := range []string{"remote.test:8448", "[2001:db8::1]:443", "1.2.3.4:80", "a:0", "[::1%eth0]:1", ":1", "a:+1", "\x00:1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := parseConnectAuthority(s)
		if err != nil {
			return
		}
		if port == 0 || !servername.Valid(authorityName(host, port)) {
			t.Fatalf("accepted %q as %q %d", s, host, port)
		}
	})
}

// FuzzProxyCredentials feeds arbitrary Proxy-Authorization values to both
// schemes: never a panic, and only well-formed values yield credentials.
func FuzzProxyCredentials(f *testing.F) {
	for _, s := range []string{"Bearer abc", "Basic dTpw", "basic OnM=", "Basic ====", "Bearer  x", "", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if token, ok := parseBearer(v); ok && v != "Bearer "+token {
			t.Fatalf("parseBearer(%q) = %q", v, token)
		}
		if user, password, ok := parseBasic(v); ok {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[len("basic "):]))
			if err != nil || string(raw) != user+":"+password {
				t.Fatalf("parseBasic(%q) = %q %q", v, user, password)
			}
		}
	})
}

// FuzzRetryAfter feeds a remote's 429 answer (Retry-After header and
// body) to the backoff: the wait is never negative nor beyond the cap.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range [][2]string{{"30", ""}, {"Wed, 21 Oct 2015 07:28:00 GMT", ""}, {"", `{"retry_after_ms":1500}`}, {"-1", `{"retry_after_ms":-5}`}, {"", `{"retry_after_ms":1e400}`}} {
		f.Add(s[0], s[1])
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, header, body string) {
		h := http.Header{}
		if utf8.ValidString(header) {
			h.Set("Retry-After", header)
		}
		d := retryAfter(h, []byte(body), now)
		if d < 0 || d > backoffMaxRateLimited {
			t.Fatalf("retryAfter(%q, %q) = %s", header, body, d)
		}
	})
}

// TestCheckEgress: check-config refuses what fedgate run would (a broken
// secret file, half an egress CA) and creates nothing.
func TestCheckEgress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	cfg := mustConfigText(t, "[listen]\negress = \"127.0.0.1:0\"\n"+fmt.Sprintf("[keys]\ngenerate = true\n[egress]\nsecret = \"x\"\nca_dir = %q\n", caDir))
	if err := checkEgress(cfg); err != nil {
		t.Fatalf("missing CA: %v", err)
	}
	if _, err := os.Stat(caDir); err == nil {
		t.Fatal("check created the CA folder")
	}
	os.MkdirAll(caDir, 0o700)
	os.WriteFile(filepath.Join(caDir, "ca.key"), []byte("junk"), 0o600)
	if err := checkEgress(cfg); err == nil || !strings.Contains(err.Error(), "egress.ca_dir") {
		t.Fatalf("half a CA: %v", err)
	}
	if _, err := os.Stat(filepath.Join(caDir, "ca.pem")); err == nil {
		t.Fatal("check wrote a certificate")
	}
	// An interception without signature checks and without a secret would
	// sign for anyone on the internal network.
	open := mustConfigText(t, "[listen]\negress = \"127.0.0.1:0\"\n[keys]\ngenerate = true\n[egress]\nworker_proxy = false\nrequire_signature = false\n")
	if err := checkEgress(open); err == nil || !strings.Contains(err.Error(), "egress.require_signature") {
		t.Fatalf("unauthenticated interception: %v", err)
	}
}
