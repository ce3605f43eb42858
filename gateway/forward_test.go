package gateway

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestForwardKeepsRequestTargetBytes sends unauthenticated requests whose
// targets Go's URL handling would normally rewrite and checks the homeserver
// receives them byte for byte.
func TestForwardKeepsRequestTargetBytes(t *testing.T) {
	tg := startGateway(t, "")
	targets := []string{
		"/_matrix/federation/v1/version",
		"/_matrix/federation/v1/version?b=2&a=1",
		"/_matrix/federation/v1/version?a=%2F%2f&b=%zz",
		"/_matrix/federation/v1/version?x;y=1",
		"/_matrix/federation/v1/version?",
		"/_matrix/federation/v1/version?q=%E6%97%A5&q=1&q=%e6",
		"/_matrix/media/v3/download/remote.example/abc%21def",
		"/_matrix/media/r0/thumbnail/remote.example/abc?width=32&height=32&method=crop",
	}
	for _, target := range targets {
		tg.hs.Reset()
		resp := tg.do("GET", target, "")
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: status %d %s", target, resp.StatusCode, b)
		}
		got := tg.hs.Requests()
		if len(got) != 1 {
			t.Fatalf("%s: homeserver saw %d requests", target, len(got))
		}
		if got[0].RequestURI != target {
			t.Errorf("request-target changed:\n sent %s\n  got %s", target, got[0].RequestURI)
		}
		if got[0].Header.Get("X-Forwarded-For") != "127.0.0.1" || got[0].Header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("forwarding headers %v", got[0].Header)
		}
		if got[0].Header.Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id")
		}
	}
}

// TestForwardBodyUnchanged: an unauthenticated PUT (identity-server
// callback) reaches the homeserver with its exact bytes, and headers that a
// client tries to smuggle as forwarding information are replaced.
func TestForwardBodyUnchanged(t *testing.T) {
	tg := startGateway(t, "")
	body := `{ "mxid" : "@alice:gw.test",  "invites":[], "z":1, "a":"\u00e9" }`
	resp := tg.do("PUT", "/_matrix/federation/v1/3pid/onbind", body,
		"Content-Type: application/json", "X-Forwarded-For: 6.6.6.6", "Authorization: Bearer something")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := tg.hs.Requests()
	if len(got) != 1 || string(got[0].Body) != body || got[0].Method != "PUT" {
		t.Fatalf("homeserver saw %+v", got)
	}
	if got[0].Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("client X-Forwarded-For leaked: %q", got[0].Header.Values("X-Forwarded-For"))
	}
	if got[0].Header.Get("Authorization") != "Bearer something" {
		t.Errorf("Authorization not forwarded: %q", got[0].Header.Get("Authorization"))
	}
}

