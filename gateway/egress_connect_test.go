package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestInterceptDelivers drives mode 2 as Dendrite does: Go's own
// http.Transport with a CONNECT proxy and the egress CA as its only root,
// CONNECT to the host:port it resolved itself (here a delegated host), h2
// offered. fedgate routes by the X-Matrix destination, re-signs and
// delivers through its own discovery.
func TestInterceptDelivers(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	if env.egressCA == nil {
		t.Fatal("no egress CA was created")
	}
	client := env.proxyClient(env.egressCA, nil)
	for _, tt := range egressTargets {
		env.remote.reset()
		resp, err := env.through(client, tt.method, "matrix.remote.test:8448", tt.target, tt.body,
			env.sign(tt.method, tt.target, "remote.test", tt.body), "Content-Type: application/json", "User-Agent: Dendrite/0.15")
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != `{}` {
			t.Fatalf("%s %s: %d %s", tt.method, tt.target, resp.StatusCode, body)
		}
		if resp.ProtoMajor != 2 {
			t.Errorf("inside the tunnel: %s, want HTTP/2", resp.Proto)
		}
		got := env.remote.federationRequests()
		if len(got) != 1 {
			t.Fatalf("%s: remote saw %d requests", tt.target, len(got))
		}
		r := got[0]
		if r.Method != tt.method || r.RequestURI != tt.target || string(r.Body) != tt.body {
			t.Errorf("changed on the way:\n sent %s %s %q\n  got %s %s %q", tt.method, tt.target, tt.body, r.Method, r.RequestURI, r.Body)
		}
		if r.XMatrix == nil || r.VerifyErr != nil || r.XMatrix.Destination != "remote.test" {
			t.Fatalf("%s: signature %+v: %v", tt.target, r.XMatrix, r.VerifyErr)
		}
		if r.Header.Get("User-Agent") != "Dendrite/0.15" {
			t.Errorf("User-Agent %q", r.Header.Get("User-Agent"))
		}
	}
	line := env.waitAccess(func(m map[string]any) bool { return m["mode"] == modeIntercept && m["endpoint"] == "send" })
	if line["connect"] != "matrix.remote.test:8448" || line["destination"] != "remote.test" || line["decision"] != "forwarded" {
		t.Errorf("access line %v", line)
	}
}

// TestInterceptHTTP1: a homeserver that offers only HTTP/1.1 inside the
// tunnel is served too, and an unsigned request without X-Matrix is routed
// by its Host header.
func TestInterceptHTTP1(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	proxy := &url.URL{Scheme: "http", Host: env.egressAddr}
	tr := &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: env.egressCA, NextProtos: []string{"http/1.1"}}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := env.through(client, "GET", "other.test:8448", "/_matrix/federation/v1/version", "")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("%d %s", resp.StatusCode, resp.Proto)
	}
	got := env.remote.federationRequests()
	if len(got) != 1 || got[0].SNI != "other.test" || got[0].Header.Get("Authorization") != "" {
		t.Fatalf("remote saw %+v", got)
	}
}

// TestInterceptWellKnown: the homeserver's own discovery goes through the
// tunnel too. fedgate fetches https://<host>/.well-known/matrix/server
// itself (SSRF guard, certificate check) and relays the document; denied
// hosts get 403.
func TestInterceptWellKnown(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true, extra: "[policy]\ndeny = [\"evil.test\"]\n"})
	env.remote.mu.Lock()
	env.remote.wellKnown = `{"m.server": "matrix.remote.test:443"}`
	env.remote.mu.Unlock()
	client := env.proxyClient(env.egressCA, nil)
	resp, err := env.through(client, "GET", "remote.test", "/.well-known/matrix/server", "")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != `{"m.server": "matrix.remote.test:443"}` {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := env.remote.Requests()
	if len(got) != 1 || got[0].RequestURI != "/.well-known/matrix/server" || got[0].SNI != "remote.test" || got[0].Header.Get("Authorization") != "" {
		t.Fatalf("remote saw %+v", got)
	}
	resp, err = env.through(client, "GET", "evil.test", "/.well-known/matrix/server", "")
	if err != nil {
		t.Fatal(err)
	}
	egressError(t, resp, http.StatusForbidden, CodeForbidden, "error")
	if n := len(env.remote.Requests()); n != 1 {
		t.Fatalf("remote saw %d requests", n)
	}
	line := env.waitAccess(func(m map[string]any) bool { return m["endpoint"] == "well_known" && m["status"] == int64(200) })
	if line["destination"] != "remote.test" {
		t.Errorf("access line %v", line)
	}
}

