package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// A multi-server test gateway: several hosted servers on one federation
// listener, each with its own signing key, recording homeserver and egress
// secret; remote origins whose key servers fedgate reaches through
// overrides; and a remote federation server (remote.test) the egress
// delivers to, found through a loopback DNS server.

// hostedTest is one hosted server of a multiEnv.
type hostedTest struct {
	name   string
	key    auth.SigningKey
	keyRaw string // the key file
	hs     *fedtest.Homeserver
	secret string
}

// multiOptions shape a multiEnv.
type multiOptions struct {
	// names are the hosted server names, top-level first; default a.test
	// and b.test.
	names []string
	// perServer returns TOML for hosted server i; section renders a
	// section header for it ("[policy]" for the top level,
	// "[servers.policy]" for the others).
	perServer func(i int, section func(string) string) string
	// origins are remote servers with key servers fedgate can reach.
	origins []string
	// logLevel is the level of the observed logs (default info).
	logLevel zapcore.Level
	// admin adds an admin listener (/readyz, /metrics) with a short
	// admin.ready_window (1s).
	admin bool
	// upstream returns more of hosted server i's [upstream] table (keys,
	// then route tables: see routeHeader); url and timeout are set.
	upstream func(i int) string
	// cluster runs the gateway in cluster mode with this client.
	cluster *cluster.Client
	// egressNow replaces the egress's clock (backoff windows) when set.
	egressNow func() time.Time
}

// routeHeader is the header of an [[upstream.route]] table of hosted
// server i.
func routeHeader(i int) string {
	if i == 0 {
		return "[[upstream.route]]"
	}
	return "[[servers.upstream.route]]"
}

// multiEnv is a running multi-server gateway.
type multiEnv struct {
	t       *testing.T
	o       multiOptions
	gw      *Gateway
	ca      *fedtest.CA
	dir     string
	path    string // the configuration file
	servers map[string]*hostedTest
	origins []*testOrigin
	remote  *multiRemote
	dns     *fedtest.DNS
	logs    *observer.ObservedLogs
	addr    string // federation listener
	egress  string // egress listener

	loadMayFail bool // writeConfig returns nil for a refused configuration

	mu      sync.Mutex
	clients map[string]*http.Client // by SNI
}

func startMulti(t *testing.T, o multiOptions) *multiEnv {
	t.Helper()
	if len(o.names) == 0 {
		o.names = []string{"a.test", "b.test"}
	}
	env := &multiEnv{t: t, ca: fedtest.NewCA(t), dir: t.TempDir(), servers: map[string]*hostedTest{}, clients: map[string]*http.Client{}}
	env.path = filepath.Join(env.dir, "gateway.toml")
	for _, n := range o.origins {
		env.origins = append(env.origins, newOrigin(t, env.ca, n))
	}
	env.remote = startMultiRemote(t, env.ca)
	env.dns = fedtest.StartDNS(t, "remote.test. 300 IN A 127.0.0.1")
	env.launch(o)
	return env
}

// launch writes env's configuration for o into env.dir and starts its
// gateway.
func (env *multiEnv) launch(o multiOptions) {
	t := env.t
	t.Helper()
	if err := os.MkdirAll(filepath.Join(env.dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := env.writeConfig(o)
	core, logs := observer.New(o.logLevel)
	env.logs = logs
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)).Core(), core))
	names := append([]string{"127.0.0.1"}, o.names...)
	names = append(names, "shared.test", "fed.shared.test", "c.test") // c.test: added by reloads
	cert := env.ca.Issue(t, names...)
	gw, err := New(Options{
		Config:    cfg,
		Logger:    log,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12},
		Version:   "test",
		Cluster:   o.cluster,
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.egressNow != nil {
		gw.egress.now = o.egressNow
	}
	startAgainstRemote(t, gw, cfg, env.remote.port)
	env.gw = gw
	env.addr = gw.Addrs(ListenerFederation)[0].String()
	env.egress = gw.Addrs(ListenerEgress)[0].String()
}

