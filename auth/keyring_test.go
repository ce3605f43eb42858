package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

func newClock() *fedtest.Clock { return fedtest.NewClock(testNow) }

// fakeFetcher serves key documents from memory. It is the one fake in
// auth's tests: the real Fetcher is the gateway's HTTP client, tested there
// over sockets.
type fakeFetcher struct {
	mu      sync.Mutex
	docs    map[string][]byte // server -> its key document
	errs    map[string]error  // server -> error from its key server
	notary  map[string]func(server string) ([]byte, error)
	direct  map[string]int // fetch counts per server
	queries map[string]int // query counts per notary
	gate    chan struct{}  // when set, FetchServerKeys waits for it to close
	started chan string    // when set, receives the server of every fetch
}

func newFetcher() *fakeFetcher {
	return &fakeFetcher{docs: map[string][]byte{}, errs: map[string]error{},
		notary: map[string]func(string) ([]byte, error){}, direct: map[string]int{}, queries: map[string]int{}}
}

func (f *fakeFetcher) FetchServerKeys(ctx context.Context, server string) ([]byte, error) {
	f.mu.Lock()
	f.direct[server]++
	gate, doc, err, started := f.gate, f.docs[server], f.errs[server], f.started
	f.mu.Unlock()
	if started != nil {
		started <- server
	}
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("fetch without a deadline")
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, errors.New("dial tcp 10.0.0.7:8448: connection refused")
	}
	return doc, nil
}

func (f *fakeFetcher) QueryNotary(ctx context.Context, notary, server string, minValidUntil time.Time) ([]byte, error) {
	f.mu.Lock()
	f.queries[notary]++
	answer := f.notary[notary]
	f.mu.Unlock()
	if answer == nil {
		return nil, errors.New("notary unreachable")
	}
	return answer(server)
}

func (f *fakeFetcher) set(server string, doc []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[server], f.errs[server] = doc, err
}

func (f *fakeFetcher) count(server string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.direct[server]
}

func (f *fakeFetcher) queryCount(notary string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[notary]
}

// eventLog records keyring events and lets tests wait for them.
type eventLog struct {
	mu     sync.Mutex
	counts map[EventKind]int
	ch     chan KeyringEvent
}

func newEventLog() *eventLog {
	return &eventLog{counts: map[EventKind]int{}, ch: make(chan KeyringEvent, 1024)}
}

func (l *eventLog) record(ev KeyringEvent) {
	l.mu.Lock()
	l.counts[ev.Kind]++
	l.mu.Unlock()
	select {
	case l.ch <- ev:
	default:
	}
}

func (l *eventLog) count(k EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[k]
}

// wait returns the next event of kind k, failing the test after a generous
// deadline (only reached if the code under test is broken).
func (l *eventLog) wait(t *testing.T, k EventKind) KeyringEvent {
	t.Helper()
	return l.waitFor(t, k, func(KeyringEvent) bool { return true })
}

// waitFor returns the next event of kind k that ok accepts.
func (l *eventLog) waitFor(t *testing.T, k EventKind, ok func(KeyringEvent) bool) KeyringEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-l.ch:
			if ev.Kind == k && ok(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", k)
		}
	}
}

// origin is a remote server with a signing key.
type origin struct {
	name string
	key  SigningKey
}

func newOrigin(t testing.TB, name, version string) origin {
	return origin{name: name, key: mustKey(t, version)}
}

