package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// The hostile-input suite: requests the open federation may send on
// purpose or by accident, written byte for byte over real TLS connections.
// Every case states the answer it must get and whether anything may reach
// the homeserver; after each group the gateway must still serve a good
// request. The groups live in hostile_*_test.go by concern.

// hostileTOML is the gateway configuration the hostile groups share: short
// timeouts so slow peers are cut off within a test's time, small body and
// header limits, endpoint and room rules to try to get around, and rate
// limits high enough that the suite never trips them.
const hostileTOML = `
[server]
read_header_timeout = "1s"
read_timeout = "2s"
max_header_bytes = "16KiB"
[inbound]
max_body = "64KiB"
max_body_send = "256KiB"
[policy]
deny_endpoints = ["user_devices", "version"]
deny_rooms = ["*:evil.test"]
[rate_limit]
per_ip = { rate = "100000/s", burst = 100000 }
per_origin = { rate = "100000/s", burst = 100000 }
[keys]
fetch_timeout = "2s"
`

// hostileEnv is a gateway with one well-behaved origin ("origin.test")
// plus whatever origins a group adds.
type hostileEnv struct {
	*testGateway
	good *testOrigin
	// dns is the only resolver the gateway asks, so no lookup a case
	// provokes ever leaves the machine; groups add records to it.
	dns *fedtest.DNS
	// originCA issued the origins' certificates; the gateway trusts it.
	originCA *fedtest.CA
}

// startHostile starts the shared hostile configuration. extraOrigins are
// created with the origins' CA and reachable through [outbound.overrides],
// as are the names in overrides (name -> "host:port"); outbound is extra
// TOML for the [outbound] table.
func startHostile(t *testing.T, outbound string, overrides map[string]string, extraOrigins ...func(ca *fedtest.CA) *testOrigin) (*hostileEnv, []*testOrigin) {
	t.Helper()
	ca := fedtest.NewCA(t)
	good := newOrigin(t, ca, "origin.test")
	origins := []*testOrigin{good}
	for _, mk := range extraOrigins {
		origins = append(origins, mk(ca))
	}
	dns := fedtest.StartDNS(t)
	var b strings.Builder
	fmt.Fprintf(&b, "[outbound]\nca_file = %q\nresolvers = [%q]\ndns_timeout = \"1s\"\ndial_timeout = \"1s\"\ntls_timeout = \"1s\"\nresponse_header_timeout = \"1s\"\n%s\n[outbound.overrides]\n",
		ca.WriteCertFile(t, t.TempDir()), dns.Addr, outbound)
	for _, o := range origins {
		fmt.Fprintf(&b, "%q = %q\n", o.name, o.addr())
	}
	for name, addr := range overrides {
		fmt.Fprintf(&b, "%q = %q\n", name, addr)
	}
	tg := startGateway(t, b.String()+hostileTOML)
	return &hostileEnv{testGateway: tg, good: origins[0], dns: dns, originCA: ca}, origins[1:]
}

// hostileCase is one hostile request and the answer it must get.
type hostileCase struct {
	name string
	// request is the raw HTTP/1.1 request written after the TLS handshake.
	request string
	// converse, when set, replaces writing request: it drives the
	// connection itself (slow writers, half-closed bodies).
	converse func(t *testing.T, conn *tls.Conn)
	// status is the status the gateway must answer with; 0 means it must
	// close the connection without answering.
	status int
	// errcode is the Matrix errcode the answer must carry; "" for the
	// plain-text answers net/http itself gives to broken HTTP.
	errcode string
	// forwarded means the request is acceptable and must reach the
	// homeserver exactly once, with target as its request-target.
	forwarded bool
	target    string
	// check, when set, inspects what the homeserver received.
	check func(t *testing.T, got fedtest.Request)
	// closes means the gateway must close the connection after its
	// answer, reading nothing more from it.
	closes bool
}

