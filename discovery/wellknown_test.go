package discovery_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/discovery"
)

// wkEnv is an env where wk.test and other.test resolve to the server and
// deleg.test (the usual delegation target) does too.
func wkEnv(t testing.TB) *env {
	e := newEnv(t)
	e.zone("wk.test. 300 IN A 127.0.0.1", "other.test. 300 IN A 127.0.0.1", "deleg.test. 300 IN A 127.0.0.1")
	return e
}

func delegation(body string) reply {
	return reply{header: map[string]string{"Content-Type": "application/json"}, body: body}
}

func TestWellKnownDocuments(t *testing.T) {
	t.Parallel()
	big := `{"m.server":"deleg.test","pad":"` + strings.Repeat("x", 64<<10) + `"}`
	tests := []struct {
		name  string
		reply reply
		rule  string // 3.5 when delegation worked, 6 when discovery fell through
		err   string // substring of the well-known step's error
	}{
		{"valid", delegation(`{"m.server":"deleg.test"}`), "3.5", ""},
		{"any content type", reply{header: map[string]string{"Content-Type": "text/plain"}, body: `{"m.server":"deleg.test"}`}, "3.5", ""},
		{"no content type, byte order mark", reply{body: "\xef\xbb\xbf" + `{"m.server":"deleg.test"}`}, "3.5", ""},
		{"extra properties", delegation(`{"m.server":"deleg.test","m.other":[1,2]}`), "3.5", ""},
		{"not found", reply{status: 404}, "6", "HTTP 404"},
		{"server error", reply{status: 503}, "6", "HTTP 503"},
		{"not JSON", delegation(`<html>`), "6", "not a JSON object"},
		{"JSON array", delegation(`["deleg.test"]`), "6", "not a JSON object"},
		{"trailing garbage", delegation(`{"m.server":"deleg.test"} x`), "6", "not a JSON object"},
		{"no m.server", delegation(`{"m.servers":"deleg.test"}`), "6", `no "m.server"`},
		{"m.server case differs", delegation(`{"M.SERVER":"deleg.test"}`), "6", `no "m.server"`},
		{"m.server not a string", delegation(`{"m.server":8448}`), "6", "not a string"},
		{"m.server invalid", delegation(`{"m.server":"deleg.test:99999"}`), "6", "not a server name"},
		{"m.server empty", delegation(`{"m.server":""}`), "6", "not a server name"},
		{"body over 64 KiB", delegation(big), "6", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := wkEnv(t)
			e.srv.WellKnown("wk.test", tt.reply)
			c := e.client(e.options())
			res, err := c.Resolver().Resolve(ctxT(t), "wk.test")
			if err != nil {
				t.Fatal(err)
			}
			if res.Rule != tt.rule {
				t.Fatalf("rule %s, want %s; steps %v", res.Rule, tt.rule, res.Steps)
			}
			st := res.Steps[0]
			if st.Kind != discovery.StepWellKnown || st.Query != "https://wk.test/.well-known/matrix/server" {
				t.Fatalf("first step %+v", st)
			}
			if tt.err == "" && st.Error != "" || !strings.Contains(st.Error, tt.err) {
				t.Fatalf("step error %q, want %q", st.Error, tt.err)
			}
		})
	}
}

