package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestCanonicalJSONVectors checks resolve's canonical JSON and signature
// check against the spec's appendix vectors.
func TestCanonicalJSONVectors(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../testdata/spec/test-vectors/appendices-test-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Canonical []struct{ Input, Canonical string } `json:"canonical_json"`
		Key       struct {
			Public     string `json:"public_key_unpadded_base64"`
			ServerName string `json:"server_name"`
			KeyID      string `json:"key_id"`
		} `json:"signing_key"`
		Signing []struct {
			Input    json.RawMessage `json:"input"`
			Expected json.RawMessage `json:"expected"`
		} `json:"json_signing"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Canonical {
		doc, err := decodeJSONObject([]byte(c.Input))
		if err != nil {
			t.Fatalf("%s: %v", c.Input, err)
		}
		got, err := appendCanonicalJSON(nil, doc)
		if err != nil || string(got) != c.Canonical {
			t.Errorf("canonical(%s) = %s, %v; want %s", c.Input, got, err, c.Canonical)
		}
	}
	pub, _ := auth.DecodeBase64(v.Key.Public)
	for _, s := range v.Signing {
		doc, _ := decodeJSONObject(s.Input)
		canonical, _ := appendCanonicalJSON(nil, doc)
		var signed struct {
			Signatures map[string]map[string]string `json:"signatures"`
		}
		json.Unmarshal(s.Expected, &signed)
		sig, _ := auth.DecodeBase64(signed.Signatures[v.Key.ServerName][v.Key.KeyID])
		if !ed25519.Verify(pub, canonical, sig) {
			t.Errorf("signature vector for %s does not verify", s.Input)
		}
	}
	// Escapes the vectors do not cover.
	got, _ := appendCanonicalJSON(nil, map[string]any{"s": "\x01\x1f\b\t\n\f\r\"\\/\u2028<>&\x7f"})
	if want := `{"s":"\u0001\u001f\b\t\n\f\r\"\\/` + "\u2028<>&\x7f" + `"}`; string(got) != want {
		t.Errorf("escapes: %s, want %s", got, want)
	}
	if _, err := appendCanonicalJSON(nil, json.Number("1.5")); err == nil {
		t.Error("a fraction was accepted")
	}
}

// startKeyServer starts a TLS server for host on 127.0.0.1 answering the
// version and key endpoints, with a key document for "host:port" that is
// self-signed (or tampered with after signing). It returns that name.
func startKeyServer(t *testing.T, ca *fedtest.CA, host string, tamper bool) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, host)}})
	if err != nil {
		t.Fatal(err)
	}
	serverName := host + ":" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	until := func(d time.Duration) json.Number {
		return json.Number(strconv.FormatInt(time.Now().Add(d).UnixMilli(), 10))
	}
	doc := map[string]any{
		"server_name":     serverName,
		"valid_until_ts":  until(24 * time.Hour),
		"verify_keys":     map[string]any{"ed25519:a_1": map[string]any{"key": auth.EncodeBase64(pub)}},
		"old_verify_keys": map[string]any{},
	}
	canonical, err := appendCanonicalJSON(nil, doc)
	if err != nil {
		t.Fatal(err)
	}
	doc["signatures"] = map[string]any{serverName: map[string]any{"ed25519:a_1": auth.EncodeBase64(ed25519.Sign(priv, canonical))}}
	if tamper {
		doc["valid_until_ts"] = until(48 * time.Hour)
	}
	body, _ := json.Marshal(doc)
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/_matrix/federation/v1/version":
			io.WriteString(w, `{"server":{"name":"Synapse","version":"1.140.0"}}`)
		case "/_matrix/key/v2/server":
			w.Write(body)
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return serverName
}

func TestResolveCommand(t *testing.T) {
	t.Parallel()
	ca := fedtest.NewCA(t)
	dir := t.TempDir()
	caFile := ca.WriteCertFile(t, dir)
	dns := fedtest.StartDNS(t, "hs.test. 300 IN A 127.0.0.1", "bad.test. 300 IN A 127.0.0.1")
	hostsFile := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hostsFile, []byte("127.0.0.1 peer.test # not in DNS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(t *testing.T, extra string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "gateway.toml")
		cfg := `server_name = "example.org"
[upstream]
url = "http://127.0.0.1:8008"
[keys]
generate = true
[outbound]
ca_file = "` + caFile + `"
resolvers = ["` + dns.Addr + `"]
allow_networks = ["127.0.0.0/8"]
dns_timeout = "2s"
` + extra
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := startKeyServer(t, ca, "hs.test", false)
	bad := startKeyServer(t, ca, "bad.test", true)
	peer := startKeyServer(t, ca, "peer.test", false)
	cfg := writeConfig(t, "")
	withHosts := writeConfig(t, "hosts_file = \""+hostsFile+"\"\n")
	withoutHosts := writeConfig(t, "hosts_file = \"\"\n")

	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"works", []string{"-config", cfg, good}, exitOK, []string{
			"address hs.test AAAA/A via dns: 127.0.0.1", "targets        127.0.0.1:", " (dns)", "Result (spec rule 2)", "Host header    " + good,
			"TLS name, SNI  hs.test", "Version  GET /_matrix/federation/v1/version via 127.0.0.1:", "Synapse 1.140.0",
			"ed25519:a_1 self-signature OK", "OK: federation with " + good + " should work"}},
		{"hosts file", []string{"-config", withHosts, peer}, exitOK, []string{
			"address peer.test AAAA/A via hosts file: 127.0.0.1 (" + hostsFile + ")", " (hosts file)",
			"OK: federation with " + peer + " should work"}},
		{"hosts file off", []string{"-config", withoutHosts, peer}, exitFailure, []string{
			"address peer.test AAAA/A via dns: peer.test has no AAAA or A records", "FAIL: discovery failed"}},
		{"bad signature", []string{"-config", cfg, bad}, exitFailure, []string{
			"ed25519:a_1: signature does not verify", "FAIL: keys: 1 key(s) with a bad signature"}},
		{"loopback refused without allow_networks", []string{"-resolver", dns.Addr, good}, exitFailure, []string{
			"FAIL: version:", "SSRF guard"}},
		{"no such server", []string{"-config", cfg, "missing.test"}, exitFailure, []string{
			"well-known https://missing.test/.well-known/matrix/server:", "srv _matrix-fed._tcp.missing.test SRV: no records",
			"FAIL: discovery failed: missing.test: dns"}},
		{"invalid name", []string{"-config", cfg, "not a name"}, exitFailure, []string{"FAIL: discovery failed: not a name: server name"}},
		{"no name: the hosted names", []string{"-config", cfg}, exitFailure, []string{"Resolving example.org", "FAIL: discovery failed: example.org"}},
		{"no name, no configuration", []string{"-resolver", dns.Addr}, exitUsage, []string{"give one server name"}},
		{"two names", []string{"a.test", "b.test"}, exitUsage, []string{`unexpected argument "b.test"`}},
		{"bad config", []string{"-config", filepath.Join(dir, "missing.toml"), "a.test"}, exitFailure, []string{"reading config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(append([]string{"resolve", "-timeout", "10s"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s%s", out, errOut)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		code, out, _ := runCLI("resolve", "-json", "-config", cfg, good)
		var rep struct {
			OK         bool `json:"ok"`
			Resolution struct {
				Host          string `json:"host"`
				TLSServerName string `json:"tls_server_name"`
			} `json:"resolution"`
			Keys struct {
				Keys []struct {
					SelfSigned bool `json:"self_signed"`
				} `json:"keys"`
			} `json:"keys"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if code != exitOK || !rep.OK || rep.Resolution.Host != good || rep.Resolution.TLSServerName != "hs.test" ||
			len(rep.Keys.Keys) != 1 || !rep.Keys.Keys[0].SelfSigned {
			t.Fatalf("exit %d, report %s", code, out)
		}
	})
}