// rawRequest builds an HTTP/1.1 request. A Content-Length is added for a
// non-empty body unless a header sets the framing itself; every request
// asks for the connection to close, so one case never bleeds into the next.
func rawRequest(method, target, body string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n", method, target)
	framed := false
	for _, h := range headers {
		lower := strings.ToLower(h)
		if strings.HasPrefix(lower, "content-length:") || strings.HasPrefix(lower, "transfer-encoding:") {
			framed = true
		}
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	if body != "" && !framed {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// signed is rawRequest with the good origin's X-Matrix header for it.
func (e *hostileEnv) signed(method, target, body string, headers ...string) string {
	return rawRequest(method, target, body, append([]string{e.good.sign(method, target, "gw.test", body)}, headers...)...)
}

// sig returns the good origin's signature for a request, unpadded base64,
// for cases that assemble their own header around it.
func (e *hostileEnv) sig(method, target, destination, body string) string {
	e.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	x, err := auth.SignRequest(e.good.key, method, target, "origin.test", destination, b)
	if err != nil {
		e.t.Fatal(err)
	}
	return auth.EncodeBase64(x.Sig)
}

// dial opens an HTTP/1.1 TLS connection to the gateway.
func (e *hostileEnv) dial(t *testing.T) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "gw.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A bound on the whole exchange; the gateway's own timeouts are far
	// shorter, so hitting this one is a failure.
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return conn
}

// run plays the cases one after the other against e.
func (e *hostileEnv) run(t *testing.T, cases []hostileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.hs.Reset()
			conn := e.dial(t)
			// The request is written while the answer is read: the gateway
			// may answer (413, 431) and close before a large request is
			// fully written, and a writer that waited would see a reset
			// instead of the answer.
			written := make(chan error, 1)
			if tc.converse != nil {
				tc.converse(t, conn)
				written <- nil
			} else {
				go func() {
					_, err := io.WriteString(conn, tc.request)
					written <- err
				}()
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				if werr := <-written; werr != nil && tc.status != 0 {
					t.Fatalf("writing the request: %v (reading: %v)", werr, err)
				}
			}
			if tc.status == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got %s, want the connection closed without an answer", resp.Status)
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the gateway kept the connection open: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("reading the response: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				checkHostileAnswer(t, tc, resp, body)
				if tc.closes {
					if more, err := http.ReadResponse(br, nil); err == nil {
						t.Fatalf("a second answer (%s) on a connection that should have closed", more.Status)
					} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("waiting for the connection to close: %v", err)
					}
				}
			}
			e.checkForwarded(t, tc)
		})
	}
	e.checkHealthy(t)
}

func checkHostileAnswer(t *testing.T, tc hostileCase, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != tc.status {
		t.Fatalf("status %d, want %d; body %.300s", resp.StatusCode, tc.status, body)
	}
	if tc.errcode == "" {
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %.300s", ct, body)
	}
	var m struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("answer is not JSON: %.300s", body)
	}
	if m.Errcode != tc.errcode || m.Error == "" {
		t.Fatalf("answer %s, want errcode %s with a message", body, tc.errcode)
	}
}

func (e *hostileEnv) checkForwarded(t *testing.T, tc hostileCase) {
	t.Helper()
	got := e.hs.Requests()
	if !tc.forwarded {
		if len(got) != 0 {
			t.Fatalf("the homeserver saw %d request(s): %s %s", len(got), got[0].Method, got[0].RequestURI)
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("the homeserver saw %d requests, want 1", len(got))
	}
	if tc.target != "" && got[0].RequestURI != tc.target {
		t.Fatalf("request-target changed on the way:\n sent %s\n  got %s", tc.target, got[0].RequestURI)
	}
	if tc.check != nil {
		tc.check(t, got[0])
	}
}

// checkHealthy asserts the gateway still authenticates and forwards a
// good request, and serves its key document, after a hostile group.
func (e *hostileEnv) checkHealthy(t *testing.T) {
	t.Helper()
	e.hs.Reset()
	target := "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	resp := e.do("GET", target, "", e.good.sign("GET", target, "gw.test", ""))
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("after the hostile group a good request got %d %s", resp.StatusCode, b)
	}
	body := `{"origin":"origin.test","origin_server_ts":1,"pdus":[],"edus":[]}`
	send := fmt.Sprintf("/_matrix/federation/v1/send/healthy%d", time.Now().UnixNano())
	resp = e.do("PUT", send, body, e.good.sign("PUT", send, "gw.test", body))
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("after the hostile group a good transaction got %d %s", resp.StatusCode, b)
	}
	resp = e.do("GET", "/_matrix/key/v2/server", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("key document: %d", resp.StatusCode)
	}
	if n := len(e.hs.Requests()); n != 2 {
		t.Fatalf("homeserver saw %d requests, want 2", n)
	}
}
