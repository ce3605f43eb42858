package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestForwardDropsHopByHopAndForwardingFields: fields that belong to the
// remote's connection, and forwarding information the remote made up,
// never reach the homeserver.
func TestForwardDropsHopByHopAndForwardingFields(t *testing.T) {
	t.Parallel()
	tg := startGateway(t, "")
	resp := tg.raw("GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: gw.test\r\n" +
		"Connection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n" +
		"Proxy-Authorization: Basic eDp5\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n" +
		"X-Forwarded-Proto: http\r\nX-Request-Id: made-up\r\nX-Kept: yes\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := tg.hs.Requests()
	if len(got) != 1 {
		t.Fatalf("homeserver saw %d requests", len(got))
	}
	h := got[0].Header
	for _, name := range []string{"X-Private", "Keep-Alive", "Te", "Proxy-Authorization", "Forwarded", "X-Forwarded-Host"} {
		if v, ok := h[name]; ok {
			t.Errorf("%s forwarded: %q", name, v)
		}
	}
	if h.Get("X-Kept") != "yes" || h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Request-Id") == "made-up" || got[0].Host != "gw.test" {
		t.Errorf("forwarded fields %v, Host %q", h, got[0].Host)
	}
	if ua, ok := h["User-Agent"]; ok {
		t.Errorf("a User-Agent was added: %q", ua)
	}
}

// TestForwardConnectionCloseStaysOnItsSide: "Connection: close" from the
// remote closes the remote's connection only, and from the homeserver the
// homeserver's only.
func TestForwardConnectionCloseStaysOnItsSide(t *testing.T) {
	t.Parallel()
	tg := startGateway(t, "")
	tg.hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("close") != "" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "{}")
	})
	conn, err := tls.Dial("tcp", tg.addr, &tls.Config{RootCAs: tg.ca.Pool(), ServerName: "gw.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	ask := func(target, extra string) *http.Response {
		t.Helper()
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: gw.test\r\n%s\r\n", target, extra)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	// The homeserver closes its connection: the remote's stays open.
	if resp := ask("/_matrix/federation/v1/version?close=1", ""); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("status %d, close %v, header %v", resp.StatusCode, resp.Close, resp.Header)
	}
	// The remote closes its connection: the homeserver's is kept.
	if resp := ask("/_matrix/federation/v1/version", "Connection: close\r\n"); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the remote's connection stayed open: %v", err)
	}
	for _, r := range tg.hs.Requests() {
		if len(r.Header.Values("Connection")) > 0 {
			t.Errorf("Connection forwarded: %q", r.Header.Values("Connection"))
		}
	}
	if s := tg.gw.rt.Load().primary().upstream.Default().Members()[0].Stats(); s.Idle != 1 || s.Dials != 2 {
		t.Fatalf("homeserver connections: %+v (one closed by the homeserver, one kept)", s)
	}
}

