package discovery_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/discovery"
)

func urlClient(t *testing.T, o discovery.Options) *discovery.URLClient {
	t.Helper()
	r, err := discovery.NewResolver(o)
	if err != nil {
		t.Fatal(err)
	}
	return discovery.NewURLClient(r)
}

// TestURLClient: an https URL by DNS name and by IP literal, with the
// resolver's DNS, roots and SSRF guard; headers pass both ways; redirects
// to http and oversized bodies are refused.
func TestURLClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone("lists.test. 300 IN A 127.0.0.1", "host.test. 300 IN A 127.0.0.1")
	e.srv.Handle(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/list.jws":
			if r.Header.Get("If-None-Match") == `"v1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", `"v1"`)
			io.WriteString(w, "signed-list")
		case "/to-http":
			http.Redirect(w, r, "http://host.test/list.jws", http.StatusFound)
		case "/to-https":
			http.Redirect(w, r, "/list.jws", http.StatusFound)
		case "/big":
			io.WriteString(w, strings.Repeat("x", 2000))
		}
	})
	o := e.options()
	o.PortMap = nil
	c := urlClient(t, o)
	port := e.expand("{port}")
	// The certificate does not cover lists.test: verification must fail.
	if _, _, _, err := c.Get(ctxT(t), "https://lists.test:"+port+"/list.jws", nil, 1000); err == nil || phaseOf(err) != discovery.PhaseTLS {
		t.Fatalf("certificate for another name accepted: %v", err)
	}
	for _, u := range []string{"https://host.test:" + port + "/list.jws", "https://127.0.0.1:" + port + "/list.jws", "https://host.test:" + port + "/to-https"} {
		status, h, body, err := c.Get(ctxT(t), u, nil, 1000)
		if err != nil || status != 200 || string(body) != "signed-list" || h.Get("ETag") != `"v1"` {
			t.Fatalf("%s: %d %v %q %v", u, status, h, body, err)
		}
	}
	status, _, _, err := c.Get(ctxT(t), "https://host.test:"+port+"/list.jws", http.Header{"If-None-Match": {`"v1"`}}, 1000)
	if err != nil || status != http.StatusNotModified {
		t.Fatalf("conditional GET: %d %v", status, err)
	}
	if _, _, _, err := c.Get(ctxT(t), "https://host.test:"+port+"/to-http", nil, 1000); err == nil || !strings.Contains(err.Error(), "https only") {
		t.Fatalf("redirect to http: %v", err)
	}
	if _, _, _, err := c.Get(ctxT(t), "https://host.test:"+port+"/big", nil, 1000); err == nil {
		t.Fatal("body over the limit accepted")
	}
	if _, _, _, err := c.Get(ctxT(t), "http://host.test:"+port+"/list.jws", nil, 1000); err == nil {
		t.Fatal("http URL fetched")
	}
}

// TestURLClientGuard: without allow_networks, loopback is refused before
// any connection, by name and by IP literal.
func TestURLClientGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone("host.test. 300 IN A 127.0.0.1")
	o := e.options()
	o.AllowNetworks, o.PortMap = nil, nil
	c := urlClient(t, o)
	for _, u := range []string{e.expand("https://host.test:{port}/x"), e.expand("https://127.0.0.1:{port}/x")} {
		_, _, _, err := c.Get(ctxT(t), u, nil, 1000)
		if !errors.Is(err, discovery.ErrBlocked) {
			t.Errorf("%s: %v, want ErrBlocked", u, err)
		}
	}
	if n := e.srv.Conns(); n != 0 {
		t.Errorf("%d connections reached the server", n)
	}
}
