package upstream

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// Helpers of the pool tests, on top of helpers_test.go's.

// startWorkers starts n recording homeservers ("workers") on loopback.
func startWorkers(t *testing.T, n int) ([]*fedtest.Homeserver, []string) {
	t.Helper()
	hs := make([]*fedtest.Homeserver, n)
	urls := make([]string, n)
	for i := range hs {
		hs[i] = fedtest.StartHomeserver(t)
		urls[i] = hs[i].URL
	}
	return hs, urls
}

// buildSet builds a Set with short timeouts for tests and closes it at the
// end of the test.
func buildSet(t testing.TB, opts SetOptions, tr *Tracker) *Set {
	t.Helper()
	if opts.Member.HeaderTimeout == 0 {
		opts.Member.HeaderTimeout = 5 * time.Second
	}
	if opts.Member.DialTimeout == 0 {
		opts.Member.DialTimeout = 2 * time.Second
	}
	if opts.Member.MaxIdleConns == 0 {
		opts.Member.MaxIdleConns = 16
	}
	s, err := NewSet(opts, tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// endpoint returns the table row of an operation with method.
func endpoint(t testing.TB, name, method string) *endpoints.Endpoint {
	t.Helper()
	for _, ep := range endpoints.All() {
		if ep.Name == name && ep.Method == method {
			return &ep
		}
	}
	t.Fatalf("no endpoint %s %s", method, name)
	return nil
}

// call forwards one request through s and reads the whole answer; it
// returns the member index that answered, or an error.
func call(t testing.TB, s *Set, ep *endpoints.Endpoint, origin, method, target, body string) (Exchange, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &Request{Method: method, Target: target, Host: "gw.test", Header: http.Header{
		"Authorization": {`X-Matrix origin="` + origin + `",destination="gw.test",key="ed25519:a",sig="x"`},
	}}
	if body != "" {
		req.Body = []byte(body)
	}
	x, err := s.RoundTrip(ctx, ep, origin, req)
	if err != nil {
		return x, nil, err
	}
	defer x.Close()
	b, err := x.Body.ReadAll(1 << 20)
	return x, b, err
}

// deadURL is an http URL on loopback that refuses connections.
func deadURL(t testing.TB) string {
	t.Helper()
	return "http://" + fedtest.FreeAddr(t)
}

// scripted is a raw TCP server that hands each connection to serve; it
// returns its URL.
func scripted(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	return "http://" + rawServer(t, serve)
}