// TestForwardClientGoneIs499: a remote that hangs up while the homeserver
// thinks is logged as 499 client_closed, and nothing is written for it.
func TestForwardClientGoneIs499(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	hs := fedtest.StartHomeserver(t)
	hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done() // fedgate gives up on the homeserver too
	})
	og := startOps(t, opsSetup{hs: hs})
	conn, err := tls.Dial("tcp", og.addr, &tls.Config{RootCAs: og.ca.Pool(), ServerName: "gw.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: gw.test\r\n\r\n")
	<-started
	conn.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		for _, e := range og.logs.FilterMessage("request").All() {
			m := e.ContextMap()
			if m["status"] == int64(statusClientClosed) && m["reason"] == "client_closed" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 499 client_closed access log line in %v", og.logs.All())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestForwardBodyTimeout: a homeserver that stalls inside a response body
// gets upstream.body_timeout: a transaction's answer becomes 504, a
// streamed response is cut off (the remote never gets a short body that
// looks whole).
func TestForwardBodyTimeout(t *testing.T) {
	t.Parallel()
	hs := fedtest.StartHomeserver(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, `{"pdus":{`)
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ca := fedtest.NewCA(t)
	origin := newOrigin(t, ca, "origin.test")
	outbound := outboundTOML(t, ca, origin)
	tg := launchGateway(t, gatewaySetup{
		hs:       hs,
		upstream: hs.URL,
		config: func(dataDir, upstream, keyFile string) string {
			return fmt.Sprintf("server_name = \"gw.test\"\ndata_dir = %q\n[upstream]\nurl = %q\ntimeout = \"5s\"\nbody_timeout = \"300ms\"\n"+
				"[listen]\nfederation = [\"127.0.0.1:0\"]\n[keys]\nsigning_key = %q\n%s\n", dataDir, upstream, keyFile, outbound)
		},
		logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	const send = "/_matrix/federation/v1/send/t1"
	const txn = `{"origin":"origin.test","origin_server_ts":1,"pdus":[],"edus":[]}`
	matrixError(t, tg.do("PUT", send, txn, origin.sign("PUT", send, "gw.test", txn)), http.StatusGatewayTimeout, CodeUnknown)

	resp := tg.do("GET", "/_matrix/media/v3/download/remote.example/abc", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	start := time.Now()
	body, err := io.ReadAll(resp.Body)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("read %q, %v after %v: want the stream cut off", body, err, time.Since(start))
	}
	if !strings.HasPrefix(`{"pdus":{`, string(body)) {
		t.Fatalf("relayed %q", body)
	}
}

// TestForwardPooledBodiesStayApart: bodies and their canonical forms live
// in pooled buffers; under concurrency every request must still verify
// against its own content and reach the homeserver with its own bytes.
func TestForwardPooledBodiesStayApart(t *testing.T) {
	t.Parallel()
	ca := fedtest.NewCA(t)
	origin := newOrigin(t, ca, "origin.test")
	tg := startGateway(t, outboundTOML(t, ca, origin))
	const n = 40
	sent := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		target := fmt.Sprintf("/_matrix/federation/v1/send/pool%d", i)
		// Not canonical (spaces, key order), so its canonical form is
		// written into a pooled buffer; sizes differ so buffers grow.
		body := fmt.Sprintf(`{ "pdus": [], "origin_server_ts": %d, "origin": "origin.test", "edus": [{"edu_type":"m.typing","content":{"x":%q}}] }`, i, strings.Repeat("y", i*97))
		sent[i] = body
		auth := origin.sign("PUT", target, "gw.test", body)
		wg.Go(func() {
			if resp := tg.do("PUT", target, body, auth); resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("%s: %d %s", target, resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	got := map[string]string{}
	for _, r := range tg.hs.Requests() {
		got[r.RequestURI] = string(r.Body)
	}
	for i, body := range sent {
		if target := fmt.Sprintf("/_matrix/federation/v1/send/pool%d", i); got[target] != body {
			t.Errorf("%s: homeserver got %.80q, sent %.80q", target, got[target], body)
		}
	}
}

// TestForwardHTTPSUpstream: an https homeserver is reached with the
// roots in upstream.ca_file, and one whose certificate those roots do not
// cover is a 502, never a request sent in clear or unchecked.
func TestForwardHTTPSUpstream(t *testing.T) {
	t.Parallel()
	var got atomic.Value
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.RequestURI)
		io.WriteString(w, `{"server":{"name":"hs"}}`)
	}))
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	goodCA := filepath.Join(dir, "good.pem")
	os.WriteFile(goodCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o600)
	otherCA := filepath.Join(dir, "other.pem")
	os.WriteFile(otherCA, fedtest.NewCA(t).CertPEM(), 0o600)
	start := func(caFile string) *testGateway {
		return launchGateway(t, gatewaySetup{
			upstream: hs.URL,
			config: func(dataDir, upstream, keyFile string) string {
				return fmt.Sprintf("server_name = \"gw.test\"\ndata_dir = %q\n[upstream]\nurl = %q\nca_file = %q\n"+
					"[listen]\nfederation = [\"127.0.0.1:0\"]\n[keys]\nsigning_key = %q\n", dataDir, upstream, caFile, keyFile)
			},
			logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel+1)),
		})
	}
	const target = "/_matrix/federation/v1/version?a=%2F"
	tg := start(goodCA)
	resp := tg.do("GET", target, "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != `{"server":{"name":"hs"}}` || got.Load() != target {
		t.Fatalf("status %d body %s, homeserver saw %v", resp.StatusCode, body, got.Load())
	}
	got.Store("")
	matrixError(t, start(otherCA).do("GET", target, ""), http.StatusBadGateway, CodeUnknown)
	if got.Load() != "" {
		t.Fatal("a request reached a homeserver whose certificate is not trusted")
	}
}