// TestInterceptNotFederation: what is not federation is refused inside
// the tunnel (a push gateway request sent through HTTPS_PROXY).
func TestInterceptNotFederation(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	client := env.proxyClient(env.egressCA, nil)
	for _, target := range []string{"/_matrix/push/v1/notify", "/index.html"} {
		resp, err := env.through(client, "POST", "push.test", target, `{"notification":{}}`, "Content-Type: application/json")
		if err != nil {
			t.Fatal(err)
		}
		m := egressError(t, resp, http.StatusForbidden, CodeForbidden, "error")
		if !strings.Contains(m["error"].(string), "not_federation") {
			t.Errorf("%s: %v", target, m["error"])
		}
	}
	// A signed request to an endpoint the table does not know is carried.
	const unstable = "/_matrix/federation/unstable/org.example.msc0000/thing"
	resp, err := env.through(client, "GET", "remote.test:8448", unstable, "", env.sign("GET", unstable, "remote.test", ""))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("signed unknown endpoint: %d", resp.StatusCode)
	}
	if got := env.remote.federationRequests(); len(got) != 1 || got[0].RequestURI != unstable {
		t.Fatalf("remote saw %+v", got)
	}
}

// TestConnectProxyAuth: CONNECT credentials are Basic with the egress
// secret. They are always checked when sent; they are required when
// nothing else authenticates the tunnel's contents.
func TestConnectProxyAuth(t *testing.T) {
	const target = "/_matrix/federation/v1/version"
	t.Run("intercept with require_signature", func(t *testing.T) {
		env := startEgress(t, egressOptions{loopbackAllowed: true})
		for _, tt := range []struct {
			user *url.Userinfo
			ok   bool
		}{
			{nil, true},
			{url.UserPassword("synapse", testSecret), true},
			{url.UserPassword("synapse", "wrong"), false},
		} {
			_, err := env.through(env.proxyClient(env.egressCA, tt.user), "GET", "remote.test:8448", target, "")
			if (err == nil) != tt.ok {
				t.Errorf("credentials %v: err %v", tt.user, err)
			}
			if err != nil && !strings.Contains(err.Error(), "Proxy Authentication Required") {
				t.Errorf("credentials %v: %v", tt.user, err)
			}
		}
	})
	t.Run("intercept without require_signature", func(t *testing.T) {
		env := startEgress(t, egressOptions{loopbackAllowed: true, egress: "require_signature = false"})
		if _, err := env.through(env.proxyClient(env.egressCA, nil), "GET", "remote.test:8448", target, ""); err == nil {
			t.Error("CONNECT without credentials accepted")
		}
		if _, err := env.through(env.proxyClient(env.egressCA, url.UserPassword("", testSecret)), "GET", "remote.test:8448", target, ""); err != nil {
			t.Error(err)
		}
	})
}

