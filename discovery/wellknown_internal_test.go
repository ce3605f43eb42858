package discovery

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseWellKnown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body, want, err string
	}{
		{`{"m.server":"matrix.example.org:443"}`, "matrix.example.org:443", ""},
		{` { "m.server" : "[2001:db8::1]:8448" } `, "[2001:db8::1]:8448", ""},
		{"\xef\xbb\xbf" + `{"m.server":"1.2.3.4"}`, "1.2.3.4", ""},
		{`{"m.server":"a.example","m.server":"b.example"}`, "b.example", ""}, // last wins, as encoding/json does
		{``, "", "not a JSON object"},
		{`null`, "", `no "m.server"`},
		{`"m.server"`, "", "not a JSON object"},
		{`{"m.server":null}`, "", "not a string"},
		{`{"m.server":["x"]}`, "", "not a string"},
		{`{"m.server":"https://example.org"}`, "", "not a server name"},
		{`{"m.server":"example.org:0"}`, "", "not a server name"},
		{`{"m.server":"` + strings.Repeat("a", 300) + `"}`, "", "..."},
	}
	for _, tt := range tests {
		got, err := parseWellKnown([]byte(tt.body))
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%q: %q, %v; want %q, %q", tt.body, got, err, tt.want, tt.err)
		}
	}
}

func TestNextWellKnown(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	fail := errors.New("boom")
	ok := nextWellKnown(nil, wkFetch{delegated: "d.example", ttl: time.Second, hasTTL: true}, now)
	if ok.expires != now.Add(wellKnownMinTTL) || ok.delegated != "d.example" {
		t.Fatalf("success %+v", ok)
	}
	// Transient failure after a success: keep the delegation, retry soon.
	later := now.Add(time.Hour)
	e := nextWellKnown(ok, wkFetch{err: fail, transient: true}, later)
	if !e.stale || e.delegated != "d.example" || e.failures != 1 || e.expires != later.Add(wellKnownErrorBase) {
		t.Fatalf("transient %+v", e)
	}
	// A stale delegation is not kept past 48 hours after its fetch.
	e = nextWellKnown(e, wkFetch{err: fail, transient: true}, now.Add(wellKnownMaxTTL-time.Minute))
	if !e.stale || e.expires != now.Add(wellKnownMaxTTL) {
		t.Fatalf("near the limit %+v", e)
	}
	e = nextWellKnown(e, wkFetch{err: fail, transient: true}, now.Add(wellKnownMaxTTL))
	if e.stale || e.delegated != "" || e.failures != 3 {
		t.Fatalf("past the limit %+v", e)
	}
	// Definitive failure: no delegation.
	e = nextWellKnown(ok, wkFetch{err: fail}, later)
	if e.delegated != "" || e.stale {
		t.Fatalf("definitive %+v", e)
	}
	// Many failures: the backoff stays at the cap without overflowing.
	for range 100 {
		e = nextWellKnown(e, wkFetch{err: fail}, later)
	}
	if e.expires != later.Add(wellKnownErrorMax) {
		t.Fatalf("after 100 failures %+v", e)
	}
	if !e.droppable(later.Add(wellKnownErrorMax)) || ok.droppable(now.Add(wellKnownMaxTTL-time.Second)) {
		t.Fatal("droppable")
	}
}

func TestCheckRedirect(t *testing.T) {
	t.Parallel()
	req := func(s string) *http.Request {
		u, _ := url.Parse(s)
		return &http.Request{URL: u}
	}
	a, b := req("https://a.example/x"), req("https://b.example/y")
	if err := checkRedirect(b, []*http.Request{a}); err != nil {
		t.Fatal(err)
	}
	if err := checkRedirect(req("https://a.example/x"), []*http.Request{a, b}); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("loop: %v", err)
	}
	if err := checkRedirect(req("http://c.example/"), []*http.Request{a}); err == nil {
		t.Fatal("http allowed")
	}
}
