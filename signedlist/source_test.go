package signedlist_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/signedlist"
)

func listJSON(version int, deny ...string) string {
	q := make([]string, len(deny))
	for i, d := range deny {
		q[i] = fmt.Sprintf("%q", d)
	}
	return fmt.Sprintf(`{"version": %d, "allow": [], "deny": [%s]}`, version, strings.Join(q, ", "))
}

func wantOrigin(t *testing.T, e *policy.Engine, origin, reason string) {
	t.Helper()
	if d := e.Snapshot().CheckOrigin(origin); d.Reason != reason {
		t.Fatalf("CheckOrigin(%s) = %+v, want reason %q", origin, d, reason)
	}
}

// TestFileHotReplacement: a signed list file is applied, replaced by a
// newer one, and forged, older or broken replacements are refused while
// the last good list stays.
func TestFileHotReplacement(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	clock := fedtest.NewClock(time.Now())
	e := engine(t, clock)
	file, cache := tempPath(t, "list.jws"), tempPath(t, "cache.jws")
	writeFile(t, file, p.es.Sign(t, []byte(listJSON(1, "evil.example"))), clock.Now())
	log, logs := logger(t)
	s, err := signedlist.New(signedlist.Options{File: file, Verifier: p.verifier, Sink: e, CacheFile: cache, Now: clock.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s.Publish()
	wantOrigin(t, e, "evil.example", policy.ReasonOriginDenied)
	if d := e.Snapshot().CheckOrigin("evil.example"); d.Rule != `list_file deny[0] "evil.example"` {
		t.Errorf("rule %q", d.Rule)
	}

	writeFile(t, file, p.ed.Sign(t, []byte(listJSON(2, "worse.example"))), clock.Now().Add(time.Second))
	if err := signedlist.PollFileForTest(s); err != nil {
		t.Fatal(err)
	}
	wantOrigin(t, e, "worse.example", policy.ReasonOriginDenied)
	wantOrigin(t, e, "evil.example", "")

	other := p.other.Signer(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)
	for i, bad := range []string{
		other.Sign(t, []byte(listJSON(3))),                // untrusted
		p.es.Sign(t, []byte(listJSON(1, "evil.example"))), // rollback
		listJSON(4), // unsigned
		strings.Replace(p.es.Sign(t, []byte(listJSON(5))), ".", ".x", 1), // broken
	} {
		writeFile(t, file, bad, clock.Now().Add(time.Duration(i+2)*time.Second))
		if err := signedlist.PollFileForTest(s); err == nil {
			t.Fatalf("bad list %d accepted", i)
		}
		wantOrigin(t, e, "worse.example", policy.ReasonOriginDenied)
	}
	st := s.Status()
	if st.Version != 2 || st.Failures != 4 || st.LastError == "" || st.Deny != 1 {
		t.Errorf("status %+v", st)
	}
	if !strings.Contains(logs.String(), "rollback refused") {
		t.Errorf("rollback not logged:\n%s", logs)
	}

	// A restart with the older list in the file keeps the newer one from
	// the cache.
	writeFile(t, file, p.es.Sign(t, []byte(listJSON(1, "evil.example"))), clock.Now())
	e2 := engine(t, clock)
	s2, err := signedlist.New(signedlist.Options{File: file, Verifier: p.verifier, Sink: e2, CacheFile: cache, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s2.Publish()
	wantOrigin(t, e2, "worse.example", policy.ReasonOriginDenied)
	wantOrigin(t, e2, "evil.example", "")
	if st := s2.Status(); st.Version != 2 {
		t.Errorf("restarted with version %d", st.Version)
	}

	// Without a cache, a bad file at start is an error.
	writeFile(t, file, other.Sign(t, []byte(listJSON(1))), clock.Now())
	if _, err := signedlist.New(signedlist.Options{File: file, Verifier: p.verifier, Sink: engine(t, clock), Now: clock.Now}); err == nil {
		t.Fatal("New accepted an untrusted list")
	}
}

// TestFileStale: with list_max_age, a list file not rewritten for that
// long fails closed; rewriting it (same content) makes it fresh again.
func TestFileStale(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	clock := fedtest.NewClock(time.Now())
	e := engine(t, clock)
	file := tempPath(t, "list.jws")
	content := p.es.Sign(t, []byte(listJSON(1, "evil.example")))
	writeFile(t, file, content, clock.Now())
	s, err := signedlist.New(signedlist.Options{File: file, Verifier: p.verifier, Sink: e, MaxAge: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.Publish()
	wantOrigin(t, e, "good.example", "")
	clock.Advance(2 * time.Hour)
	wantOrigin(t, e, "good.example", policy.ReasonListStale)
	if !s.Status().Stale {
		t.Error("status not stale")
	}
	writeFile(t, file, content, clock.Now())
	if err := signedlist.PollFileForTest(s); err != nil {
		t.Fatal(err)
	}
	wantOrigin(t, e, "good.example", "")
}

// listServer serves a signed list over HTTPS with ETags, like a list
// distribution point.
type listServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	body    string
	status  int
	fetches atomic.Int64
	not304  atomic.Int64
}

func newListServer(t *testing.T) *listServer {
	ls := &listServer{status: 200}
	ls.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.fetches.Add(1)
		ls.mu.Lock()
		body, status := ls.body, ls.status
		ls.mu.Unlock()
		if status != 200 {
			w.WriteHeader(status)
			return
		}
		etag := fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(body)))
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		ls.not304.Add(1)
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/jose")
		io.WriteString(w, body)
	}))
	t.Cleanup(ls.srv.Close)
	return ls
}

func (ls *listServer) set(body string, status int) {
	ls.mu.Lock()
	ls.body, ls.status = body, status
	ls.mu.Unlock()
}