func TestWellKnownRedirects(t *testing.T) {
	t.Parallel()
	hop := func(e *env, target string) reply {
		return reply{status: http.StatusFound, header: map[string]string{"Location": e.expand(target)}}
	}
	// hops serves /hop/N: a redirect to /hop/N+1, and the document at N == last.
	hops := func(last int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
			if n >= last {
				w.Write([]byte(`{"m.server":"deleg.test"}`))
				return
			}
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", n+1), http.StatusMovedPermanently)
		}
	}
	tests := []struct {
		name  string
		setup func(e *env)
		rule  string
		err   string
	}{
		{"to another host", func(e *env) {
			e.srv.WellKnown("wk.test", hop(e, "https://other.test/.well-known/matrix/server"))
			e.srv.WellKnown("other.test", delegation(`{"m.server":"deleg.test"}`))
		}, "3.5", ""},
		{"five hops", func(e *env) {
			e.srv.WellKnown("wk.test", hop(e, "/hop/1"))
			e.srv.Handle(hops(5))
		}, "3.5", ""},
		{"six hops is too many", func(e *env) {
			e.srv.WellKnown("wk.test", hop(e, "/hop/1"))
			e.srv.Handle(hops(6))
		}, "6", "more than 5 redirects"},
		{"loop", func(e *env) {
			e.srv.WellKnown("wk.test", hop(e, "https://other.test/.well-known/matrix/server"))
			e.srv.WellKnown("other.test", hop(e, "https://wk.test/.well-known/matrix/server"))
		}, "6", "redirect loop"},
		{"to plain http", func(e *env) {
			e.srv.WellKnown("wk.test", hop(e, "http://other.test/.well-known/matrix/server"))
		}, "6", "non-https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := wkEnv(t)
			tt.setup(e)
			c := e.client(e.options())
			res, err := c.Resolver().Resolve(ctxT(t), "wk.test")
			if err != nil {
				t.Fatal(err)
			}
			if res.Rule != tt.rule || !strings.Contains(res.Steps[0].Error, tt.err) || (tt.err == "" && res.Steps[0].Error != "") {
				t.Fatalf("rule %s, steps %v; want rule %s, error %q", res.Rule, res.Steps, tt.rule, tt.err)
			}
		})
	}
}