// TestPassthrough drives mode 3: the host is checked against destination
// policy and the SSRF guard, then bytes are spliced; the remote sees the
// homeserver's own TLS and signature.
func TestPassthrough(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true, egress: "connect = \"passthrough\"",
		extra: "[policy]\ndeny = [\"evil.test\"]\n"})
	port := env.remote.port
	client := env.proxyClient(env.ca.Pool(), url.UserPassword("dendrite", testSecret))
	const target = "/_matrix/federation/v1/send/txn9"
	body := `{"pdus": []}`
	authz := env.sign("PUT", target, "remote.test", body)
	for i := range 2 {
		resp, err := env.through(client, "PUT", fmt.Sprintf("remote.test:%d", port), target, body, authz)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	got := env.remote.federationRequests()
	if len(got) != 2 || got[0].Header.Get("Authorization") != strings.TrimPrefix(authz, "Authorization: ") || string(got[0].Body) != body {
		t.Fatalf("remote saw %+v", got)
	}
	_, err := env.through(client, "GET", fmt.Sprintf("evil.test:%d", port), target, "")
	if err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("denied host: %v", err)
	}
	if _, err := env.through(env.proxyClient(env.ca.Pool(), nil), "GET", fmt.Sprintf("other.test:%d", port), target, ""); err == nil {
		t.Fatal("passthrough without credentials accepted")
	}
	client.CloseIdleConnections()
	line := env.waitAccess(func(m map[string]any) bool { return m["mode"] == modePassthrough && m["decision"] == "tunnel" })
	if line["destination"] != fmt.Sprintf("remote.test:%d", port) || line["bytes_in"].(int64) == 0 || line["bytes_out"].(int64) == 0 {
		t.Errorf("access line %v", line)
	}
}

// TestPassthroughSSRF: without outbound.allow_networks, a CONNECT to a
// name resolving to loopback is refused before any connection.
func TestPassthroughSSRF(t *testing.T) {
	env := startEgress(t, egressOptions{egress: "connect = \"passthrough\""})
	client := env.proxyClient(env.ca.Pool(), url.UserPassword("", testSecret))
	for _, host := range []string{"internal.test", "127.0.0.1"} {
		_, err := env.through(client, "GET", fmt.Sprintf("%s:%d", host, env.remote.port), "/_matrix/federation/v1/version", "")
		if err == nil || !strings.Contains(err.Error(), "Bad Gateway") {
			t.Fatalf("%s: %v", host, err)
		}
	}
	if n := len(env.remote.Requests()); n != 0 {
		t.Fatalf("remote saw %d requests", n)
	}
}

// TestConnectBadTargets: malformed CONNECT targets get 400.
func TestConnectBadTargets(t *testing.T) {
	env := startEgress(t, egressOptions{})
	for _, target := range []string{"remote.test", "remote.test:0", "remote.test:99999", "remote.test:+80", "[::1%25eth0]:443", "bad_host!:443", ":443"} {
		conn, err := net.Dial("tcp", env.egressAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 400 {
			t.Errorf("CONNECT %s: %d", target, resp.StatusCode)
		}
	}
}

// TestEgressShutdownEndsTunnels: Shutdown closes idle intercepted tunnels
// and passthrough tunnels and returns without waiting for the grace period.
func TestEgressShutdownEndsTunnels(t *testing.T) {
	for _, mode := range []string{"intercept", "passthrough"} {
		t.Run(mode, func(t *testing.T) {
			env := startEgress(t, egressOptions{loopbackAllowed: true, egress: fmt.Sprintf("connect = %q", mode)})
			roots, authority := env.egressCA, "remote.test:8448"
			if mode == "passthrough" {
				roots, authority = env.ca.Pool(), fmt.Sprintf("remote.test:%d", env.remote.port)
			}
			client := env.proxyClient(roots, url.UserPassword("", testSecret))
			resp, err := env.through(client, "GET", authority, "/_matrix/federation/v1/version", "")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// The client keeps the tunnel open for the next request.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			if err := env.gw.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("shutdown took %s", d)
			}
			env.gw.egress.mu.Lock()
			n := len(env.gw.egress.tunnels)
			env.gw.egress.mu.Unlock()
			if n != 0 {
				t.Fatalf("%d tunnels left", n)
			}
		})
	}
}
