package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// These tests exercise policy through the pipeline on endpoints without
// X-Matrix; the signed-request cases are in inbound_test.go.

func TestPeerNetworkDenied(t *testing.T) {
	tg := startGateway(t, "[policy]\ndeny_networks = [\"127.0.0.0/8\"]\n")
	m := matrixError(t, tg.do("GET", "/_matrix/federation/v1/version", ""), http.StatusForbidden, CodeForbidden)
	if !strings.Contains(m["error"].(string), "peer_denied") {
		t.Fatalf("message does not name the reason: %v", m["error"])
	}
	if n := len(tg.hs.Requests()); n != 0 {
		t.Fatalf("homeserver saw %d requests", n)
	}
}

func TestPerIPRateLimit(t *testing.T) {
	tg := startGateway(t, "[rate_limit]\nper_ip = { rate = \"1/m\", burst = 2 }\n")
	for i := 0; i < 2; i++ {
		if resp := tg.do("GET", "/_matrix/federation/v1/version", ""); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp := tg.do("GET", "/_matrix/federation/v1/version", "")
	m := matrixError(t, resp, http.StatusTooManyRequests, CodeLimitExceeded)
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After header")
	}
	if ms, ok := m["retry_after_ms"].(float64); !ok || ms <= 0 {
		t.Fatalf("retry_after_ms %v", m["retry_after_ms"])
	}
	if n := len(tg.hs.Requests()); n != 2 {
		t.Fatalf("homeserver saw %d requests, want 2", n)
	}
}

// TestDenyEndpointsCoversUnauthenticatedRoutes: denying "media" also denies
// the legacy unauthenticated media endpoints, which would otherwise be a
// way around the rule.
func TestDenyEndpointsCoversUnauthenticatedRoutes(t *testing.T) {
	tg := startGateway(t, "[policy]\ndeny_endpoints = [\"media\", \"version\"]\n")
	for _, target := range []string{
		"/_matrix/media/v3/download/remote.example/abc",
		"/_matrix/media/r0/thumbnail/remote.example/abc?width=1&height=1",
		"/_matrix/federation/v1/version",
	} {
		m := matrixError(t, tg.do("GET", target, ""), http.StatusForbidden, CodeForbidden)
		if !strings.Contains(m["error"].(string), "endpoint_denied") {
			t.Errorf("%s: %v", target, m["error"])
		}
	}
	if n := len(tg.hs.Requests()); n != 0 {
		t.Fatalf("homeserver saw %d requests", n)
	}
}

func TestDryRunDeniesNothing(t *testing.T) {
	tg := startGateway(t, "[policy]\ndry_run = true\ndeny_networks = [\"127.0.0.0/8\"]\ndeny_endpoints = [\"version\"]\n[rate_limit]\nper_ip = { rate = \"1/h\", burst = 1 }\n")
	for i := 0; i < 3; i++ {
		if resp := tg.do("GET", "/_matrix/federation/v1/version", ""); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if n := len(tg.hs.Requests()); n != 3 {
		t.Fatalf("homeserver saw %d requests", n)
	}
}