// FuzzCheckKeys: any key document is judged without panicking, and canonical
// JSON is stable (re-encoding its own output changes nothing).
func FuzzCheckKeys(f *testing.F) {
	f.Add([]byte(`{"server_name":"a.example","valid_until_ts":1,"verify_keys":{"ed25519:x":{"key":"AAAA"}},"signatures":{"a.example":{"ed25519:x":"AAAA"}}}`))
	f.Add([]byte(`{"server_name":"a.example","verify_keys":{"ed25519:x":{"key":"` + strings.Repeat("A", 43) + `"}},"unsigned":{"a":-0}}`))
	f.Add([]byte(`{"a":1e400,"b":[1.5,"\u2028",null,true]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var kr keysReport
		checkKeys(&kr, raw, "a.example", time.Unix(1e9, 0))
		doc, err := decodeJSONObject(raw)
		if err != nil {
			return
		}
		once, err := appendCanonicalJSON(nil, doc)
		if err != nil {
			return
		}
		again, err := decodeJSONObject(once)
		if err != nil {
			t.Fatalf("canonical output %q does not decode: %v", once, err)
		}
		twice, err := appendCanonicalJSON(nil, again)
		if err != nil || string(once) != string(twice) {
			t.Fatalf("canonical JSON not stable:\n%q\n%q (%v)", once, twice, err)
		}
	})
}