// writeConfig writes the configuration for o's names (creating the key
// file and homeserver of names not seen before) and loads it.
func (env *multiEnv) writeConfig(o multiOptions) *config.Config {
	t := env.t
	t.Helper()
	if len(o.names) == 0 {
		o.names = env.o.names
	}
	env.o = o
	var b strings.Builder
	for i, name := range o.names {
		ht := env.servers[name]
		if ht == nil {
			key, err := auth.GenerateSigningKey(fmt.Sprintf("k%d", len(env.servers)))
			if err != nil {
				t.Fatal(err)
			}
			ht = &hostedTest{name: name, key: key, hs: fedtest.StartHomeserver(t), secret: "secret-" + name,
				keyRaw: filepath.Join(env.dir, name+".key")}
			if err := auth.WriteKeyFile(ht.keyRaw, auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
				t.Fatal(err)
			}
			env.servers[name] = ht
		}
		section := func(s string) string { return "[" + s + "]" }
		if i > 0 {
			section = func(s string) string { return "[servers." + s + "]" }
			b.WriteString("\n[[servers]]\n")
		} else {
			fmt.Fprintf(&b, "data_dir = %q\n", filepath.Join(env.dir, "data"))
			b.WriteString("[listen]\nfederation = [\"127.0.0.1:0\"]\negress = \"127.0.0.1:0\"\n")
			if o.admin {
				b.WriteString("admin = \"127.0.0.1:0\"\n[admin]\nready_window = \"1s\"\n")
			}
			b.WriteString("[log]\naccess = true\n")
			fmt.Fprintf(&b, "[outbound]\nca_file = %q\nresolvers = [%q]\nallow_networks = [\"127.0.0.0/8\"]\ndns_timeout = \"2s\"\ndial_timeout = \"2s\"\n",
				env.ca.WriteCertFile(t, env.dir), env.dns.Addr)
			if len(env.origins) > 0 {
				b.WriteString("[outbound.overrides]\n")
				for _, og := range env.origins {
					fmt.Fprintf(&b, "%q = %q\n", og.name, og.addr())
				}
			}
		}
		if i == 0 {
			// Top-level keys come before any table.
			text := b.String()
			b.Reset()
			fmt.Fprintf(&b, "server_name = %q\n", name)
			b.WriteString(text)
		} else {
			fmt.Fprintf(&b, "server_name = %q\n", name)
		}
		fmt.Fprintf(&b, "%s\nurl = %q\ntimeout = \"5s\"\n", section("upstream"), ht.hs.URL)
		if o.upstream != nil {
			b.WriteString(o.upstream(i) + "\n")
		}
		fmt.Fprintf(&b, "%s\nsigning_key = %q\n", section("keys"), ht.keyRaw)
		fmt.Fprintf(&b, "%s\nsecret = %q\n", section("egress"), ht.secret)
		if i == 0 {
			b.WriteString("timeout = \"10s\"\n")
		}
		if o.perServer != nil {
			b.WriteString(o.perServer(i, section) + "\n")
		}
	}
	if err := os.WriteFile(env.path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(env.path)
	if err != nil && !env.loadMayFail {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	return cfg
}

// reload rewrites the configuration for o and reloads the gateway. A
// configuration that does not load is an error, as for "fedgate run".
func (env *multiEnv) reload(o multiOptions) error {
	env.t.Helper()
	env.loadMayFail = true
	defer func() { env.loadMayFail = false }()
	c := env.writeConfig(o)
	if c == nil {
		env.gw.ReloadFailed()
		return fmt.Errorf("configuration refused")
	}
	return env.gw.Reload(c)
}

// client returns an HTTP/2-capable client that sends sni as TLS server
// name and trusts the test CA.
func (env *multiEnv) client(sni string) *http.Client {
	env.mu.Lock()
	defer env.mu.Unlock()
	if c := env.clients[sni]; c != nil {
		return c
	}
	c := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: env.ca.Pool(), ServerName: sni},
			ForceAttemptHTTP2: true,
		},
		Timeout: 15 * time.Second,
	}
	env.t.Cleanup(c.CloseIdleConnections)
	env.clients[sni] = c
	return c
}

