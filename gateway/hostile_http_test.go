package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestHostileHTTP attacks the framing and the size and time limits of
// HTTP/1.1 itself: smuggling attempts, oversize and truncated bodies, slow
// writers. Nothing reaches the homeserver and no connection outlives the
// configured timeouts (server.read_header_timeout 1s, read_timeout 2s).
func TestHostileHTTP(t *testing.T) {
	t.Parallel()
	e, _ := startHostile(t, "", nil)
	const send = "/_matrix/federation/v1/send/txn1"
	const txn = `{"origin":"origin.test","origin_server_ts":1,"pdus":[],"edus":[]}`
	auth := e.good.sign("PUT", send, "gw.test", txn)
	const profile = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	profileAuth := e.good.sign("GET", profile, "gw.test", "")
	// smuggled is a second request hidden in the first one's body: a
	// signed request to an endpoint policy denies.
	devices := "/_matrix/federation/v1/user/devices/%40bob%3Agw.test"
	smuggled := rawRequest("GET", devices, "", e.good.sign("GET", devices, "gw.test", ""))
	chunked := func(parts ...string) string {
		var b strings.Builder
		for _, p := range parts {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
		}
		b.WriteString("0\r\n\r\n")
		return b.String()
	}
	// manual writes a request exactly as given, without the Connection
	// header rawRequest adds, so a smuggled second request would be read.
	manual := func(lines ...string) string { return strings.Join(lines, "\r\n") }
	big := `{"a":"` + strings.Repeat("x", 300<<10) + `"}`
	cases := []hostileCase{
		{name: "control: signed transaction", request: rawRequest("PUT", send, txn, auth), status: 200, forwarded: true, target: send},
		// Smuggling.
		// Transfer-Encoding wins over Content-Length (RFC 9112 section
		// 6.1): the chunks hold exactly the signed body, so it is
		// forwarded with that body, and the connection closes so the
		// bytes after the last chunk are never read as a request.
		{name: "Content-Length and Transfer-Encoding", status: 200, forwarded: true, target: send, closes: true, check: bodyIs(txn), request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", auth, fmt.Sprintf("Content-Length: %d", len(txn)),
			"Transfer-Encoding: chunked", "", chunked(txn)+smuggled)},
		{name: "two different Content-Lengths", status: 400, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", auth, fmt.Sprintf("Content-Length: %d", len(txn)),
			fmt.Sprintf("Content-Length: %d", len(txn)+len(smuggled)), "", txn+smuggled)},
		{name: "Content-Length with a sign", status: 400, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", auth, fmt.Sprintf("Content-Length: +%d", len(txn)), "", txn)},
		{name: "Content-Length that is not a number", status: 400, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", auth, "Content-Length: 1e3", "", txn)},
		{name: "Transfer-Encoding other than chunked", status: 501, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", auth, "Transfer-Encoding: gzip, chunked", "", chunked(txn))},
		{name: "Transfer-Encoding chunked twice", status: 501, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", auth, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked", "", chunked(txn))},
		// net/http replaces obs-fold with a space (RFC 9112 section 5.2
		// allows that instead of 400), and the homeserver gets the
		// header on one line.
		{name: "obs-fold in the Authorization header", status: 200, forwarded: true, target: send, check: func(t *testing.T, got fedtest.Request) {
			if a := got.Header.Get("Authorization"); strings.ContainsAny(a, "\r\n") || !strings.Contains(a, "ed25519:o_1") {
				t.Fatalf("Authorization forwarded as %q", a)
			}
		}, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", strings.Replace(auth, `,key=`, "\r\n ,key=", 1),
			fmt.Sprintf("Content-Length: %d", len(txn)), "", txn)},
		{name: "obs-fold hiding Transfer-Encoding", status: 200, forwarded: true, target: send, check: func(t *testing.T, got fedtest.Request) {
			if string(got.Body) != txn || len(got.Header.Values("Transfer-Encoding")) > 0 {
				t.Fatalf("homeserver got body %q, Transfer-Encoding %q", got.Body, got.Header.Values("Transfer-Encoding"))
			}
		}, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", auth, "X-Folded: a", " Transfer-Encoding: chunked",
			fmt.Sprintf("Content-Length: %d", len(txn)), "", txn)},
		{name: "space before the colon", status: 400, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", "Transfer-Encoding : chunked", auth,
			fmt.Sprintf("Content-Length: %d", len(txn)), "", txn)},
		{name: "invalid chunk size", status: 400, errcode: CodeNotJSON, request: manual(
			"PUT "+send+" HTTP/1.1", "Host: gw.test", "Connection: close", auth, "Transfer-Encoding: chunked", "", "zz\r\n"+txn+"\r\n0\r\n\r\n")},
		{name: "NUL in the request line", status: 400, request: "GET /_matrix/federation/v1/query/profile\x00 HTTP/1.1\r\nHost: gw.test\r\n\r\n"},
		{name: "unsupported HTTP version", status: 505, request: "GET " + profile + " HTTP/3.0\r\nHost: gw.test\r\n\r\n"},
		{name: "absolute-form request-target", status: 404, errcode: CodeUnrecognized,
			request: rawRequest("GET", "https://gw.test"+profile, "", profileAuth)},
		{name: "authority-form CONNECT", status: 404, errcode: CodeUnrecognized, request: rawRequest("CONNECT", "gw.test:8448", "")},
		{name: "lower-case method", status: 405, errcode: CodeUnrecognized, request: rawRequest("get", profile, "", profileAuth)},
		// Sizes.
		{name: "request-target beyond max_header_bytes", status: 431,
			request: rawRequest("GET", profile+"&x="+strings.Repeat("a", 24<<10), "")},
		{name: "one header beyond max_header_bytes", status: 431,
			request: rawRequest("GET", profile, "", profileAuth, "X-Big: "+strings.Repeat("b", 24<<10))},
		{name: "many small headers beyond max_header_bytes", status: 431,
			request: rawRequest("GET", profile, "", append([]string{profileAuth}, manyHeaders(2000)...)...)},
		{name: "declared body over max_body_send", status: 413, errcode: CodeTooLarge,
			request: manual("PUT "+send+" HTTP/1.1", "Host: gw.test", auth, "Content-Length: 1048576", "", "{")},
		{name: "declared body over max_body_send with Expect: 100-continue", status: 413, errcode: CodeTooLarge,
			request: manual("PUT "+send+" HTTP/1.1", "Host: gw.test", auth, "Expect: 100-continue", "Content-Length: 1048576", "", "")},
		{name: "chunked body over max_body_send", status: 413, errcode: CodeTooLarge,
			request: manual("PUT "+send+" HTTP/1.1", "Host: gw.test", auth, "Transfer-Encoding: chunked", "", chunked(big))},
		{name: "body over max_body on another endpoint", status: 413, errcode: CodeTooLarge,
			request: e.signed("POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":{},"x":"`+strings.Repeat("k", 70<<10)+`"}`)},
		{name: "body on a GET", status: 400, errcode: CodeBadJSON, request: rawRequest("GET", profile, "{}", profileAuth)},
		{name: "chunked body on a GET", status: 400, errcode: CodeBadJSON,
			request: rawRequest("GET", profile, chunked("{}"), profileAuth, "Transfer-Encoding: chunked")},
		{name: "body shorter than its Content-Length", status: 400, errcode: CodeNotJSON, converse: func(t *testing.T, conn *tls.Conn) {
			io.WriteString(conn, manual("PUT "+send+" HTTP/1.1", "Host: gw.test", auth, fmt.Sprintf("Content-Length: %d", len(txn)+100), "", txn))
			if err := conn.CloseWrite(); err != nil {
				t.Fatal(err)
			}
		}},
		// Slow writers.
		{name: "slowloris: headers never finished", status: 0, converse: func(t *testing.T, conn *tls.Conn) {
			io.WriteString(conn, "GET "+profile+" HTTP/1.1\r\nHost: gw.test\r\n")
		}},
		{name: "slowloris: headers dripped a byte at a time", status: 400, closes: true, converse: func(t *testing.T, conn *tls.Conn) {
			drip(conn, "GET "+profile+" HTTP/1.1\r\nHost: gw.test\r\n"+strings.Repeat("X-Drip: slow\r\n", 100), 50*time.Millisecond, 5*time.Second)
		}},
		{name: "slowloris: body never finished", status: 408, errcode: CodeUnknown, closes: true, converse: func(t *testing.T, conn *tls.Conn) {
			io.WriteString(conn, manual("PUT "+send+" HTTP/1.1", "Host: gw.test", auth, fmt.Sprintf("Content-Length: %d", len(txn)), "", txn[:10]))
		}},
		{name: "slowloris: body dripped a byte at a time", status: 408, errcode: CodeUnknown, closes: true, converse: func(t *testing.T, conn *tls.Conn) {
			io.WriteString(conn, manual("PUT "+send+" HTTP/1.1", "Host: gw.test", auth, fmt.Sprintf("Content-Length: %d", len(txn)), "", ""))
			drip(conn, txn, 100*time.Millisecond, 5*time.Second)
		}},
		{name: "idle after the TLS handshake", status: 0, converse: func(t *testing.T, conn *tls.Conn) {}},
	}
	e.run(t, cases)
}

// bodyIs checks the homeserver received exactly body, framed by
// Content-Length.
func bodyIs(body string) func(t *testing.T, got fedtest.Request) {
	return func(t *testing.T, got fedtest.Request) {
		t.Helper()
		if string(got.Body) != body || len(got.Header.Values("Transfer-Encoding")) > 0 {
			t.Fatalf("homeserver got body %q, Transfer-Encoding %q", got.Body, got.Header.Values("Transfer-Encoding"))
		}
	}
}

// drip writes s a byte at a time, one every interval, until it is all
// written, the gateway closes the connection, or limit has passed.
func drip(conn *tls.Conn, s string, interval, limit time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.After(limit)
	for i := 0; i < len(s); i++ {
		if _, err := io.WriteString(conn, s[i:i+1]); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			return
		}
	}
}

func manyHeaders(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("X-H%d: v", i)
	}
	return out
}
