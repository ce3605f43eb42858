package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// hostedDeployment is "fedgate run" hosting several server names: one
// certificate pair covering them all (inherited by every [[servers]]
// entry), a signing key file for the first, generated keys for the others,
// a recording homeserver each, and SRV records for every name.
type hostedDeployment struct {
	t       *testing.T
	dir     string
	dns     *fedtest.DNS
	ca      *fedtest.CA
	hs      map[string]*fedtest.Homeserver
	fedAddr string
	admin   string
	logs    *observer.ObservedLogs
	signals chan os.Signal
}

var hostedDeploymentNames = []string{"example.test", "second.test", "third.test"}

// config renders the configuration hosting names, with the given admin
// listener.
func (d *hostedDeployment) config(admin string, names ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name = %q\ndata_dir = %q\n", names[0], filepath.Join(d.dir, "data"))
	fmt.Fprintf(&b, "[upstream]\nurl = %q\n", d.hs[names[0]].URL)
	fmt.Fprintf(&b, "[listen]\nfederation = [\"127.0.0.1:0\"]\nadmin = %q\n", admin)
	fmt.Fprintf(&b, "[tls]\nmode = \"files\"\ncert_file = %q\nkey_file = %q\n", filepath.Join(d.dir, "cert.pem"), filepath.Join(d.dir, "key.pem"))
	fmt.Fprintf(&b, "[keys]\nsigning_key = %q\n", filepath.Join(d.dir, "signing.key"))
	fmt.Fprintf(&b, "[outbound]\nresolvers = [%q]\nca_file = %q\ndns_timeout = \"2s\"\nallow_networks = [\"127.0.0.0/8\"]\n", d.dns.Addr, d.ca.WriteCertFile(d.t, d.dir))
	b.WriteString("[admin]\nready_window = \"2s\"\n")
	for _, n := range names[1:] {
		fmt.Fprintf(&b, "\n[[servers]]\nserver_name = %q\n[servers.upstream]\nurl = %q\n[servers.keys]\ngenerate = true\n", n, d.hs[n].URL)
	}
	return b.String()
}

func (d *hostedDeployment) write(name, text string) string {
	d.t.Helper()
	path := filepath.Join(d.dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return path
}

func startHostedDeployment(t *testing.T, names ...string) *hostedDeployment {
	t.Helper()
	d := &hostedDeployment{t: t, dir: t.TempDir(), ca: fedtest.NewCA(t), hs: map[string]*fedtest.Homeserver{}, signals: make(chan os.Signal, 1)}
	d.ca.WriteLeafFiles(t, d.dir, hostedDeploymentNames...)
	key, _ := auth.GenerateSigningKey("k1")
	if err := auth.WriteKeyFile(filepath.Join(d.dir, "signing.key"), auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
		t.Fatal(err)
	}
	d.dns = fedtest.StartDNS(t, "fed.test. 300 IN A 127.0.0.1")
	for _, n := range hostedDeploymentNames {
		hs := fedtest.StartHomeserver(t)
		version := `{"server":{"name":"Synapse","version":"` + n + `"}}`
		hs.Handle(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, version)
		})
		d.hs[n] = hs
	}
	path := d.write("run.toml", d.config("127.0.0.1:0", names...))
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	d.logs = logs
	done := make(chan error, 1)
	go func() { done <- run(c, path, zap.New(core), d.signals) }()
	t.Cleanup(func() {
		d.signals <- syscall.SIGTERM
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for d.fedAddr == "" || d.admin == "" || logs.FilterMessage("fedgate ready").Len() == 0 {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("fedgate did not start")
		}
		time.Sleep(10 * time.Millisecond)
		for _, e := range logs.FilterMessage("listening").All() {
			addr, _ := e.ContextMap()["addr"].(string)
			switch e.ContextMap()["listener"] {
			case "federation":
				d.fedAddr = addr
			case "admin":
				d.admin = addr
			}
		}
	}
	_, port, _ := net.SplitHostPort(d.fedAddr)
	for _, n := range hostedDeploymentNames {
		d.dns.Add(t, "_matrix-fed._tcp."+n+". 300 IN SRV 10 5 "+port+" fed.test.")
	}
	return d
}

// keyDocumentOf fetches the key document served for name.
func (d *hostedDeployment) keyDocumentOf(name string) (*auth.ServerKeys, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: d.ca.Pool(), ServerName: name},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, d.fedAddr)
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + name + "/_matrix/key/v2/server")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return auth.ParseServerKeys(raw, name, time.Now())
}