func (o origin) doc(t testing.TB, validUntil time.Time, extra ...SigningKey) []byte {
	t.Helper()
	raw, err := BuildKeyDocument(o.name, append([]SigningKey{o.key}, extra...), nil, validUntil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type ringEnv struct {
	ring   *Keyring
	clock  *fedtest.Clock
	fetch  *fakeFetcher
	events *eventLog
}

func newRing(t *testing.T, mod func(*KeyringOptions)) ringEnv {
	t.Helper()
	env := ringEnv{clock: newClock(), fetch: newFetcher(), events: newEventLog()}
	opts := KeyringOptions{Fetcher: env.fetch, Now: env.clock.Now, OnEvent: env.events.record}
	if mod != nil {
		mod(&opts)
	}
	r, err := NewKeyring(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	env.ring = r
	return env
}

func TestKeyringFetchesOnceAndCaches(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	env.fetch.set(o.name, o.doc(t, testNow.Add(24*time.Hour)), nil)
	for i := 0; i < 3; i++ {
		pub, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID)
		if err != nil || !pub.Equal(o.key.Public()) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := env.fetch.count(o.name); n != 1 {
		t.Fatalf("%d fetches", n)
	}
	if env.events.count(EventFetched) != 1 || env.events.count(EventCacheHit) != 2 {
		t.Fatalf("events %v", env.events.counts)
	}
}

func TestKeyringExpiryAndCap(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		published time.Duration // valid_until_ts after the fetch
		lifetime  time.Duration // how long the keys may be used
	}{
		{"valid_until_ts", 2 * time.Hour, 2 * time.Hour},
		{"seven day cap", 30 * 24 * time.Hour, MaxKeyValidity},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := newRing(t, nil)
			o := newOrigin(t, "o.example", "a")
			env.fetch.set(o.name, o.doc(t, testNow.Add(tt.published)), nil)
			if _, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID); err != nil {
				t.Fatal(err)
			}
			env.clock.Advance(tt.lifetime) // the last moment the keys are valid
			if _, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID); err != nil || env.fetch.count(o.name) != 1 {
				t.Fatalf("at the end of validity: %v, %d fetches", err, env.fetch.count(o.name))
			}
			env.clock.Advance(time.Millisecond)
			env.fetch.set(o.name, o.doc(t, env.clock.Now().Add(tt.published)), nil)
			if _, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID); err != nil || env.fetch.count(o.name) != 2 {
				t.Fatalf("after expiry: %v, %d fetches", err, env.fetch.count(o.name))
			}
		})
	}
}

func TestKeyringRotation(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	rotated := mustKey(t, "b")
	env.fetch.set(o.name, o.doc(t, testNow.Add(24*time.Hour)), nil)
	if _, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID); err != nil {
		t.Fatal(err)
	}
	// The origin rotates; for a minute after our fetch a new key id is not
	// fetched for (made-up key ids must not make us hammer the origin).
	newDoc, err := BuildKeyDocument(o.name, []SigningKey{rotated}, []OldVerifyKey{{ID: o.key.ID, Key: o.key.Public(), ExpiredTS: testNow.UnixMilli()}}, testNow.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	env.fetch.set(o.name, newDoc, nil)
	for i := 0; i < 5; i++ {
		if _, err := env.ring.VerifyKey(context.Background(), o.name, rotated.ID); KindOf(err) != KindUnknownKey {
			t.Fatalf("within MinRefetchInterval: %v", err)
		}
	}
	if n := env.fetch.count(o.name); n != 1 {
		t.Fatalf("%d fetches within MinRefetchInterval", n)
	}
	env.clock.Advance(DefaultMinRefetchInterval)
	pub, err := env.ring.VerifyKey(context.Background(), o.name, rotated.ID)
	if err != nil || !pub.Equal(rotated.Public()) || env.fetch.count(o.name) != 2 {
		t.Fatalf("after rotation: %v, %d fetches", err, env.fetch.count(o.name))
	}
	// The retired key is in old_verify_keys now: not for requests.
	if _, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID); KindOf(err) != KindUnknownKey {
		t.Fatalf("old key accepted: %v", err)
	}
	// A key id the origin never had: one more fetch after the interval,
	// then UnknownKey.
	env.clock.Advance(DefaultMinRefetchInterval)
	if _, err := env.ring.VerifyKey(context.Background(), o.name, "ed25519:made_up"); KindOf(err) != KindUnknownKey || env.fetch.count(o.name) != 3 {
		t.Fatalf("made-up key: %v, %d fetches", err, env.fetch.count(o.name))
	}
}

