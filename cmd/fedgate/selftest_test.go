package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// deployment is a fedgate started in-process by "run" for example.test,
// reachable through the test DNS server by _matrix-fed._tcp, in front of a
// recording homeserver.
type deployment struct {
	t       *testing.T
	dir     string
	dns     *fedtest.DNS
	ca      *fedtest.CA
	hs      *fedtest.Homeserver
	keyFile string
	key     auth.SigningKey
	fedAddr string
	admin   string
	egress  string // the egress listener, when fedgate bound one
}

// deploymentSetup varies a deployment.
type deploymentSetup struct {
	certNames []string // names of the TLS certificate; default example.test
	egress    bool     // configure listen.egress (bound only once the egress exists)
	// hostsOnly leaves fed.example.test (the SRV target) out of DNS, for
	// tests that name it in a hosts file.
	hostsOnly bool
}

const deploymentConfig = `server_name = "example.test"
data_dir = %q
[upstream]
url = %q
timeout = "5s"
[listen]
federation = ["127.0.0.1:0"]
admin = %q
%s
[tls]
mode = "files"
cert_file = %q
key_file = %q
[keys]
signing_key = %q
[outbound]
resolvers = [%q]
ca_file = %q
dns_timeout = "2s"
[egress]
secret = "s3cret"
[policy]
deny = ["denied.example"]
[admin]
ready_window = "2s"
`