// do sends a request over a connection made for sni, with the Host header
// host and the raw request-target, body and header lines.
func (env *multiEnv) do(sni, host, method, target, body string, headers ...string) *http.Response {
	env.t.Helper()
	resp, err := env.roundTrip(sni, host, method, target, body, headers...)
	if err != nil {
		env.t.Fatalf("%s %s (Host %s): %v", method, target, host, err)
	}
	env.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// roundTrip sends the request do sends and returns what came back; it
// does not touch the test, so any goroutine may call it (the caller
// closes the body).
func (env *multiEnv) roundTrip(sni, host, method, target, body string, headers ...string) (*http.Response, error) {
	req, err := http.NewRequest(method, "https://"+env.addr+"/", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	path, query, hasQuery := strings.Cut(target, "?")
	req.URL.Opaque, req.URL.RawQuery, req.URL.ForceQuery = path, query, hasQuery && query == ""
	req.Host = host
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	return env.client(sni).Do(req)
}

// signed sends a request from origin o to hosted server dest, over a
// connection made for dest with dest as Host.
func (env *multiEnv) signed(o *testOrigin, dest, method, target, body string) *http.Response {
	env.t.Helper()
	return env.do(dest, dest, method, target, body, o.sign(method, target, dest, body), "Content-Type: application/json")
}

// worker sends a worker-proxy request (Synapse's outbound federation) to
// the egress listener with the given Bearer secret and header lines.
func (env *multiEnv) worker(secret, method, server, target, body string, headers ...string) *http.Response {
	env.t.Helper()
	conn, err := net.Dial("tcp", env.egress)
	if err != nil {
		env.t.Fatal(err)
	}
	env.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n", method, workerProxyScheme, server, target, server)
	if secret != "" {
		b.WriteString(bearer(secret) + "\r\n")
	}
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
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		env.t.Fatalf("reading response: %v", err)
	}
	env.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// signAs returns the Authorization header hosted server from would sign a
// request to dest with.
func (env *multiEnv) signAs(from, method, target, dest, body string) string {
	env.t.Helper()
	return signWith(env.t, env.servers[from].key, from, method, target, dest, body)
}

// accessLines returns the access log lines of the given direction.
func (env *multiEnv) accessLines(direction string) []map[string]any {
	var out []map[string]any
	for _, e := range env.logs.FilterLoggerName("access").All() {
		if m := e.ContextMap(); m["direction"] == direction {
			out = append(out, m)
		}
	}
	return out
}

// multiRemote is a remote federation server (remote.test) on loopback TLS
// that records what it receives and answers {}.
type multiRemote struct {
	srv  *httptest.Server
	port uint16

	mu       sync.Mutex
	requests []fedtest.Request
}

func startMultiRemote(t *testing.T, ca *fedtest.CA) *multiRemote {
	t.Helper()
	rm := &multiRemote{}
	rm.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rm.mu.Lock()
		rm.requests = append(rm.requests, fedtest.Request{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: body})
		rm.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/.well-known/matrix/server" {
			io.WriteString(w, `{"m.server":"remote.test:8448"}`)
			return
		}
		io.WriteString(w, `{}`)
	}))
	rm.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "remote.test")}}
	rm.srv.StartTLS()
	t.Cleanup(rm.srv.Close)
	rm.port = uint16(rm.srv.Listener.Addr().(*net.TCPAddr).Port)
	return rm
}

// federation returns the recorded requests other than well-known fetches.
func (rm *multiRemote) federation() []fedtest.Request {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	var out []fedtest.Request
	for _, r := range rm.requests {
		if r.RequestURI != "/.well-known/matrix/server" {
			out = append(out, r)
		}
	}
	return out
}

// verifyFrom checks the X-Matrix header of a recorded request: signed by
// origin's key for dest over the exact request.
func verifyFrom(t *testing.T, r fedtest.Request, origin string, key auth.SigningKey, dest string) {
	t.Helper()
	xs, err := auth.ParseAuthorization(r.Header.Values("Authorization"))
	if err != nil {
		t.Fatalf("%s %s: Authorization: %v", r.Method, r.RequestURI, err)
	}
	if len(xs) != 1 || xs[0].Origin != origin || xs[0].Destination != dest || xs[0].Key != key.ID {
		t.Fatalf("%s %s: signed as %+v, want origin %s, destination %s, key %s", r.Method, r.RequestURI, xs, origin, dest, key.ID)
	}
	var body []byte
	if len(r.Body) > 0 {
		body = r.Body
	}
	if err := auth.VerifyRequest(xs[0], r.Method, r.RequestURI, dest, body, key.Public()); err != nil {
		t.Fatalf("%s %s: signature: %v", r.Method, r.RequestURI, err)
	}
}