func TestKeyringBackoff(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	ctx := context.Background()
	_, err := env.ring.VerifyKey(ctx, o.name, o.key.ID)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindKeyFetchFailed || !strings.Contains(e.Msg, "next attempt in 10s") {
		t.Fatalf("first failure: %v", err)
	}
	if strings.Contains(e.Msg, "10.0.0.7") {
		t.Fatalf("message for the remote reveals a network detail: %s", e.Msg)
	}
	for _, step := range []struct {
		advance time.Duration
		fetches int
		msg     string
	}{
		{0, 1, "next attempt in 10s"},
		{9 * time.Second, 1, "next attempt in 1s"},
		{time.Second, 2, "next attempt in 20s"}, // second failure: 20s
		{19 * time.Second, 2, "next attempt in 1s"},
		{time.Second, 3, "next attempt in 40s"},
	} {
		env.clock.Advance(step.advance)
		_, err := env.ring.VerifyKey(ctx, o.name, o.key.ID)
		if KindOf(err) != KindKeyFetchFailed || !strings.Contains(err.Error(), step.msg) || env.fetch.count(o.name) != step.fetches {
			t.Fatalf("after %v: %v; %d fetches, want %d and %q", step.advance, err, env.fetch.count(o.name), step.fetches, step.msg)
		}
	}
	if env.events.count(EventBackoff) != 3 {
		t.Fatalf("%d backoff events", env.events.count(EventBackoff))
	}
	// The backoff is capped.
	for i := 0; i < 10; i++ {
		env.clock.Advance(DefaultBackoffMax)
		env.ring.VerifyKey(ctx, o.name, o.key.ID)
	}
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); !strings.Contains(err.Error(), "next attempt in 10m0s") {
		t.Fatalf("capped backoff: %v", err)
	}
	// Success resets it.
	env.clock.Advance(DefaultBackoffMax)
	env.fetch.set(o.name, o.doc(t, env.clock.Now().Add(time.Hour)), nil)
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(time.Hour + time.Millisecond)
	env.fetch.set(o.name, nil, nil)
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); !strings.Contains(err.Error(), "next attempt in 10s") {
		t.Fatalf("backoff not reset: %v", err)
	}
}

func TestKeyringServesCacheWhileRefreshFails(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	env.fetch.set(o.name, o.doc(t, testNow.Add(2*time.Hour)), nil)
	ctx := context.Background()
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); err != nil {
		t.Fatal(err)
	}
	env.fetch.set(o.name, nil, errors.New("down"))
	env.clock.Advance(time.Hour + time.Minute) // past half-life
	if n := env.ring.refreshDue(); n != 1 {
		t.Fatalf("refreshDue started %d", n)
	}
	env.events.waitFor(t, EventFetchFailed, func(ev KeyringEvent) bool { return ev.Background })
	waitIdle(t, env.ring, o.name)
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); err != nil {
		t.Fatalf("cached keys not served while refresh fails: %v", err)
	}
	env.clock.Advance(time.Hour)
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); KindOf(err) != KindKeyFetchFailed {
		t.Fatalf("expired keys served: %v", err)
	}
}

// waitIdle waits until no fetch is in flight for server.
func waitIdle(t *testing.T, r *Keyring, server string) {
	t.Helper()
	r.mu.Lock()
	e := r.servers[server]
	var call *fetchCall
	if e != nil {
		call = e.call
	}
	r.mu.Unlock()
	if call != nil {
		<-call.done
	}
}

