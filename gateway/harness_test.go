package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// testGateway is a running Gateway on loopback plus what tests need to talk
// to it.
type testGateway struct {
	t      *testing.T
	gw     *Gateway
	cfg    *config.Config
	hs     *fedtest.Homeserver
	ca     *fedtest.CA
	key    auth.SigningKey // the gateway's signing key
	dir    string          // the test's folder (config, key, data)
	addr   string          // federation listener
	client *http.Client
}

// gatewayConfig is the TOML every test starts from; the verbs are the data
// folder, the upstream URL and extra TOML appended at the end (with the
// signing key file added to its [keys] table).
const gatewayConfig = `
server_name = "gw.test"
data_dir = %q
[upstream]
url = %q
timeout = "5s"
[listen]
federation = ["127.0.0.1:0"]
[log]
access = true
%s
`

// startGateway starts a Gateway in front of a recording homeserver. extra is
// TOML appended to the base configuration (later keys of a table must come
// in their own [section]).
func startGateway(t *testing.T, extra string) *testGateway {
	t.Helper()
	hs := fedtest.StartHomeserver(t)
	return startGatewayTo(t, hs, hs.URL, extra)
}

func startGatewayTo(t *testing.T, hs *fedtest.Homeserver, upstreamURL, extra string) *testGateway {
	t.Helper()
	return launchGateway(t, gatewaySetup{
		hs:       hs,
		upstream: upstreamURL,
		config: func(dataDir, upstream, keyFile string) string {
			// [keys] may appear in extra; the key file goes into that table.
			keysLine := fmt.Sprintf("signing_key = %q\n", keyFile)
			extra := extra
			if strings.Contains(extra, "[keys]\n") {
				extra = strings.Replace(extra, "[keys]\n", "[keys]\n"+keysLine, 1)
			} else {
				extra += "\n[keys]\n" + keysLine
			}
			return fmt.Sprintf(gatewayConfig, dataDir, upstream, extra)
		},
		logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
}

// gatewaySetup describes a gateway for launchGateway.
type gatewaySetup struct {
	hs       *fedtest.Homeserver // recorded in the testGateway; may be nil
	upstream string              // upstream URL
	// config renders the configuration file from the data folder, the
	// upstream URL and the signing key file.
	config  func(dataDir, upstream, keyFile string) string
	logger  *zap.Logger
	options func(*Options) // adjusts the options before New; may be nil
}

// launchGateway writes a signing key and the configuration into a fresh
// folder, starts a Gateway with a certificate from a new test CA, and
// returns it with an HTTP/2-capable client that trusts the CA. The data
// folder exists, as "fedgate run" creates it.
func launchGateway(t *testing.T, s gatewaySetup) *testGateway {
	t.Helper()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := auth.GenerateSigningKey("gw_1")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "signing.key")
	if err := auth.WriteKeyFile(keyFile, auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gateway.toml")
	text := s.config(dataDir, s.upstream, keyFile)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	ca := fedtest.NewCA(t)
	cert := ca.Issue(t, "gw.test", "127.0.0.1")
	opts := Options{
		Config:    cfg,
		Logger:    s.logger,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12},
		Version:   "test",
	}
	if s.options != nil {
		s.options(&opts)
	}
	gw, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Shutdown(ctx)
	})
	tg := &testGateway{t: t, gw: gw, cfg: cfg, hs: s.hs, ca: ca, key: key, dir: dir, addr: gw.Addrs(ListenerFederation)[0].String()}
	tg.client = &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), ServerName: "gw.test"},
			ForceAttemptHTTP2: true,
		},
		Timeout: 10 * time.Second,
	}
	t.Cleanup(tg.client.CloseIdleConnections)
	return tg
}

// do sends method with the raw request-target (path and query exactly as
// given) and body, plus headers given as "Name: value" strings.
func (tg *testGateway) do(method, target, body string, headers ...string) *http.Response {
	tg.t.Helper()
	req, err := http.NewRequest(method, "https://"+tg.addr+"/", strings.NewReader(body))
	if err != nil {
		tg.t.Fatal(err)
	}
	path, query, hasQuery := strings.Cut(target, "?")
	req.URL.Opaque = path
	req.URL.RawQuery = query
	req.URL.ForceQuery = hasQuery && query == ""
	if body == "" {
		req.Body = http.NoBody
		req.ContentLength = 0
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		tg.t.Fatalf("%s %s: %v", method, target, err)
	}
	tg.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// raw writes a hand-made HTTP/1.1 request over TLS and returns the parsed
// response (for requests Go's client refuses to send).
func (tg *testGateway) raw(request string) *http.Response {
	tg.t.Helper()
	conn, err := tls.Dial("tcp", tg.addr, &tls.Config{RootCAs: tg.ca.Pool(), ServerName: "gw.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		tg.t.Fatal(err)
	}
	tg.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		tg.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tg.t.Fatalf("reading response: %v", err)
	}
	tg.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// matrixError asserts a Matrix error response and returns its body fields.
func matrixError(t *testing.T, resp *http.Response, status int, errcode string) map[string]any {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body is not JSON: %s", body)
	}
	if m["errcode"] != errcode {
		t.Fatalf("errcode %v, want %s; body %s", m["errcode"], errcode, body)
	}
	if msg, _ := m["error"].(string); msg == "" {
		t.Fatalf("no error message: %s", body)
	}
	return m
}