// fetcher is a plain HTTPS client trusting the test server; the gateway
// uses discovery's guarded client instead.
func (ls *listServer) fetcher() signedlist.Fetcher {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ls.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}}
	return func(ctx context.Context, url string, h http.Header, max int64) (int, http.Header, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return 0, nil, nil, err
		}
		req.Header = h
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, max))
		return resp.StatusCode, resp.Header, b, err
	}
}

// TestURL: fetched over HTTPS with If-None-Match; a newer list replaces
// the old, refusals keep it, a 304 confirms it; a restart while the URL
// is down keeps enforcing the cached list.
func TestURL(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	clock := fedtest.NewClock(time.Now())
	ls := newListServer(t)
	ls.set(p.es.Sign(t, []byte(listJSON(1, "evil.example"))), 200)
	e := engine(t, clock)
	cache := tempPath(t, "federation-list.jws")
	opts := signedlist.Options{URL: ls.srv.URL + "/federation.jws", Fetch: ls.fetcher(), Verifier: p.verifier, Sink: e,
		CacheFile: cache, MaxAge: time.Hour, Now: clock.Now}
	s, err := signedlist.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish()
	// Nothing fetched yet and list_max_age set: fail closed.
	wantOrigin(t, e, "good.example", policy.ReasonListStale)
	ctx := background(t)
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	wantOrigin(t, e, "good.example", "")
	wantOrigin(t, e, "evil.example", policy.ReasonOriginDenied)
	if d := e.Snapshot().CheckOrigin("evil.example"); d.Rule != `list_url deny[0] "evil.example"` {
		t.Errorf("rule %q", d.Rule)
	}

	// Unchanged: 304, confirmed again (freshness moves).
	clock.Advance(50 * time.Minute)
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if ls.not304.Load() != 1 || ls.fetches.Load() != 2 {
		t.Errorf("full answers %d of %d fetches; want the second to be 304", ls.not304.Load(), ls.fetches.Load())
	}
	clock.Advance(50 * time.Minute)
	wantOrigin(t, e, "good.example", "")

	// Hot replacement by a newer list.
	ls.set(p.ed.Sign(t, []byte(listJSON(2, "worse.example"))), 200)
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	wantOrigin(t, e, "worse.example", policy.ReasonOriginDenied)
	wantOrigin(t, e, "evil.example", "")

	// Rollback, forgery and outage are refused; the list stays.
	ls.set(p.es.Sign(t, []byte(listJSON(1, "evil.example"))), 200)
	if err := s.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("rollback: %v", err)
	}
	ls.set(fedtest.UnsignedJWS(t, map[string]any{"alg": "none"}, []byte(listJSON(3)), nil), 200)
	if err := s.Fetch(ctx); err == nil {
		t.Fatal("alg none accepted")
	}
	ls.set("x", 503)
	if err := s.Fetch(ctx); err == nil {
		t.Fatal("503 accepted")
	}
	wantOrigin(t, e, "worse.example", policy.ReasonOriginDenied)

	// The URL stays down: the list goes stale an hour after its last
	// confirmation.
	clock.Advance(61 * time.Minute)
	wantOrigin(t, e, "good.example", policy.ReasonListStale)

	// Restart while the URL is down: the cached list is enforced at once,
	// still stale by the same clock.
	ls.srv.Close()
	e2 := engine(t, clock)
	opts.Sink = e2
	s2, err := signedlist.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s2.Publish()
	if st := s2.Status(); st.Version != 2 || !st.Stale {
		t.Errorf("restored status %+v", st)
	}
	opts.MaxAge = 0
	e3 := engine(t, clock)
	opts.Sink = e3
	s3, err := signedlist.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	wantOrigin(t, e3, "worse.example", "") // not published yet
	s3.Publish()
	wantOrigin(t, e3, "worse.example", policy.ReasonOriginDenied)
	wantOrigin(t, e3, "good.example", "")
}

// TestURLSignerExpires: once the signer's certificate expires, a 304
// confirms nothing, so list_max_age eventually fails closed.
func TestURLSignerExpires(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	now := time.Now()
	short := p.inter.Signer(t, now.Add(-time.Hour), now.Add(2*time.Hour), false)
	clock := fedtest.NewClock(now)
	ls := newListServer(t)
	ls.set(short.Sign(t, []byte(listJSON(1, "evil.example"))), 200)
	e := engine(t, clock)
	s, err := signedlist.New(signedlist.Options{URL: ls.srv.URL, Fetch: ls.fetcher(), Verifier: p.verifier, Sink: e, MaxAge: 90 * time.Minute, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.Publish()
	ctx := background(t)
	if err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(150 * time.Minute) // the signer expired 30 minutes ago
	if err := s.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "no longer verifies") {
		t.Fatalf("304 with an expired signer: %v", err)
	}
	wantOrigin(t, e, "good.example", policy.ReasonListStale)
	wantOrigin(t, e, "evil.example", policy.ReasonListStale)
}

// TestRunFetches: Run fetches at once and retries after a failure.
func TestRunFetches(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ls := newListServer(t)
	ls.set(p.es.Sign(t, []byte(listJSON(1, "evil.example"))), 200)
	clock := fedtest.NewClock(time.Now())
	e := engine(t, clock)
	s, err := signedlist.New(signedlist.Options{URL: ls.srv.URL, Fetch: ls.fetcher(), Verifier: p.verifier, Sink: e, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.Publish()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.Snapshot().CheckOrigin("evil.example").Allowed {
		if time.Now().After(deadline) {
			t.Fatal("list not fetched within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	s.Close()
	wantOrigin(t, e, "evil.example", "")
}