func TestKeyringHalfLifeRefresh(t *testing.T) {
	t.Parallel()
	env := newRing(t, func(o *KeyringOptions) { o.RecentUse = 3 * time.Hour })
	o := newOrigin(t, "o.example", "a")
	idle := newOrigin(t, "idle.example", "a")
	ctx := context.Background()
	for _, s := range []origin{o, idle} {
		env.fetch.set(s.name, s.doc(t, testNow.Add(8*time.Hour)), nil)
		if _, err := env.ring.VerifyKey(ctx, s.name, s.key.ID); err != nil {
			t.Fatal(err)
		}
	}
	env.clock.Advance(3*time.Hour + 59*time.Minute)
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); err != nil { // o is in use, idle is not
		t.Fatal(err)
	}
	if n := env.ring.refreshDue(); n != 0 {
		t.Fatalf("refreshed %d before half-life", n)
	}
	env.clock.Advance(time.Minute)
	env.fetch.set(o.name, o.doc(t, env.clock.Now().Add(8*time.Hour)), nil)
	if n := env.ring.refreshDue(); n != 1 {
		t.Fatalf("refreshDue started %d, want 1 (idle servers are not refreshed)", n)
	}
	background := func(ev KeyringEvent) bool { return ev.Background }
	if ev := env.events.waitFor(t, EventFetched, background); ev.Server != o.name {
		t.Fatalf("event %+v", ev)
	}
	waitIdle(t, env.ring, o.name)
	if env.fetch.count(o.name) != 2 || env.fetch.count(idle.name) != 1 {
		t.Fatalf("fetches %v", env.fetch.direct)
	}
	// The refreshed document is in use: valid for 8h from now.
	env.clock.Advance(7 * time.Hour)
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); err != nil || env.fetch.count(o.name) != 2 {
		t.Fatalf("refreshed keys: %v, %d fetches", err, env.fetch.count(o.name))
	}
}

func TestKeyringRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := newRing(t, func(o *KeyringOptions) {
		o.RefreshInterval = time.Millisecond
		o.SaveDelay = time.Millisecond
		o.CacheFile = filepath.Join(dir, "keyring.json")
	})
	o := newOrigin(t, "o.example", "a")
	env.fetch.set(o.name, o.doc(t, testNow.Add(2*time.Hour)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { env.ring.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); err != nil {
		t.Fatal(err)
	}
	env.events.wait(t, EventCacheSaved) // debounced save after the fetch
	if _, err := os.Stat(filepath.Join(dir, "keyring.json")); err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(time.Hour)
	env.events.waitFor(t, EventFetched, func(ev KeyringEvent) bool { return ev.Background })
}

func TestKeyringNotaryFallback(t *testing.T) {
	t.Parallel()
	n1, n2 := mustKey(t, "n1"), mustKey(t, "n2")
	env := newRing(t, func(o *KeyringOptions) {
		o.Notaries = []Notary{
			{ServerName: "bad.notary", Keys: map[KeyID]ed25519.PublicKey{n1.ID: n1.Public()}},
			{ServerName: "good.notary", Keys: map[KeyID]ed25519.PublicKey{n2.ID: n2.Public()}},
		}
	})
	o := newOrigin(t, "o.example", "a")
	forger := mustKey(t, "a")
	relay := func(notary string, key SigningKey, docs ...[]byte) []byte {
		out := `{"server_keys":[`
		for i, d := range docs {
			signed, err := AddSignature(d, notary, key)
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 {
				out += ","
			}
			out += string(signed)
		}
		return []byte(out + `]}`)
	}
	forged, err := BuildKeyDocument(o.name, []SigningKey{forger}, nil, testNow.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// bad.notary vouches for a forged document but signs with a key we do
	// not pin; good.notary relays the origin's real document.
	env.fetch.notary["bad.notary"] = func(string) ([]byte, error) { return relay("bad.notary", forger, forged), nil }
	env.fetch.notary["good.notary"] = func(string) ([]byte, error) {
		other := newOrigin(t, "other.example", "x")
		return relay("good.notary", n2, other.doc(t, testNow.Add(time.Hour)), o.doc(t, testNow.Add(time.Hour))), nil
	}
	pub, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID)
	if err != nil || !pub.Equal(o.key.Public()) {
		t.Fatalf("notary fallback: %v", err)
	}
	if env.events.count(EventFetchFailed) != 1 || env.events.count(EventNotaryFailed) != 1 || env.events.count(EventNotaryFetched) != 1 {
		t.Fatalf("events %v", env.events.counts)
	}
	// A notary answer without the origin's own signature is refused too.
	env2 := newRing(t, func(opts *KeyringOptions) {
		opts.Notaries = []Notary{{ServerName: "good.notary", Keys: map[KeyID]ed25519.PublicKey{n2.ID: n2.Public()}}}
	})
	env2.fetch.notary["good.notary"] = func(string) ([]byte, error) {
		return relay("good.notary", n2, mustMarshal(t, map[string]any{"server_name": o.name, "valid_until_ts": testNow.Add(time.Hour).UnixMilli(), "verify_keys": verifyKeysOf(o.key)})), nil
	}
	_, err = env2.ring.VerifyKey(context.Background(), o.name, o.key.ID)
	if KindOf(err) != KindKeyFetchFailed || !strings.Contains(err.Error(), "notary good.notary") {
		t.Fatalf("unsigned-by-origin document accepted: %v", err)
	}
	if env2.fetch.queryCount("good.notary") != 1 {
		t.Fatal("notary not asked")
	}
}

func TestKeyringPinned(t *testing.T) {
	t.Parallel()
	o := newOrigin(t, "partner.example", "p")
	env := newRing(t, func(opts *KeyringOptions) {
		opts.Pinned = map[string]map[KeyID]ed25519.PublicKey{o.name: {o.key.ID: o.key.Public()}}
	})
	pub, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID)
	if err != nil || !pub.Equal(o.key.Public()) {
		t.Fatal(err)
	}
	if _, err := env.ring.VerifyKey(context.Background(), o.name, "ed25519:other"); KindOf(err) != KindUnknownKey {
		t.Fatalf("unpinned key id: %v", err)
	}
	env.clock.Advance(365 * 24 * time.Hour)
	if _, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID); err != nil {
		t.Fatal(err)
	}
	if docs, err := env.ring.ServerKeysFor(context.Background(), o.name, time.Time{}); err != nil || docs != nil {
		t.Fatalf("ServerKeysFor pinned: %v, %v", docs, err)
	}
	if n := env.fetch.count(o.name); n != 0 {
		t.Fatalf("pinned server fetched %d times", n)
	}
}

