package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// testSecret is the egress secret of every test gateway (Synapse's
// worker_replication_secret).
const testSecret = "s3cret-replication"

// remoteNames are the DNS names the test DNS server maps to 127.0.0.1 and
// the test remote's certificate covers.
var remoteNames = []string{"remote.test", "other.test", "matrix.remote.test", "evil.test", "internal.test", "push.test"}

// egressOptions shape a test gateway with an egress listener.
type egressOptions struct {
	// egress is TOML added to the [egress] table.
	egress string
	// extra is TOML appended after everything (its own tables).
	extra string
	// loopbackAllowed lists 127.0.0.0/8 in outbound.allow_networks, so the
	// SSRF guard lets discovery reach the loopback test remote.
	loopbackAllowed bool
	// overrides are [outbound.overrides] entries.
	overrides map[string]string
	// outbound is TOML added to the [outbound] table.
	outbound string
	// noAccessLog turns the access log off (benchmarks).
	noAccessLog bool
	// cluster shares state with other instances (cluster mode).
	cluster *cluster.Client
}

// egressEnv is a running gateway with an egress listener, a DNS server
// that maps remoteNames to 127.0.0.1 and a remote federation server behind
// them (ports 443 and 8448 are mapped to it, no real port is used).
type egressEnv struct {
	t          testing.TB
	gw         *Gateway
	cfg        *config.Config
	key        auth.SigningKey // the server's signing key, shared with the "homeserver"
	ca         *fedtest.CA
	dns        *fedtest.DNS
	remote     *testRemote
	egressAddr string
	fedAddr    string
	clock      *fakeClock
	logs       *observer.ObservedLogs
	egressCA   *x509.CertPool
}

func startEgress(t testing.TB, o egressOptions) *egressEnv {
	t.Helper()
	ca := fedtest.NewCA(t)
	var zone []string
	for _, n := range remoteNames {
		zone = append(zone, n+". 300 IN A 127.0.0.1")
	}
	dnsSrv := fedtest.StartDNS(t, zone...)
	env := &egressEnv{t: t, ca: ca, dns: dnsSrv, clock: newFakeClock()}
	env.remote = startRemote(t, ca, env)

	dir := t.TempDir()
	key, err := auth.GenerateSigningKey("gw_1")
	if err != nil {
		t.Fatal(err)
	}
	env.key = key
	keyFile := filepath.Join(dir, "signing.key")
	if err := auth.WriteKeyFile(keyFile, auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil { // as "fedgate run" does
		t.Fatal(err)
	}
	hs := fedtest.StartHomeserver(t)
	var b strings.Builder
	fmt.Fprintf(&b, "server_name = \"gw.test\"\ndata_dir = %q\n", filepath.Join(dir, "data"))
	fmt.Fprintf(&b, "[upstream]\nurl = %q\n", hs.URL)
	b.WriteString("[listen]\nfederation = [\"127.0.0.1:0\"]\negress = \"127.0.0.1:0\"\n")
	fmt.Fprintf(&b, "[log]\naccess = %v\n", !o.noAccessLog)
	fmt.Fprintf(&b, "[keys]\nsigning_key = %q\n", keyFile)
	fmt.Fprintf(&b, "[outbound]\nca_file = %q\nresolvers = [%q]\ndns_timeout = \"2s\"\ndial_timeout = \"2s\"\n", ca.WriteCertFile(t, dir), dnsSrv.Addr)
	if o.loopbackAllowed {
		b.WriteString("allow_networks = [\"127.0.0.0/8\"]\n")
	}
	b.WriteString(o.outbound + "\n")
	if len(o.overrides) > 0 {
		b.WriteString("[outbound.overrides]\n")
		for k, v := range o.overrides {
			fmt.Fprintf(&b, "%q = %q\n", k, v)
		}
	}
	b.WriteString("[egress]\ntimeout = \"10s\"\n")
	if !strings.Contains(o.egress, "secret_file") {
		fmt.Fprintf(&b, "secret = %q\n", testSecret)
	}
	b.WriteString(o.egress + "\n")
	b.WriteString(o.extra)
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	env.cfg = cfg
	core, logs := observer.New(zapcore.InfoLevel)
	env.logs = logs
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core(), core))
	cert := ca.Issue(t, "gw.test", "127.0.0.1")
	gw, err := New(Options{
		Config:    cfg,
		Logger:    log,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12},
		Cluster:   o.cluster,
	})
	if err != nil {
		t.Fatal(err)
	}
	gw.egress.now = env.clock.Now
	startAgainstRemote(t, gw, cfg, env.remote.port)
	env.gw = gw
	env.egressAddr = gw.Addrs(ListenerEgress)[0].String()
	env.fedAddr = gw.Addrs(ListenerFederation)[0].String()
	pemBytes, err := os.ReadFile(filepath.Join(cfg.Egress.CADir, certs.EgressCACertFile))
	if err == nil {
		env.egressCA = x509.NewCertPool()
		env.egressCA.AppendCertsFromPEM(pemBytes)
	}
	return env
}

