package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestRequestWrittenAsGiven: the homeserver receives the method, the
// request-target and the body byte for byte, the header fields as given
// minus the hop-by-hop and framing ones, the Set fields replacing theirs,
// and nothing net/http would add on its own.
func TestRequestWrittenAsGiven(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	gotBody := make(chan []byte, 1)
	addr := rawServer(t, func(c net.Conn) {
		head, body, err := readRequestHead(bufio.NewReader(c))
		if err != nil {
			return
		}
		got <- head
		gotBody <- body
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
	})
	m := newMember(t, Options{URL: "http://" + addr})
	const target = "/_matrix/federation/v1/send/t1?a=%2F%2f&b=%zz;x&&c"
	body := []byte(`{ "b":1, "a":"\u00e9" }`)
	req := &Request{
		Method: "PUT", Target: target, Host: "example.org:8448",
		Header: http.Header{
			"Authorization":       {`X-Matrix origin="o.test",key="ed25519:1",sig="abc"`},
			"Content-Type":        {"application/json"},
			"Accept":              {"a", "b"},
			"Connection":          {"keep-alive, X-Private"},
			"X-Private":           {"secret"},
			"Keep-Alive":          {"timeout=5"},
			"Te":                  {"trailers"},
			"Upgrade":             {"h2c"},
			"Proxy-Authorization": {"Basic x"},
			"Expect":              {"100-continue"},
			"Content-Length":      {"999"},
			"Transfer-Encoding":   {"chunked"},
			"X-Forwarded-For":     {"6.6.6.6"},
			"Forwarded":           {"for=6.6.6.6"},
			"X-Smuggle":           {"a\r\nInjected: yes"},
		},
		Set:  []Field{{"X-Forwarded-For", "192.0.2.7"}, {"Forwarded", ""}, {"X-Request-Id", "r1"}},
		Body: body,
	}
	resp, err := m.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	head := <-got
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	if lines[0] != "PUT "+target+" HTTP/1.1" {
		t.Fatalf("request line %q", lines[0])
	}
	fields := map[string][]string{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ": ")
		fields[k] = append(fields[k], v)
	}
	want := map[string][]string{
		"Host":            {"example.org:8448"},
		"Authorization":   {`X-Matrix origin="o.test",key="ed25519:1",sig="abc"`},
		"Content-Type":    {"application/json"},
		"Accept":          {"a", "b"},
		"X-Forwarded-For": {"192.0.2.7"},
		"X-Request-Id":    {"r1"},
		"X-Smuggle":       {"a  Injected: yes"},
		"Content-Length":  {fmt.Sprint(len(body))},
	}
	if fmt.Sprint(fields) != fmt.Sprint(want) {
		t.Fatalf("fields sent:\n%v\nwant\n%v", fields, want)
	}
	if b := <-gotBody; string(b) != string(body) {
		t.Fatalf("body %q", b)
	}
}