func TestKeyringCoalescing(t *testing.T) {
	t.Parallel()
	const callers = 200
	var joined atomic.Int32
	release := make(chan struct{})
	env := newRing(t, func(o *KeyringOptions) {
		events := o.OnEvent
		o.OnEvent = func(ev KeyringEvent) {
			events(ev)
			if ev.Kind == EventCoalesced && joined.Add(1) == callers-1 {
				close(release) // every other caller is waiting on the one fetch
			}
		}
	})
	o := newOrigin(t, "o.example", "a")
	env.fetch.set(o.name, o.doc(t, testNow.Add(time.Hour)), nil)
	env.fetch.gate = release
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID)
			if err == nil && !pub.Equal(o.key.Public()) {
				err = errors.New("wrong key")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := env.fetch.count(o.name); n != 1 {
		t.Fatalf("%d callers made %d fetches", callers, n)
	}
}

func TestKeyringCallerGivesUp(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	release := make(chan struct{})
	env.fetch.set(o.name, o.doc(t, testNow.Add(time.Hour)), nil)
	env.fetch.gate = release
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); KindOf(err) != KindKeyFetchFailed || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	// The fetch carries on for the next caller.
	close(release)
	if _, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID); err != nil || env.fetch.count(o.name) != 1 {
		t.Fatalf("%v, %d fetches", err, env.fetch.count(o.name))
	}
}

func TestKeyringCloseStopsFetches(t *testing.T) {
	t.Parallel()
	env := newRing(t, func(o *KeyringOptions) { o.FetchTimeout = time.Hour })
	o := newOrigin(t, "o.example", "a")
	env.fetch.gate = make(chan struct{}) // never released: only ctx ends the fetch
	env.fetch.started = make(chan string, 1)
	result := make(chan error, 1)
	go func() {
		_, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID)
		result <- err
	}()
	<-env.fetch.started
	if err := env.ring.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-result; KindOf(err) != KindKeyFetchFailed {
		t.Fatalf("caller of a cancelled fetch: %v", err)
	}
	// Closed: answers from cache only.
	if _, err := env.ring.VerifyKey(context.Background(), "new.example", o.key.ID); KindOf(err) != KindKeyFetchFailed || env.fetch.count("new.example") != 0 {
		t.Fatalf("fetched after Close: %v", err)
	}
}