// startAgainstRemote starts gw with its federation client dialling
// remotePort for ports 443 and 8448 (tests cannot bind them), after
// discovery and the SSRF guard have run as usual, and shuts gw down when
// the test ends.
func startAgainstRemote(t testing.TB, gw *Gateway, cfg *config.Config, remotePort uint16) {
	t.Helper()
	dopts, err := DiscoveryOptions(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dopts.PortMap = map[uint16]uint16{443: remotePort, 8448: remotePort}
	r, err := discovery.NewResolver(dopts)
	if err != nil {
		t.Fatal(err)
	}
	gw.fedClient.Store(discovery.NewClient(r))
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
}

// sign returns the Authorization header line the homeserver would send:
// signed with the shared key as gw.test.
func (env *egressEnv) sign(method, target, destination, body string) string {
	env.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	x, err := auth.SignRequest(env.key, method, target, "gw.test", destination, b)
	if err != nil {
		env.t.Fatalf("signing: %v", err)
	}
	return "Authorization: " + x.String()
}

// worker sends one request of Synapse's worker proxy protocol over a new
// connection: METHOD matrix-federation://server<target>, with the given
// header lines ("Name: value"). Proxy-Authorization is not added.
func (env *egressEnv) worker(method, server, target, body string, headers ...string) *http.Response {
	env.t.Helper()
	conn, err := net.Dial("tcp", env.egressAddr)
	if err != nil {
		env.t.Fatal(err)
	}
	env.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return env.workerOn(conn, bufio.NewReader(conn), method, server, target, body, headers...)
}

// workerOn sends one worker-proxy request on an open connection.
func (env *egressEnv) workerOn(conn net.Conn, br *bufio.Reader, method, server, target, body string, headers ...string) *http.Response {
	env.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n", method, workerProxyScheme, server, target, server)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == "PUT" || method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		env.t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		env.t.Fatalf("reading response: %v", err)
	}
	env.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// bearer is the worker-proxy credential header.
func bearer(secret string) string { return "Proxy-Authorization: Bearer " + secret }

// proxyClient is a homeserver using fedgate as HTTPS_PROXY, as Dendrite's
// and Synapse's HTTP clients do: CONNECT, then TLS verified against roots
// (the egress CA for interception), h2 offered.
func (env *egressEnv) proxyClient(roots *x509.CertPool, user *url.Userinfo) *http.Client {
	env.t.Helper()
	proxy := &url.URL{Scheme: "http", Host: env.egressAddr, User: user}
	tr := &http.Transport{
		Proxy:             http.ProxyURL(proxy),
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
	}
	env.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// through sends method to https://authority<target> (target bytes kept
// exactly) with client, plus header lines.
func (env *egressEnv) through(client *http.Client, method, authority, target, body string, headers ...string) (*http.Response, error) {
	env.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://"+authority+"/", rd)
	if err != nil {
		env.t.Fatal(err)
	}
	path, query, hasQuery := strings.Cut(target, "?")
	req.URL.Opaque = path
	req.URL.RawQuery = query
	req.URL.ForceQuery = hasQuery && query == ""
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := client.Do(req)
	if err == nil {
		env.t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

// accessLines returns the access log lines written so far with direction
// "egress", as field maps.
func (env *egressEnv) accessLines() []map[string]any {
	var out []map[string]any
	for _, e := range env.logs.FilterLoggerName("access").All() {
		m := e.ContextMap()
		if m["direction"] == "egress" {
			out = append(out, m)
		}
	}
	return out
}

// waitAccess waits until an egress access line with the given request
// method and status exists (lines are written after the response) and
// returns it.
func (env *egressEnv) waitAccess(match func(map[string]any) bool) map[string]any {
	env.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, m := range env.accessLines() {
			if match(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			env.t.Fatalf("no matching access line; have %v", env.accessLines())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeClock is a settable clock for backoff.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// remoteRequest is what the test remote saw of one request.
type remoteRequest struct {
	Method     string
	RequestURI string
	Host       string
	SNI        string
	Header     http.Header
	Body       []byte
	// XMatrix is the parsed Authorization header, if any, and VerifyErr
	// the result of checking it against the gateway's published key
	// document.
	XMatrix   *auth.XMatrix
	VerifyErr error
}

// testRemote is a remote homeserver on loopback TLS: its certificate
// covers every remoteNames name; it serves a well-known document and
// records every other request, checking X-Matrix signatures against the
// key document the gateway publishes.
type testRemote struct {
	t     testing.TB
	env   *egressEnv
	srv   *httptest.Server
	port  uint16
	quiet atomic.Bool // answer {} without recording (benchmarks)

	mu        sync.Mutex
	requests  []remoteRequest
	handler   http.HandlerFunc
	wellKnown string
	keys      *auth.ServerKeys
}

func startRemote(t testing.TB, ca *fedtest.CA, env *egressEnv) *testRemote {
	t.Helper()
	rm := &testRemote{t: t, env: env}
	rm.srv = httptest.NewUnstartedServer(http.HandlerFunc(rm.serve))
	rm.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, remoteNames...)}}
	rm.srv.StartTLS()
	t.Cleanup(rm.srv.Close)
	rm.port = uint16(rm.srv.Listener.Addr().(*net.TCPAddr).Port)
	return rm
}

func (rm *testRemote) serve(w http.ResponseWriter, r *http.Request) {
	if rm.quiet.Load() {
		// Benchmarks: answer without recording or verifying.
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/.well-known/matrix/server" {
		rm.mu.Lock()
		doc := rm.wellKnown
		rm.mu.Unlock()
		if doc == "" {
			host, _, _ := strings.Cut(r.Host, ":")
			doc = `{"m.server":"` + host + `:8448"}`
		}
		rm.record(r, body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, doc)
		return
	}
	rm.record(r, body)
	rm.mu.Lock()
	h := rm.handler
	rm.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{}`)
}

func (rm *testRemote) record(r *http.Request, body []byte) {
	rr := remoteRequest{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: body}
	if r.TLS != nil {
		rr.SNI = r.TLS.ServerName
	}
	if v := r.Header.Values("Authorization"); len(v) > 0 {
		xs, err := auth.ParseAuthorization(v)
		if err != nil {
			rr.VerifyErr = err
		} else {
			x := xs[0]
			rr.XMatrix = &x
			rr.VerifyErr = rm.verify(x, r.Method, r.RequestURI, body)
		}
	}
	rm.mu.Lock()
	rm.requests = append(rm.requests, rr)
	rm.mu.Unlock()
}

// verify checks x as a remote server would: the origin's key from its
// published key document (fetched from the gateway's federation
// listener), the destination being the remote's own server name.
func (rm *testRemote) verify(x auth.XMatrix, method, uri string, body []byte) error {
	keys, err := rm.keyDocument(x.Origin)
	if err != nil {
		return err
	}
	pub, ok := keys.VerifyKeys[x.Key]
	if !ok {
		return fmt.Errorf("key %s is not published by %s", x.Key, x.Origin)
	}
	return auth.VerifyRequest(x, method, uri, x.Destination, body, pub)
}

func (rm *testRemote) keyDocument(origin string) (*auth.ServerKeys, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.keys != nil {
		return rm.keys, nil
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rm.env.ca.Pool(), ServerName: "gw.test"}}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + rm.env.fedAddr + "/_matrix/key/v2/server")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	keys, err := auth.ParseServerKeys(raw, origin, time.Now())
	if err != nil {
		return nil, err
	}
	rm.keys = keys
	return keys, nil
}

// handle replaces the remote's answer to federation requests.
func (rm *testRemote) handle(h http.HandlerFunc) {
	rm.mu.Lock()
	rm.handler = h
	rm.mu.Unlock()
}

// Requests returns what arrived so far.
func (rm *testRemote) Requests() []remoteRequest {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return append([]remoteRequest(nil), rm.requests...)
}

func (rm *testRemote) reset() {
	rm.mu.Lock()
	rm.requests = nil
	rm.mu.Unlock()
}

// federationRequests returns the recorded requests other than well-known
// fetches (which discovery makes on its own).
func (rm *testRemote) federationRequests() []remoteRequest {
	var out []remoteRequest
	for _, r := range rm.Requests() {
		if r.RequestURI != "/.well-known/matrix/server" {
			out = append(out, r)
		}
	}
	return out
}

// egressError asserts a Matrix error from the egress and returns its body;
// key is the message key expected ("error", or "err" for Synapse's proxy
// protocol).
func egressError(t *testing.T, resp *http.Response, status int, errcode, key string) map[string]any {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q; body %s", ct, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body is not JSON: %s", body)
	}
	if m["errcode"] != errcode {
		t.Fatalf("errcode %v, want %s; body %s", m["errcode"], errcode, body)
	}
	if msg, _ := m[key].(string); msg == "" {
		t.Fatalf("no %q message: %s", key, body)
	}
	return m
}