// TestResponseRelayedUntouched: status, headers and a multipart media body
// come back as the homeserver sent them.
func TestResponseRelayedUntouched(t *testing.T) {
	tg := startGateway(t, "")
	media := "--boundary\r\nContent-Type: application/json\r\n\r\n{}\r\n--boundary\r\nContent-Type: image/png\r\n\r\n\x89PNG\x00\x01\r\n--boundary--\r\n"
	tg.hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/mixed; boundary=boundary")
		w.Header().Set("X-Homeserver", "yes")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, media)
	})
	resp := tg.do("GET", "/_matrix/media/v3/download/remote.example/abc", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != media {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Type") != "multipart/mixed; boundary=boundary" || resp.Header.Get("X-Homeserver") != "yes" {
		t.Fatalf("headers %v", resp.Header)
	}
	tg.hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"nope"}`)
	})
	resp = tg.do("GET", "/_matrix/federation/v1/version", "")
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 404 || string(body) != `{"errcode":"M_NOT_FOUND","error":"nope"}` {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
}

func TestUnknownRoutesAreNotForwarded(t *testing.T) {
	tg := startGateway(t, "")
	tests := []struct {
		method, target string
		status         int
	}{
		{"GET", "/_matrix/federation/v1/nonsense", 404},
		{"GET", "/_matrix/federation/unstable/org.example.msc/thing", 404},
		{"GET", "/", 404},
		{"GET", "/_matrix/federation/v1/%76ersion", 404},
		{"GET", "/_matrix/federation/v1//version", 404},
		{"GET", "/_matrix/federation/v1/./version", 404},
		{"GET", "/_matrix/federation/v1/x/../version", 404},
		{"POST", "/_matrix/federation/v1/version", 405},
		{"DELETE", "/_matrix/federation/v1/send/txn", 405},
		{"HEAD", "/_matrix/federation/v1/version", 405},
	}
	for _, tt := range tests {
		resp := tg.do(tt.method, tt.target, "")
		if tt.method == "HEAD" {
			if resp.StatusCode != tt.status {
				t.Errorf("%s %s: %d", tt.method, tt.target, resp.StatusCode)
			}
			continue
		}
		matrixError(t, resp, tt.status, CodeUnrecognized)
		if tt.status == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: no Allow header", tt.method, tt.target)
		}
	}
	if n := len(tg.hs.Requests()); n != 0 {
		t.Fatalf("homeserver saw %d requests", n)
	}
}

func TestPassthroughPrefix(t *testing.T) {
	tg := startGateway(t, "[inbound]\npassthrough = [\"/_matrix/federation/unstable/\"]\n")
	// Passthrough requests are X-Matrix endpoints: without a signature they
	// never reach the homeserver.
	resp := tg.do("GET", "/_matrix/federation/unstable/org.example/thing", "")
	matrixError(t, resp, http.StatusUnauthorized, CodeUnauthorized)
	resp = tg.do("GET", "/_matrix/federation/unstable/../v1/version", "")
	matrixError(t, resp, http.StatusNotFound, CodeUnrecognized)
	if n := len(tg.hs.Requests()); n != 0 {
		t.Fatalf("homeserver saw %d requests", n)
	}
}

func TestBodyLimits(t *testing.T) {
	tg := startGateway(t, "[inbound]\nmax_body = \"1KiB\"\n")
	big := `{"a":"` + strings.Repeat("x", 2000) + `"}`
	resp := tg.do("PUT", "/_matrix/federation/v1/3pid/onbind", big)
	matrixError(t, resp, http.StatusRequestEntityTooLarge, CodeTooLarge)
	// Chunked, so the size is only known while reading.
	resp = tg.raw("PUT /_matrix/federation/v1/3pid/onbind HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"7d0\r\n" + strings.Repeat("y", 2000) + "\r\n0\r\n\r\n")
	matrixError(t, resp, http.StatusRequestEntityTooLarge, CodeTooLarge)
	// A body on a GET is refused.
	resp = tg.raw("GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\n\r\n{}")
	matrixError(t, resp, http.StatusBadRequest, CodeBadJSON)
	// A declared length that never arrives in full is not forwarded.
	if n := len(tg.hs.Requests()); n != 0 {
		t.Fatalf("homeserver saw %d requests", n)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		tg := startGatewayTo(t, nil, "http://"+fedtest.FreeAddr(t), "")
		resp := tg.do("GET", "/_matrix/federation/v1/version", "")
		matrixError(t, resp, http.StatusBadGateway, CodeUnknown)
	})
	t.Run("slow", func(t *testing.T) {
		tg := startGateway(t, "")
		release := make(chan struct{})
		defer close(release)
		tg.hs.Handle(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		})
		// upstream.timeout is 5s in the base configuration.
		resp := tg.do("GET", "/_matrix/federation/v1/version", "")
		matrixError(t, resp, http.StatusGatewayTimeout, CodeUnknown)
	})
}

func TestHTTP2AndHTTP1(t *testing.T) {
	tg := startGateway(t, "")
	resp := tg.do("GET", "/_matrix/federation/v1/version?a=%2F", "")
	if resp.ProtoMajor != 2 {
		t.Fatalf("client spoke %s, want HTTP/2", resp.Proto)
	}
	resp = tg.raw("GET /_matrix/federation/v1/version?a=%2F HTTP/1.1\r\nHost: gw.test\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP/1.1 status %d", resp.StatusCode)
	}
	for _, r := range tg.hs.Requests() {
		if r.RequestURI != "/_matrix/federation/v1/version?a=%2F" {
			t.Fatalf("target %s", r.RequestURI)
		}
	}
}

func TestWellKnown(t *testing.T) {
	tg := startGateway(t, "[well_known]\nserver = \"matrix.gw.test:443\"\n")
	resp := tg.do("GET", "/.well-known/matrix/server", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(body, []byte(`{"m.server":"matrix.gw.test:443"}`)) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s %v", resp.StatusCode, body, resp.Header)
	}
	tg2 := startGateway(t, "")
	matrixError(t, tg2.do("GET", "/.well-known/matrix/server", ""), http.StatusNotFound, CodeNotFound)
}