// TestEmptyBodies: a GET has no Content-Length, a PUT without body says 0.
func TestEmptyBodies(t *testing.T) {
	t.Parallel()
	heads := make(chan string, 2)
	addr := keepAliveServer(t, func(c net.Conn, head string) {
		heads <- head
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	m := newMember(t, Options{URL: "http://" + addr})
	for _, method := range []string{"GET", "PUT"} {
		resp, err := m.RoundTrip(context.Background(), &Request{Method: method, Target: "/x"})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		head := <-heads
		if has := strings.Contains(head, "Content-Length: 0\r\n"); has != (method == "PUT") {
			t.Errorf("%s: %q", method, head)
		}
	}
}

// TestResponseHead: status, end-to-end fields and the body come through;
// hop-by-hop fields do not; chunked bodies are decoded.
func TestResponseHead(t *testing.T) {
	t.Parallel()
	addr := keepAliveServer(t, func(c net.Conn, head string) {
		switch {
		case strings.Contains(head, "/length"):
			io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 13\r\n\r\n{\"a\":\"hello\"}")
		case strings.Contains(head, "/chunked"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
		}
	})
	m := newMember(t, Options{URL: "http://" + addr})
	resp, body, err := get(t, m, "/length")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 404 || string(body) != `{"a":"hello"}` || resp.ContentLength != 13 {
		t.Fatalf("%d %d %q", resp.StatusCode, resp.ContentLength, body)
	}
	if resp.Header.Get("X-Kept") != "yes" || resp.Header.Get("Content-Length") != "13" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("end-to-end fields lost: %v", resp.Header)
	}
	for _, h := range []string{"Connection", "X-Hop", "Keep-Alive"} {
		if _, ok := resp.Header[h]; ok {
			t.Errorf("hop-by-hop %s relayed", h)
		}
	}
	resp, body, err = get(t, m, "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "abcde" || resp.ContentLength != -1 || resp.Header.Get("Trailer") != "" || resp.Header.Get("Transfer-Encoding") != "" {
		t.Fatalf("%q %d %v", body, resp.ContentLength, resp.Header)
	}
	if s := m.Stats(); s.Dials != 1 || s.Reuses != 1 || s.Idle != 1 {
		t.Fatalf("one connection should have carried both: %+v", s)
	}
}

// TestConnectionReuse: a connection is reused only when the response
// allows it.
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		response string
		reuse    bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", true},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", true},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", false},
		{"delimited by close", "HTTP/1.1 200 OK\r\n\r\n{}", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", false},
		{"bytes after the response", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := rawServer(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					if _, _, err := readRequestHead(br); err != nil {
						return
					}
					io.WriteString(c, tt.response)
					if !tt.reuse && !strings.HasSuffix(tt.response, "junk") {
						return // closes
					}
				}
			})
			m := newMember(t, Options{URL: "http://" + addr})
			for range 3 {
				if _, _, err := get(t, m, "/x"); err != nil {
					t.Fatal(err)
				}
			}
			s := m.Stats()
			if tt.reuse && (s.Dials != 1 || s.Reuses != 2) || !tt.reuse && (s.Dials != 3 || s.Reuses != 0) {
				t.Fatalf("%+v", s)
			}
		})
	}
}

// TestIdleConnectionClosedByHomeserver: a pooled connection the
// homeserver closed is noticed before use, and the request goes out on a
// new one without an error.
func TestIdleConnectionClosedByHomeserver(t *testing.T) {
	t.Parallel()
	addr := rawServer(t, func(c net.Conn) {
		if _, _, err := readRequestHead(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
		// and closes, as a homeserver with a short keep-alive does
	})
	m := newMember(t, Options{URL: "http://" + addr})
	for i := range 5 {
		if _, _, err := get(t, m, "/x"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if s := m.Stats(); s.Dials != 5 || s.Retries != 0 {
		t.Fatalf("%+v", s)
	}
}

// TestRetryOnReusedConnection: when a reused connection breaks before
// any response byte, a GET is sent again on a new connection and a POST
// is not (the homeserver may have acted on it).
func TestRetryOnReusedConnection(t *testing.T) {
	t.Parallel()
	var served atomic.Int64
	addr := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			if _, _, err := readRequestHead(br); err != nil {
				return
			}
			if n == 1 {
				return // the second request on a connection: closed unanswered
			}
			served.Add(1)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
		}
	})
	m := newMember(t, Options{URL: "http://" + addr})
	if _, _, err := get(t, m, "/1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, m, "/2"); err != nil {
		t.Fatalf("GET on a connection closed under it: %v", err)
	}
	if s := m.Stats(); s.Retries != 1 || s.Dials != 2 {
		t.Fatalf("%+v", s)
	}
	resp, err := m.RoundTrip(context.Background(), &Request{Method: "POST", Target: "/3", Body: []byte("{}")})
	if kindOf(err) != NoResponse {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("POST: %v, want NoResponse", err)
	}
	var e *Error
	if errors.As(err, &e); !e.Written || e.Timeout() {
		t.Fatalf("%+v", e)
	}
}