func TestKeyringServerKeysFor(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	ctx := context.Background()
	env.fetch.set(o.name, o.doc(t, testNow.Add(2*time.Hour)), nil)
	docs, err := env.ring.ServerKeysFor(ctx, o.name, time.Time{})
	if err != nil || len(docs) != 1 || docs[0].ServerName != o.name {
		t.Fatalf("%v, %v", docs, err)
	}
	if _, err := env.ring.ServerKeysFor(ctx, o.name, testNow.Add(time.Hour)); err != nil || env.fetch.count(o.name) != 1 {
		t.Fatalf("fresh enough: %v, %d fetches", err, env.fetch.count(o.name))
	}
	// Asked for more than we hold: refetch (once the last fetch is not
	// brand new).
	env.clock.Advance(time.Minute)
	env.fetch.set(o.name, o.doc(t, testNow.Add(5*time.Hour)), nil)
	docs, err = env.ring.ServerKeysFor(ctx, o.name, testNow.Add(3*time.Hour))
	if err != nil || env.fetch.count(o.name) != 2 || !docs[0].ValidUntil.Equal(testNow.Add(5*time.Hour)) {
		t.Fatalf("refetch: %v, %d fetches", err, env.fetch.count(o.name))
	}
	// The origin goes offline and its keys expire: the stale document is
	// still served.
	env.fetch.set(o.name, nil, errors.New("offline"))
	env.clock.Advance(6 * time.Hour)
	docs, err = env.ring.ServerKeysFor(ctx, o.name, time.Time{})
	if err != nil || len(docs) != 1 || env.events.count(EventStale) != 1 {
		t.Fatalf("stale: %v, %v", docs, err)
	}
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); KindOf(err) != KindKeyFetchFailed {
		t.Fatalf("stale keys used for a request: %v", err)
	}
	// Nothing known and unreachable: an error.
	if docs, err := env.ring.ServerKeysFor(ctx, "unknown.example", time.Time{}); KindOf(err) != KindKeyFetchFailed || docs != nil {
		t.Fatalf("unknown server: %v, %v", docs, err)
	}
}

