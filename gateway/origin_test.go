package gateway

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// testOrigin is a remote homeserver as fedgate sees it: a server name, a
// signing key, and a key server on loopback TLS that publishes it.
type testOrigin struct {
	t       *testing.T
	name    string
	key     auth.SigningKey
	srv     *httptest.Server
	fetches atomic.Int64

	mu      sync.Mutex
	handler http.HandlerFunc // overrides the key server when set
	gate    chan struct{}    // when set, key fetches wait for it to close
}

// newOrigin starts an origin's key server with a certificate from ca.
func newOrigin(t *testing.T, ca *fedtest.CA, name string) *testOrigin {
	t.Helper()
	key, err := auth.GenerateSigningKey("o_1")
	if err != nil {
		t.Fatal(err)
	}
	o := &testOrigin{t: t, name: name, key: key}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(o.serve))
	cert := ca.Issue(t, name)
	o.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	o.srv.StartTLS()
	t.Cleanup(o.srv.Close)
	return o
}

func (o *testOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	h, gate := o.handler, o.gate
	o.mu.Unlock()
	if r.URL.Path == "/_matrix/key/v2/server" {
		o.fetches.Add(1)
		if gate != nil {
			<-gate
		}
	}
	if h != nil {
		h(w, r)
		return
	}
	if r.URL.Path != "/_matrix/key/v2/server" {
		http.NotFound(w, r)
		return
	}
	doc, err := auth.BuildKeyDocument(o.name, []auth.SigningKey{o.key}, nil, time.Now().Add(24*time.Hour))
	if err != nil {
		o.t.Error(err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(doc)
}

// handle replaces the key server's behaviour.
func (o *testOrigin) handle(h http.HandlerFunc) {
	o.mu.Lock()
	o.handler = h
	o.mu.Unlock()
}

// sign returns the Authorization header for a request to destination.
func (o *testOrigin) sign(method, target, destination, body string) string {
	o.t.Helper()
	return signWith(o.t, o.key, o.name, method, target, destination, body)
}

func signWith(t *testing.T, key auth.SigningKey, origin, method, target, destination, body string) string {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	x, err := auth.SignRequest(key, method, target, origin, destination, b)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return "Authorization: " + x.String()
}

// addr is the key server's "host:port".
func (o *testOrigin) addr() string { return o.srv.Listener.Addr().String() }

// outboundTOML points fedgate at the origins' key servers through
// [outbound.overrides] and trusts the test CA.
func outboundTOML(t *testing.T, ca *fedtest.CA, origins ...*testOrigin) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[outbound]\nca_file = %q\n[outbound.overrides]\n", ca.WriteCertFile(t, t.TempDir()))
	for _, o := range origins {
		fmt.Fprintf(&b, "%q = %q\n", o.name, o.addr())
	}
	return b.String()
}

// startGatewayWithOrigins starts a gateway that can reach the given origins
// (created with its CA by the callback) and returns both.
func startGatewayWithOrigins(t *testing.T, extra string, names ...string) (*testGateway, []*testOrigin) {
	t.Helper()
	ca := fedtest.NewCA(t)
	origins := make([]*testOrigin, len(names))
	for i, n := range names {
		origins[i] = newOrigin(t, ca, n)
	}
	tg := startGateway(t, outboundTOML(t, ca, origins...)+extra)
	return tg, origins
}