// TestHostedDeployment runs fedgate with two hosted names, then checks
// them with check-config, resolve and selftest (one report per name), and
// adds a third by SIGHUP.
func TestHostedDeployment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fedgate")
	}
	d := startHostedDeployment(t, hostedDeploymentNames[:2]...)
	// The second server's key was generated by "run".
	if _, err := os.Stat(filepath.Join(d.dir, "data", "servers", "second.test", "signing.key")); err != nil {
		t.Fatalf("generated key: %v", err)
	}
	cfg := d.write("check.toml", d.config(d.admin, hostedDeploymentNames[:2]...))

	code, out, errOut := runCLI("check-config", "-config", cfg)
	if code != exitOK || !strings.Contains(out, "hosted:       2: example.test, second.test") || !strings.Contains(out, "servers[0]:   second.test") {
		t.Fatalf("check-config: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = runCLI("resolve", "-timeout", "10s", "-config", cfg)
	if code != exitOK || !strings.Contains(out, "OK: federation with example.test should work") || !strings.Contains(out, "OK: federation with second.test should work") {
		t.Fatalf("resolve: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = runCLI("selftest", "-timeout", "20s", "-config", cfg)
	reports := strings.Split(out, "fedgate selftest of ")
	if code != exitOK || len(reports) != 3 {
		t.Fatalf("selftest: %d\n%s%s", code, out, errOut)
	}
	for i, name := range hostedDeploymentNames[:2] {
		lines := parseSelftest(t, reports[i+1])
		if !strings.HasPrefix(reports[i+1], name+" ") || !strings.HasPrefix(lines["keys"], "PASS") ||
			lines["version"] != "PASS the homeserver answers through fedgate: Synapse "+name {
			t.Fatalf("selftest of %s:\n%s", name, reports[i+1])
		}
	}

	// SIGHUP adds the third name: its key is generated, its key document
	// served, its homeserver reached.
	if err := os.WriteFile(filepath.Join(d.dir, "run.toml"), []byte(d.config("127.0.0.1:0", hostedDeploymentNames...)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.signals <- syscall.SIGHUP
	deadline := time.Now().Add(10 * time.Second)
	for d.logs.FilterMessage("hosted server added").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no server added; logs %v", d.logs.All())
		}
		time.Sleep(10 * time.Millisecond)
	}
	keys, err := d.keyDocumentOf("third.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.VerifyKeys) != 1 {
		t.Fatalf("third.test publishes %v", keys.VerifyKeys)
	}
	code, out, _ = runCLI("resolve", "-timeout", "10s", "-config", d.write("three.toml", d.config(d.admin, hostedDeploymentNames...)))
	if code != exitOK || strings.Count(out, "should work") != 3 {
		t.Fatalf("resolve after the reload: %d\n%s", code, out)
	}
}

// TestRunACMEWithPebbleTwoServers runs fedgate hosting two names in acme
// mode against Pebble: one ACME account obtains a certificate for each
// name, the listener serves each by SNI, and each name's well-known is
// its own.
func TestRunACMEWithPebbleTwoServers(t *testing.T) {
	t.Parallel()
	bin := fedtest.PebbleBinary(t)
	names := []string{"a.e2e.test", "b.e2e.test"}
	dns := fedtest.StartDNS(t, names[0]+". 60 IN A 127.0.0.1", names[1]+". 60 IN A 127.0.0.1")
	httpAddr, tlsAddr := freeAddr(t), freeAddr(t)
	_, httpPort, _ := net.SplitHostPort(httpAddr)
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	hp, _ := strconv.Atoi(httpPort)
	tp, _ := strconv.Atoi(tlsPort)
	p := fedtest.StartPebble(t, fedtest.PebbleOptions{Binary: bin, DNS: dns, HTTPPort: hp, TLSPort: tp})

	dir := t.TempDir()
	c := parseConfig(t, dir, `server_name = "`+names[0]+`"
[upstream]
url = "http://127.0.0.1:1"
[listen]
federation = ["`+tlsAddr+`"]
http = "`+httpAddr+`"
[well_known]
server = "`+names[0]+`:443"
[keys]
generate = true
[tls]
mode = "acme"
email = "ops@e2e.test"
ca = "`+p.DirURL+`"
ca_root = "`+p.APIRootFile+`"

[[servers]]
server_name = "`+names[1]+`"
[servers.upstream]
url = "http://127.0.0.1:2"
[servers.well_known]
server = "`+names[1]+`:443"
[servers.keys]
generate = true
`)
	core, logs := observer.New(zap.InfoLevel)
	signals := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- run(c, c.File, zap.New(core), signals) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			signals <- syscall.SIGTERM
			<-done
		}
	})
	for _, name := range names {
		client := &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: p.IssuerRoots, ServerName: name},
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
				},
			},
		}
		defer client.CloseIdleConnections()
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := client.Get("https://" + name + "/.well-known/matrix/server")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				leaf := resp.TLS.PeerCertificates[0]
				if resp.StatusCode != 200 || string(body) != `{"m.server":"`+name+`:443"}` || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
					t.Fatalf("%s: %d %s, certificate for %v", name, resp.StatusCode, body, leaf.DNSNames)
				}
				break
			}
			select {
			case err := <-done:
				stopped = true
				t.Fatalf("fedgate stopped: %v; logs: %v", err, logs.All())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("no certificate for %s after 60s (last error %v); logs: %v", name, err, logs.All())
			}
		}
	}
	if logs.FilterMessageSnippet("served key authentication").FilterField(zap.String("challenge", "http-01")).Len() < 2 {
		t.Error("the HTTP-01 challenges were not answered by the gateway's plain listener")
	}
}

// TestCheckConfigHostedConflicts: check-config refuses what would let one
// hosted server be taken for another, at its line.
func TestCheckConfigHostedConflicts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.toml")
	text := `server_name = "a.example"
[upstream]
url = "http://127.0.0.1:8008"
[keys]
generate = true
[egress]
secret = "one"

[[servers]]
server_name = "b.example"
[servers.upstream]
url = "http://127.0.0.1:8009"
[servers.keys]
signing_key = "data/signing.key"
[servers.egress]
secret = "one"
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("check-config", "-config", path)
	for _, want := range []string{
		path + ":14: servers[0].keys.signing_key: " + filepath.Join(dir, "data", "signing.key") + " is also the signing key file of a.example",
		path + ":16: servers[0].egress.secret: the same as the egress secret of a.example",
	} {
		if code != exitFailure || !strings.Contains(errOut, want) {
			t.Errorf("check-config: %d, want a problem %q\n%s%s", code, want, out, errOut)
		}
	}
}