func TestKeyringPersistence(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keyring.json")
	a := newRing(t, func(o *KeyringOptions) { o.CacheFile = path })
	live, dying := newOrigin(t, "live.example", "a"), newOrigin(t, "dying.example", "b")
	a.fetch.set(live.name, live.doc(t, testNow.Add(48*time.Hour)), nil)
	a.fetch.set(dying.name, dying.doc(t, testNow.Add(time.Hour)), nil)
	for _, o := range []origin{live, dying} {
		if _, err := a.ring.VerifyKey(context.Background(), o.name, o.key.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.ring.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, %v", st, err)
	}

	// A second keyring, two hours later, with no way to fetch.
	clock := newClock()
	clock.Advance(2 * time.Hour)
	events := newEventLog()
	b, err := NewKeyring(KeyringOptions{CacheFile: path, Now: clock.Now, OnEvent: events.record})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if events.count(EventCacheLoaded) != 1 || b.Len() != 2 {
		t.Fatalf("loaded %d servers, events %v", b.Len(), events.counts)
	}
	if _, err := b.VerifyKey(context.Background(), live.name, live.key.ID); err != nil {
		t.Fatalf("persisted keys: %v", err)
	}
	// The expired document is kept for notary answers only.
	if _, err := b.VerifyKey(context.Background(), dying.name, dying.key.ID); KindOf(err) != KindKeyFetchFailed {
		t.Fatalf("expired persisted keys used: %v", err)
	}
	if docs, err := b.ServerKeysFor(context.Background(), dying.name, time.Time{}); err != nil || len(docs) != 1 {
		t.Fatalf("stale document for notary answers: %v, %v", docs, err)
	}
	// The 7-day cap counts from the original fetch, not from the load.
	clock.Advance(MaxKeyValidity)
	if _, err := b.VerifyKey(context.Background(), live.name, live.key.ID); KindOf(err) != KindKeyFetchFailed {
		t.Fatalf("validity restarted at load: %v", err)
	}
}

func TestKeyringCacheFileProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := newOrigin(t, "o.example", "a")
	good := o.doc(t, testNow.Add(time.Hour))
	tampered := strings.Replace(string(good), `"valid_until_ts":`, `"valid_until_ts":9`, 1)
	for name, content := range map[string]string{
		"corrupt":       `{"version":1,"servers":[`,
		"wrong version": `{"version":99,"servers":[]}`,
		"not json":      "\x00\x01",
		"tampered":      `{"version":1,"servers":[{"server_name":"o.example","checked_ts":1,"last_used_ts":1,"document":` + tampered + `}]}`,
		"wrong server":  `{"version":1,"servers":[{"server_name":"x.example","checked_ts":1,"last_used_ts":1,"document":` + string(good) + `}]}`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := NewKeyring(KeyringOptions{CacheFile: path, Now: newClock().Now})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Len() != 0 {
			t.Errorf("%s: loaded %d servers", name, r.Len())
		}
		r.Close()
	}
	// A missing folder is created on save.
	r, err := NewKeyring(KeyringOptions{CacheFile: filepath.Join(dir, "missing", "keyring.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("saving into a folder that did not exist: %v", err)
	}
	// An unwritable location (under a regular file) is reported, not fatal.
	r, err = NewKeyring(KeyringOptions{CacheFile: filepath.Join(dir, "corrupt.json", "keyring.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err == nil {
		t.Error("saving under a regular file succeeded")
	}
}

func TestKeyringEviction(t *testing.T) {
	t.Parallel()
	env := newRing(t, func(o *KeyringOptions) { o.MaxServers = 3 })
	ctx := context.Background()
	var origins []origin
	for _, name := range []string{"a.example", "b.example", "c.example", "d.example"} {
		o := newOrigin(t, name, "k")
		origins = append(origins, o)
		env.fetch.set(name, o.doc(t, testNow.Add(time.Hour)), nil)
	}
	for _, o := range origins[:3] {
		if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); err != nil {
			t.Fatal(err)
		}
	}
	env.ring.VerifyKey(ctx, origins[0].name, origins[0].key.ID) // a is now most recent; b is least
	if _, err := env.ring.VerifyKey(ctx, origins[3].name, origins[3].key.ID); err != nil {
		t.Fatal(err)
	}
	if env.ring.Len() != 3 || env.events.count(EventEvicted) != 1 {
		t.Fatalf("%d servers, %d evictions", env.ring.Len(), env.events.count(EventEvicted))
	}
	env.ring.VerifyKey(ctx, origins[0].name, origins[0].key.ID)
	if env.fetch.count("a.example") != 1 || env.fetch.count("b.example") != 1 {
		t.Fatalf("a was evicted instead of b: %v", env.fetch.direct)
	}
	env.ring.VerifyKey(ctx, origins[1].name, origins[1].key.ID)
	if env.fetch.count("b.example") != 2 {
		t.Fatalf("b was not evicted: %v", env.fetch.direct)
	}
}

func TestNewKeyringRejects(t *testing.T) {
	t.Parallel()
	k := mustKey(t, "a")
	for name, opts := range map[string]KeyringOptions{
		"notary name":      {Notaries: []Notary{{ServerName: "bad name", Keys: map[KeyID]ed25519.PublicKey{k.ID: k.Public()}}}},
		"notary no keys":   {Notaries: []Notary{{ServerName: "n.example"}}},
		"notary short key": {Notaries: []Notary{{ServerName: "n.example", Keys: map[KeyID]ed25519.PublicKey{k.ID: k.Public()[:5]}}}},
		"notary key id":    {Notaries: []Notary{{ServerName: "n.example", Keys: map[KeyID]ed25519.PublicKey{"rsa:1": k.Public()}}}},
		"pinned name":      {Pinned: map[string]map[KeyID]ed25519.PublicKey{"a b": {k.ID: k.Public()}}},
		"pinned empty":     {Pinned: map[string]map[KeyID]ed25519.PublicKey{"p.example": {}}},
		"pinned short":     {Pinned: map[string]map[KeyID]ed25519.PublicKey{"p.example": {k.ID: nil}}},
	} {
		if _, err := NewKeyring(opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