// TestErrorKinds: every way an exchange can fail gives the Kind that says
// how far it got.
func TestErrorKinds(t *testing.T) {
	t.Parallel()
	serve := func(respond func(c net.Conn)) string {
		return rawServer(t, func(c net.Conn) {
			if _, _, err := readRequestHead(bufio.NewReader(c)); err != nil {
				return
			}
			respond(c)
		})
	}
	hold := func(c net.Conn) { io.Copy(io.Discard, c) } // until the client closes
	tests := []struct {
		name    string
		addr    string
		kind    Kind // of RoundTrip's error, or 0 when the head arrives
		body    Kind // of reading the body, when the head arrived
		timeout bool
	}{
		{name: "connection refused", addr: fedtest.FreeAddr(t), kind: NotSent},
		{name: "closed without an answer", addr: serve(func(c net.Conn) {}), kind: NoResponse},
		{name: "reset without an answer", addr: serve(func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) }), kind: NoResponse},
		{name: "no answer in time", addr: serve(hold), kind: HeaderTimeout, timeout: true},
		{name: "half a head, then nothing", addr: serve(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\n"); hold(c) }), kind: HeaderTimeout, timeout: true},
		{name: "half a head, then closed", addr: serve(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-") }), kind: BadResponse},
		{name: "garbage", addr: serve(func(c net.Conn) { io.WriteString(c, "this is not HTTP\r\n\r\n") }), kind: BadResponse},
		{name: "status 99", addr: serve(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 099 Odd\r\n\r\n") }), kind: BadResponse},
		{name: "upgrade", addr: serve(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n") }), kind: BadResponse},
		{name: "head too large", addr: serve(func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			for range MaxHeaderBytes / 1000 {
				io.WriteString(c, "X-Big: "+strings.Repeat("b", 1000)+"\r\n")
			}
			io.WriteString(c, "\r\n")
		}), kind: BadResponse},
		{name: "body cut short", addr: serve(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"pdus\":{") }), body: BodyBroken},
		{name: "body stalls", addr: serve(func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"); hold(c) }), body: BodyBroken, timeout: true},
		{name: "broken chunk", addr: serve(func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"pdu\r\nzz\r\n")
		}), body: BodyBroken},
		{name: "interim answers skipped", addr: serve(func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMember(t, Options{URL: "http://" + tt.addr, HeaderTimeout: 300 * time.Millisecond, BodyTimeout: 300 * time.Millisecond})
			_, body, err := get(t, m, "/x")
			want := tt.kind
			if want == 0 {
				want = tt.body
			}
			if want == 0 {
				if err != nil || string(body) != "{}" {
					t.Fatalf("%v %q", err, body)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want an *Error", err, err)
			}
			if e.Kind != want || e.Timeout() != tt.timeout {
				t.Fatalf("%v: kind %v timeout %v, want %v %v", err, e.Kind, e.Timeout(), want, tt.timeout)
			}
			if e.Kind == NotSent && e.Written {
				t.Fatal("NotSent with bytes written")
			}
			if s := m.Stats(); s.Idle != 0 {
				t.Fatalf("a failed connection went back to the pool: %+v", s)
			}
		})
	}
}

// TestCallerGoesAway: when the caller's context ends while the homeserver
// thinks, RoundTrip returns at once with the context's error.
func TestCallerGoesAway(t *testing.T) {
	t.Parallel()
	addr := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	m := newMember(t, Options{URL: "http://" + addr, HeaderTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := m.RoundTrip(ctx, &Request{Method: "GET", Target: "/x"})
	if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	var e *Error
	if errors.As(err, &e); e.Timeout() {
		t.Fatal("a caller going away is not a timeout")
	}
}

// TestStreamToFlushesWhenWaiting: bytes already received are passed on
// (and flushed) before fedgate waits for more, and a response at hand is
// written without a flush.
func TestStreamToFlushesWhenWaiting(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	addr := keepAliveServer(t, func(c net.Conn, head string) {
		if strings.Contains(head, "/whole") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
		<-next
		io.WriteString(c, "6\r\nsecond\r\n0\r\n\r\n")
	})
	m := newMember(t, Options{URL: "http://" + addr})
	resp, err := m.RoundTrip(context.Background(), &Request{Method: "GET", Target: "/stream"})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	flushes := 0
	n, err := resp.Body.StreamTo(&out, func() error {
		flushes++
		if flushes == 1 {
			if out.String() != "first" {
				t.Errorf("flushed %q", out.String())
			}
			close(next) // the homeserver sends the rest only now
		}
		return nil
	})
	resp.Body.Close()
	if err != nil || n != 11 || out.String() != "firstsecond" || flushes == 0 {
		t.Fatalf("%d %v %q flushes %d", n, err, out.String(), flushes)
	}
	resp, err = m.RoundTrip(context.Background(), &Request{Method: "GET", Target: "/whole"})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	flushes = 0
	if _, err := resp.Body.StreamTo(&out, func() error { flushes++; return nil }); err != nil || out.String() != "hello" || flushes != 0 {
		t.Fatalf("%v %q flushes %d", err, out.String(), flushes)
	}
	resp.Body.Close()
}

// TestReadAllLimit: a body longer than the limit is refused, announced or
// not, and the connection still serves the next request.
func TestReadAllLimit(t *testing.T) {
	t.Parallel()
	addr := keepAliveServer(t, func(c net.Conn, head string) {
		if strings.Contains(head, "/announced") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789a")
		} else {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n0123456789a\r\n0\r\n\r\n")
		}
	})
	m := newMember(t, Options{URL: "http://" + addr})
	for _, target := range []string{"/announced", "/chunked"} {
		resp, err := m.RoundTrip(context.Background(), &Request{Method: "GET", Target: target})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := resp.Body.ReadAll(10); !errors.Is(err, ErrBodyTooLarge) {
			t.Fatalf("%s: %v", target, err)
		}
		resp.Body.Close()
	}
	if _, body, err := get(t, m, "/announced"); err != nil || string(body) != "0123456789a" {
		t.Fatalf("%v %q", err, body)
	}
}

// TestCloseRetires: after Close, connections are closed when their
// exchange ends, and requests still work.
func TestCloseRetires(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }))
	t.Cleanup(hs.Close)
	m := newMember(t, Options{URL: hs.URL})
	if _, _, err := get(t, m, "/a"); err != nil {
		t.Fatal(err)
	}
	resp, err := m.RoundTrip(context.Background(), &Request{Method: "GET", Target: "/b"})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if s := m.Stats(); s.Idle != 0 {
		t.Fatalf("idle after Close: %+v", s)
	}
	resp.Body.ReadAll(100)
	resp.Body.Close()
	if _, _, err := get(t, m, "/c"); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.Idle != 0 {
		t.Fatalf("pooled after Close: %+v", s)
	}
}

// TestIdleTimeout: idle connections are closed after IdleTimeout.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }))
	t.Cleanup(hs.Close)
	m := newMember(t, Options{URL: hs.URL, IdleTimeout: 50 * time.Millisecond})
	if _, _, err := get(t, m, "/a"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); m.Stats().Idle != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("still idle: %+v", m.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoIdleConns: MaxIdleConns 0 keeps nothing.
func TestNoIdleConns(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }))
	t.Cleanup(hs.Close)
	m, err := New(Options{URL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for range 2 {
		if _, _, err := get(t, m, "/a"); err != nil {
			t.Fatal(err)
		}
	}
	if s := m.Stats(); s.Dials != 2 || s.Idle != 0 {
		t.Fatalf("%+v", s)
	}
}

// TestHTTPS: an https member checks the homeserver's certificate against
// the CA file (or RootCAs), and a certificate it does not trust is
// NotSent.
func TestHTTPS(t *testing.T) {
	t.Parallel()
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 {
			t.Errorf("spoke %s, want HTTP/1.1", r.Proto)
		}
		io.WriteString(w, r.Host)
	}))
	t.Cleanup(hs.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	m := newMember(t, Options{URL: hs.URL, CAFile: caFile})
	for range 2 {
		_, body, err := get(t, m, "/a")
		if err != nil || string(body) != "hs.test" {
			t.Fatalf("%v %q", err, body)
		}
	}
	if s := m.Stats(); s.Dials != 1 {
		t.Fatalf("%+v", s)
	}
	untrusted := newMember(t, Options{URL: hs.URL})
	_, _, err := get(t, untrusted, "/a")
	var certErr *tls.CertificateVerificationError
	if kindOf(err) != NotSent || !errors.As(err, &certErr) {
		t.Fatalf("untrusted certificate: %v", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{URL: "ftp://h"}, {URL: "http://"}, {URL: "http://h/path"}, {URL: "http://h?q"}, {URL: "http://h", MaxIdleConns: -1},
		{URL: "https://h", CAFile: "/nonexistent/ca.pem"}, {URL: "://"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	m, err := New(Options{URL: "https://user:pw@h.test"})
	if err != nil || strings.Contains(m.String(), "pw") || m.addr != "h.test:443" {
		t.Fatalf("%v %s %s", err, m, m.addr)
	}
}

// TestProbe: a probe reports the status of GET target.
func TestProbe(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.UserAgent() != "probe" {
			w.WriteHeader(400)
		}
		io.WriteString(w, strings.Repeat("x", 100<<10))
	}))
	t.Cleanup(hs.Close)
	m := newMember(t, Options{URL: hs.URL})
	if code, err := m.Probe(context.Background(), "/_matrix/federation/v1/version", "probe"); code != 200 || err != nil {
		t.Fatalf("%d %v", code, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Probe(ctx, "/", "probe"); err == nil {
		t.Fatal("a cancelled probe succeeded")
	}
}
