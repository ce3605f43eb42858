package main

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// parseConfig parses TOML written into dir.
func parseConfig(t *testing.T, dir, text string) *config.Config {
	t.Helper()
	c, err := config.Parse(filepath.Join(dir, "gateway.toml"), []byte(text))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func TestCertsOptionsMapping(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const base = "server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n[well_known]\nserver = \"matrix.example.org:443\"\n[keys]\ngenerate = true\n"
	for _, tc := range []struct {
		name               string
		toml               string
		wantNames          []string
		wantHTTP, wantALPN string
	}{
		{
			name:      "acme with port 80 and 443",
			toml:      "[listen]\nfederation = [\"[::]:8448\"]\nhttps = [\"[::]:443\"]\nhttp = \"[::]:80\"\n[tls]\nmode = \"acme\"\n",
			wantNames: []string{"example.org", "matrix.example.org"},
			wantHTTP:  "[::]:80", wantALPN: "[::]:443",
		},
		{
			name:      "acme with port 80, federation on 8448 only: no TLS-ALPN-01",
			toml:      "[listen]\nfederation = [\"[::]:8448\"]\nhttp = \"[::]:80\"\n[tls]\nmode = \"acme\"\n",
			wantNames: []string{"example.org", "matrix.example.org"},
			wantHTTP:  "[::]:80",
		},
		{
			name:      "acme without a plain listener: TLS-ALPN-01 on the first TLS listener",
			toml:      "[listen]\nfederation = [\"[::]:8448\"]\n[tls]\nmode = \"acme\"\nnames = [\"matrix.example.org\"]\n",
			wantNames: []string{"matrix.example.org"},
			wantALPN:  "[::]:8448",
		},
		{
			name:      "self_signed",
			toml:      "[tls]\nmode = \"self_signed\"\n",
			wantNames: []string{"localhost", "127.0.0.1", "::1"},
		},
	} {
		c := parseConfig(t, dir, base+tc.toml)
		o := certsOptions(c, zap.NewNop())
		if !slices.Equal(o.Names, tc.wantNames) || o.HTTPChallengeAddr != tc.wantHTTP || o.TLSALPNChallengeAddr != tc.wantALPN {
			t.Errorf("%s: names %q, http-01 %q, tls-alpn-01 %q; want %q, %q, %q",
				tc.name, o.Names, o.HTTPChallengeAddr, o.TLSALPNChallengeAddr, tc.wantNames, tc.wantHTTP, tc.wantALPN)
		}
		if o.Mode == certs.ModeACME && o.Storage != filepath.Join(dir, "data", "acme") {
			t.Errorf("%s: storage %q", tc.name, o.Storage)
		}
	}
}

func TestReloadCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := fedtest.NewCA(t)
	certFile, keyFile := ca.WriteLeafFiles(t, dir, "example.org")
	text := "server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n[keys]\ngenerate = true\n[tls]\nmode = \"files\"\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n"
	c := parseConfig(t, dir, text)
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	o := certsOptions(c, log)
	if !slices.Equal(o.Names, []string{"example.org"}) {
		t.Fatalf("files mode names %q, want the server name", o.Names)
	}
	// Not started: the files are re-read on SIGHUP only.
	cm, err := certs.NewSet(certsOptionsAll(c, log))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cm.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "example.org"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := served()

	// New files, same configuration: SIGHUP serves them, no restart needed.
	if newCert, _ := ca.WriteLeafFiles(t, dir, "example.org"); newCert != certFile {
		t.Fatalf("files written to %s", newCert)
	}
	reloadCertificates(cm, parseConfig(t, dir, text), nil, log)
	if served() == before {
		t.Fatal("SIGHUP did not pick up the new files")
	}
	if logs.FilterMessageSnippet("restart").Len() != 0 {
		t.Error("unchanged [tls] reported as needing a restart")
	}

	// A broken pair is refused and logged, with the changed [tls] that
	// needs it; what was served stays.
	current := served()
	os.WriteFile(keyFile, []byte("broken"), 0o600)
	changed := parseConfig(t, dir, strings.Replace(text, "mode = \"files\"", "mode = \"files\"\nnames = [\"matrix.example.org\"]", 1))
	reloadCertificates(cm, changed, nil, log)
	if served() != current {
		t.Fatal("a broken pair replaced the served one")
	}
	if logs.FilterMessageSnippet("certificate reload refused").Len() != 1 || logs.FilterMessageSnippet("tls settings refused").Len() != 1 ||
		logs.FilterMessageSnippet("restart fedgate").Len() != 0 {
		t.Errorf("logs: %v", logs.All())
	}
	// A configuration that did not load still re-reads the files.
	reloadCertificates(cm, nil, nil, log)
	if logs.FilterMessageSnippet("certificate reload refused").Len() != 2 {
		t.Errorf("reload without configuration: %v", logs.All())
	}
}

// TestRunACMEWithPebble runs fedgate in acme mode against Pebble: the
// gateway's plain listener answers HTTP-01, and the federation listener
// then serves a certificate that verifies against Pebble's root.
func TestRunACMEWithPebble(t *testing.T) {
	t.Parallel()
	const name = "e2e.fedgate.test"
	p, httpAddr, tlsAddr := startPebbleForRun(t, name)

	dir := t.TempDir()
	c := parseConfig(t, dir, `server_name = "`+name+`"
[upstream]
url = "http://127.0.0.1:1"
[listen]
federation = ["`+tlsAddr+`"]
http = "`+httpAddr+`"
[well_known]
server = "`+name+`:443"
[keys]
generate = true
[tls]
mode = "acme"
email = "ops@fedgate.test"
ca = "`+p.DirURL+`"
ca_root = "`+p.APIRootFile+`"
`)
	r := startRun(t, c, c.File)
	logs := r.logs
	resp, body := r.wellKnownOnceCertified(p, tlsAddr, name)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("well-known: %s %d %q", resp.Proto, resp.StatusCode, body)
	}
	if string(body) != `{"m.server":"`+name+`:443"}` {
		t.Fatalf("well-known body %q", body)
	}
	if logs.FilterMessageSnippet("served key authentication").FilterField(zap.String("challenge", "http-01")).Len() == 0 {
		t.Error("the HTTP-01 challenge was not answered by the gateway's plain listener")
	}
	if err := r.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}