// TestWellKnownCache checks cache lifetimes with an injected clock: each
// step advances the clock and says whether a new fetch must happen.
func TestWellKnownCache(t *testing.T) {
	t.Parallel()
	type tick struct {
		advance time.Duration
		fetch   bool
	}
	ok := `{"m.server":"deleg.test"}`
	tests := []struct {
		name   string
		header map[string]string
		status int
		ticks  []tick
	}{
		{"max-age", map[string]string{"Cache-Control": "public, max-age=3600"}, 200,
			[]tick{{3599 * time.Second, false}, {2 * time.Second, true}, {3599 * time.Second, false}}},
		{"default 24 hours", nil, 200,
			[]tick{{24*time.Hour - time.Second, false}, {2 * time.Second, true}}},
		{"at most 48 hours", map[string]string{"Cache-Control": "max-age=31536000"}, 200,
			[]tick{{48*time.Hour - time.Second, false}, {2 * time.Second, true}}},
		{"no-store still caches 5 minutes", map[string]string{"Cache-Control": "no-store"}, 200,
			[]tick{{299 * time.Second, false}, {2 * time.Second, true}}},
		{"Expires relative to Date", map[string]string{"Expires": time.Now().Add(2 * time.Hour).UTC().Format(http.TimeFormat)}, 200,
			[]tick{{2*time.Hour - time.Minute, false}, {2 * time.Minute, true}}},
		{"errors back off exponentially to an hour", nil, 404, []tick{
			{2*time.Minute - time.Second, false}, {time.Second, true}, // 2 min
			{4*time.Minute - time.Second, false}, {time.Second, true}, // 4 min
			{8*time.Minute - time.Second, false}, {time.Second, true}, // 8 min
			{16 * time.Minute, true}, {32 * time.Minute, true}, // 16, 32 min
			{time.Hour - time.Second, false}, {time.Second, true}, // capped at 1 h
			{time.Hour - time.Second, false}, {time.Second, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := wkEnv(t)
			e.srv.WellKnown("wk.test", reply{status: tt.status, header: tt.header, body: ok})
			c := e.client(e.options())
			r := c.Resolver()
			fetches := func() int { return e.srv.Count("/.well-known/") }
			if _, err := r.Resolve(ctxT(t), "wk.test"); err != nil || fetches() != 1 {
				t.Fatalf("first resolve: %v, %d fetches", err, fetches())
			}
			want := 1
			var elapsed time.Duration
			for i, tk := range tt.ticks {
				e.clock.Advance(tk.advance)
				elapsed += tk.advance
				res, err := r.Resolve(ctxT(t), "wk.test")
				if err != nil {
					t.Fatal(err)
				}
				if tk.fetch {
					want++
				}
				if got := fetches(); got != want {
					t.Fatalf("tick %d (+%v): %d fetches, want %d", i, elapsed, got, want)
				}
				if res.Steps[0].Cached == tk.fetch {
					t.Errorf("tick %d: step cached=%v", i, res.Steps[0].Cached)
				}
			}
		})
	}
}

// TestWellKnownKeptOnOutage: a server whose well-known worked keeps its
// delegation while the document is briefly unavailable (5xx), but a
// definitive answer (404) ends it.
func TestWellKnownKeptOnOutage(t *testing.T) {
	t.Parallel()
	e := wkEnv(t)
	e.srv.WellKnown("wk.test", reply{header: map[string]string{"Cache-Control": "max-age=600"}, body: `{"m.server":"deleg.test"}`})
	r := e.client(e.options()).Resolver()
	if res, err := r.Resolve(ctxT(t), "wk.test"); err != nil || res.Rule != "3.5" {
		t.Fatalf("%v %+v", err, res)
	}
	e.srv.WellKnown("wk.test", reply{status: 502})
	e.clock.Advance(601 * time.Second)
	res, err := r.Resolve(ctxT(t), "wk.test")
	if err != nil || res.Rule != "3.5" || !strings.Contains(res.Steps[0].Note, "kept from an earlier fetch") {
		t.Fatalf("during the outage: %v %+v", err, res)
	}
	e.srv.WellKnown("wk.test", reply{status: 404})
	e.clock.Advance(2*time.Minute + time.Second) // the first error's backoff
	res, err = r.Resolve(ctxT(t), "wk.test")
	if err != nil || res.Rule != "6" {
		t.Fatalf("after a 404: %v %+v", err, res)
	}
}

// TestWellKnownCoalesced: concurrent resolutions of one name share one fetch.
func TestWellKnownCoalesced(t *testing.T) {
	t.Parallel()
	e := wkEnv(t)
	release := make(chan struct{})
	e.srv.WellKnown("wk.test", reply{body: `{"m.server":"deleg.test"}`, wait: release})
	r := e.client(e.options()).Resolver()
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			res, err := r.Resolve(ctxT(t), "wk.test")
			if err == nil && res.Rule != "3.5" {
				err = fmt.Errorf("rule %s", res.Rule)
			}
			errs <- err
		})
	}
	// Wait until every caller waits on the one fetch in flight.
	waitFor(t, func() bool { return discovery.WellKnownWaiters(r, "wk.test") == n })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := e.srv.Count("/.well-known/"); got != 1 {
		t.Fatalf("%d fetches, want 1", got)
	}
}

// TestWellKnownCallerCancel: a caller that gives up does not cancel the
// fetch for others; its result is cached.
func TestWellKnownCallerCancel(t *testing.T) {
	t.Parallel()
	e := wkEnv(t)
	release := make(chan struct{})
	e.srv.WellKnown("wk.test", reply{body: `{"m.server":"deleg.test"}`, wait: release})
	r := e.client(e.options()).Resolver()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := r.Resolve(ctx, "wk.test")
		done <- err
	}()
	waitFor(t, func() bool { return discovery.WellKnownWaiters(r, "wk.test") == 1 })
	cancel()
	if err := <-done; phaseOf(err) != discovery.PhaseWellKnown {
		t.Fatalf("cancelled caller got %v", err)
	}
	close(release)
	// The fetch finishes for the cache; the next caller waits for it or
	// finds it cached, and either way there was one fetch.
	res, err := r.Resolve(ctxT(t), "wk.test")
	if err != nil || res.Rule != "3.5" || e.srv.Count("/.well-known/") != 1 {
		t.Fatalf("%v %+v, %d fetches", err, res, e.srv.Count("/.well-known/"))
	}
}