// startDeployment runs fedgate as "fedgate run" does and publishes its
// federation port in DNS.
func startDeployment(t *testing.T, s deploymentSetup) *deployment {
	t.Helper()
	d := &deployment{t: t, dir: t.TempDir()}
	d.ca = fedtest.NewCA(t)
	names := s.certNames
	if names == nil {
		names = []string{"example.test"}
	}
	d.ca.WriteLeafFiles(t, d.dir, names...) // cert.pem and key.pem, named by writeConfig
	var err error
	if d.key, err = auth.GenerateSigningKey("k1"); err != nil {
		t.Fatal(err)
	}
	d.keyFile = filepath.Join(d.dir, "signing.key")
	if err := auth.WriteKeyFile(d.keyFile, auth.FormatSynapse, []auth.SigningKey{d.key}); err != nil {
		t.Fatal(err)
	}
	d.dns = fedtest.StartDNS(t)
	if !s.hostsOnly {
		d.dns.Add(t, "fed.example.test. 300 IN A 127.0.0.1")
	}
	d.hs = fedtest.StartHomeserver(t)
	d.hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"server":{"name":"Synapse","version":"1.120.0"}}`))
	})
	egress := ""
	if s.egress {
		egress = `egress = "127.0.0.1:0"`
	}
	path := d.writeConfig("run.toml", "127.0.0.1:0", egress, d.keyFile)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	addrs := startRun(t, c, path).waitReady("federation", "admin")
	d.fedAddr, d.admin, d.egress = addrs["federation"], addrs["admin"], addrs["egress"]
	_, port, _ := net.SplitHostPort(d.fedAddr)
	d.dns.Add(t, "_matrix-fed._tcp.example.test. 300 IN SRV 10 5 "+port+" fed.example.test.")
	return d
}

// writeConfig writes a configuration of this deployment under name.
func (d *deployment) writeConfig(name, admin, egress, keyFile string) string {
	d.t.Helper()
	certFile, keyPEM := filepath.Join(d.dir, "cert.pem"), filepath.Join(d.dir, "key.pem")
	text := fmt.Sprintf(deploymentConfig, filepath.Join(d.dir, "data"), d.hs.URL, admin, egress,
		certFile, keyPEM, keyFile, d.dns.Addr, d.ca.WriteCertFile(d.t, d.dir))
	path := filepath.Join(d.dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return path
}

// waitReady waits until the admin listener says ready.
func (d *deployment) waitReady() {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + d.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatal("fedgate never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeEgress answers Synapse's worker proxy protocol like fedgate's egress
// does for a denied destination, or with the given status instead.
func fakeEgress(t *testing.T, status int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Proxy-Authorization") != "Bearer s3cret":
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"errcode":"M_UNAUTHORIZED","err":"bad secret"}`))
		case r.URL.Scheme != "matrix-federation" || r.URL.Path != "/_matrix/federation/v1/version":
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"errcode":"M_UNRECOGNIZED","err":"not a worker proxy request"}`))
		case status != 0:
			w.WriteHeader(status)
			w.Write([]byte(`{"server":{"name":"Remote"}}`))
		case r.URL.Host == "denied.example":
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN","err":"destination_denied: denied.example is on the deny list"}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`{"errcode":"M_UNKNOWN","err":"cannot reach"}`))
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// parseSelftest reads the text report into check name -> line.
func parseSelftest(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := map[string]string{}
	re := regexp.MustCompile(`^(PASS|FAIL|SKIP) (\S+)\s+(.*)$`)
	for _, l := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			lines[m[2]] = m[1] + " " + m[3]
		}
	}
	return lines
}

func TestSelftest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fedgate")
	}
	healthy := startDeployment(t, deploymentSetup{})
	healthy.waitReady()
	// The classic mistake: a certificate for the SRV target. Remote servers
	// check the server name's own host for _matrix-fed._tcp (spec rule 4).
	wrongCert := startDeployment(t, deploymentSetup{certNames: []string{"fed.example.test"}})
	down := startDeployment(t, deploymentSetup{})
	down.hs.Close()
	// A key file with a key the running fedgate does not publish: the
	// operator added a key and did not reload.
	k2, _ := auth.GenerateSigningKey("k2")
	twoKeys := filepath.Join(healthy.dir, "two.key")
	if err := auth.WriteKeyFile(twoKeys, auth.FormatSynapse, []auth.SigningKey{healthy.key, k2}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		cfg  func() string
		code int
		want map[string]string // check -> substring of its line ("PASS ..." / "FAIL ...")
	}{
		{"healthy", func() string {
			return healthy.writeConfig("a.toml", healthy.admin, `egress = "`+fakeEgress(t, 0)+`"`, healthy.keyFile)
		}, exitOK, map[string]string{
			"discovery": "PASS example.test: spec rule 4 (_matrix-fed._tcp SRV) -> Host example.test, TLS name example.test, addresses " + healthy.fedAddr,
			"tls":       "PASS " + healthy.fedAddr + ": certificate for example.test valid until",
			"keys":      "PASS key document from " + healthy.fedAddr + " lists ed25519:k1, each signing it",
			"version":   "PASS the homeserver answers through fedgate: Synapse 1.120.0",
			"egress":    "PASS egress at 127.0.0.1:",
			"admin":     "PASS http://" + healthy.admin + "/readyz says ready",
		}},
		{"wrong certificate name", func() string {
			return wrongCert.writeConfig("a.toml", "", "", wrongCert.keyFile)
		}, exitFailure, map[string]string{
			"discovery": "PASS",
			"tls":       "FAIL " + wrongCert.fedAddr + ": certificate covers fed.example.test, not example.test -- fix: remote servers check the certificate against example.test",
			"keys":      "SKIP needs an address whose certificate verifies",
			"version":   "SKIP",
			"egress":    "SKIP listen.egress is not set",
			"admin":     "SKIP listen.admin is not set",
		}},
		{"key document missing a key", func() string {
			return healthy.writeConfig("b.toml", "", "", twoKeys)
		}, exitFailure, map[string]string{
			"tls":     "PASS",
			"keys":    "FAIL key document from " + healthy.fedAddr + ": ed25519:k2 from keys.signing_key is not in verify_keys -- fix: the server answering does not publish exactly the keys of this configuration: reload fedgate",
			"version": "PASS",
		}},
		{"homeserver down", func() string {
			return down.writeConfig("a.toml", "", "", down.keyFile)
		}, exitFailure, map[string]string{
			"keys":    "PASS",
			"version": "FAIL GET /_matrix/federation/v1/version: HTTP 502 M_UNKNOWN The homeserver could not be reached -- fix: fedgate cannot reach the homeserver: check upstream.url (" + down.hs.URL + ")",
		}},
		{"egress delivers a denied destination", func() string {
			return healthy.writeConfig("c.toml", "", `egress = "`+fakeEgress(t, 200)+`"`, healthy.keyFile)
		}, exitFailure, map[string]string{
			"egress": "FAIL egress at 127.0.0.1:",
		}},
		{"egress with another secret", func() string {
			p := healthy.writeConfig("d.toml", "", `egress = "`+fakeEgress(t, 0)+`"`, healthy.keyFile)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(data), `secret = "s3cret"`, `secret = "other"`, 1)), 0o600)
			return p
		}, exitFailure, map[string]string{
			"egress": "401 M_UNAUTHORIZED bad secret -- fix: the running fedgate expects another secret",
		}},
		{"egress not listening", func() string {
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := ln.Addr().String()
			ln.Close()
			return healthy.writeConfig("e.toml", "", `egress = "`+addr+`"`, healthy.keyFile)
		}, exitFailure, map[string]string{
			"egress": "FAIL egress at 127.0.0.1:",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI("selftest", "-config", tt.cfg(), "-timeout", "30s")
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			lines := parseSelftest(t, out)
			if len(lines) != 6 {
				t.Errorf("%d check lines, want 6:\n%s", len(lines), out)
			}
			for check, want := range tt.want {
				if !strings.HasPrefix(lines[check], want) && !strings.Contains(lines[check], want) {
					t.Errorf("%s:\n got %s\nwant %s", check, lines[check], want)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		cfg := wrongCert.writeConfig("j.toml", "", "", wrongCert.keyFile)
		code, out, _ := runCLI("selftest", "-json", "-config", cfg)
		var rep selftestReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if code != exitFailure || rep.OK || len(rep.Checks) != 6 || rep.Checks[1].Name != "tls" || rep.Checks[1].Status != checkFail || rep.Checks[1].Fix == "" {
			t.Fatalf("exit %d, report %+v", code, rep)
		}
	})
}

// TestSelftestAgainstTheEgress runs the egress check against fedgate's own
// egress listener.
func TestSelftestAgainstTheEgress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fedgate")
	}
	d := startDeployment(t, deploymentSetup{egress: true})
	if d.egress == "" {
		t.Fatal("fedgate bound no egress listener")
	}
	cfg := d.writeConfig("s.toml", "", `egress = "`+d.egress+`"`, d.keyFile)
	code, out, _ := runCLI("selftest", "-config", cfg)
	lines := parseSelftest(t, out)
	if code != exitOK || !strings.HasPrefix(lines["egress"], "PASS egress at "+d.egress+" refused denied.example, which policy denies: 403 M_FORBIDDEN") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestDeniedDestination(t *testing.T) {
	tests := []struct {
		policy, want string
		dryRun       bool
	}{
		{"deny = [\"evil.example\"]", "evil.example", false},
		{"deny = [\"re:^x$\", \"*.bad.example\"]", "fedgate-selftest.bad.example", false},
		{"default = \"deny\"\nallow = [\"partner.example\"]", "fedgate-selftest.invalid", false},
		{"default = \"deny\"\nallow = [\"*\"]", "", false},
		{"", "", false},
		{"dry_run = true\ndeny = [\"evil.example\"]", "", true},
	}
	for _, tt := range tests {
		c, err := config.Parse("/x/gateway.toml", []byte("server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[keys]\ngenerate = true\n[policy]\n"+tt.policy+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		got, dry, err := deniedDestination(c)
		if err != nil || got != tt.want || dry != tt.dryRun {
			t.Errorf("%q: got %q dry %v %v, want %q %v", tt.policy, got, dry, err, tt.want, tt.dryRun)
		}
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		"[::]:8449": "[::1]:8449", "0.0.0.0:9090": "127.0.0.1:9090", ":9090": "127.0.0.1:9090",
		"10.0.0.5:9090": "10.0.0.5:9090", "localhost:1": "localhost:1", "junk": "junk",
	} {
		if got := dialAddr(in); got != want {
			t.Errorf("dialAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCompareKeyDocument(t *testing.T) {
	k1, _ := auth.GenerateSigningKey("k1")
	k2, _ := auth.GenerateSigningKey("k2")
	old := auth.OldVerifyKey{ID: "ed25519:k0", Key: k2.Public(), ExpiredTS: 1}
	doc, err := auth.BuildKeyDocument("example.org", []auth.SigningKey{k1}, []auth.OldVerifyKey{old}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	oldCfg := []config.OldKey{{KeyID: "ed25519:k0", PublicKey: auth.EncodeBase64(k2.Public())}}
	if p := compareKeyDocument(doc, []auth.SigningKey{k1}, oldCfg); len(p) != 0 {
		t.Fatalf("matching document: %v", p)
	}
	p := compareKeyDocument(doc, []auth.SigningKey{k1, k2}, nil)
	if len(p) != 1 || !strings.Contains(p[0], "ed25519:k2 from keys.signing_key is not in verify_keys") {
		t.Fatalf("missing key: %v", p)
	}
	p = compareKeyDocument(doc, []auth.SigningKey{k2}, []config.OldKey{{KeyID: "ed25519:k9", PublicKey: "x"}})
	if len(p) != 3 {
		t.Fatalf("wrong keys: %v", p)
	}
}

func FuzzCompareKeyDocument(f *testing.F) {
	k1, _ := auth.GenerateSigningKey("k1")
	doc, _ := auth.BuildKeyDocument("example.org", []auth.SigningKey{k1}, nil, time.Unix(2e9, 0))
	f.Add(doc)
	f.Add([]byte(`{"verify_keys":{"ed25519:k1":{"key":1}},"old_verify_keys":[]}`))
	f.Add([]byte(`{"verify_keys":{"ed25519:k1":null,"x":{"key":"` + strings.Repeat("A", 200) + `"}}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"verify_keys":"nope"} trailing`))
	old := []config.OldKey{{KeyID: "ed25519:k0", PublicKey: "AAAA"}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, p := range compareKeyDocument(raw, []auth.SigningKey{k1}, old) {
			if len(p) > 400 {
				t.Fatalf("problem text of %d bytes: remote text must be clipped", len(p))
			}
		}
	})
}

func FuzzSelftestResponses(f *testing.F) {
	for _, s := range []string{
		`{"server":{"name":"Synapse","version":"1.2"}}`, `{"server":{}}`, `{"errcode":"M_FORBIDDEN","err":"no"}`,
		`{"errcode":"M_UNKNOWN","error":"x","err":"y"}`, `{"errcode":1}`, `null`, ``, `{"server":{"name":"` + strings.Repeat("é", 100) + `"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		name, err := versionName(body)
		if err == nil && name == "" {
			t.Fatal("empty name without error")
		}
		code, msg := matrixError(body)
		_ = clipText(msg)
		if code == "" && msg != "" && !json.Valid(body) {
			t.Fatal("message from invalid JSON")
		}
	})
}

// TestUpstreamSetting: a version check's fix names the setting the
// default pool comes from, url or urls, with its value.
func TestUpstreamSetting(t *testing.T) {
	for _, tc := range []struct {
		u    config.Upstream
		want string
	}{
		{config.Upstream{URL: "http://127.0.0.1:8008"}, "upstream.url (http://127.0.0.1:8008)"},
		{config.Upstream{URLs: []string{"http://10.0.0.1:8008", "http://10.0.0.2:8008"}}, "upstream.urls (http://10.0.0.1:8008, http://10.0.0.2:8008)"},
	} {
		if got := upstreamSetting(tc.u); got != tc.want {
			t.Errorf("upstreamSetting(%+v) = %q, want %q", tc.u, got, tc.want)
		}
	}
}
