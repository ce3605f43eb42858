package auth

import (
	"context"
	"crypto/ed25519"
	"strings"
	"sync"
	"testing"
	"time"
)

// memStore is a SharedKeyStore in memory. It stands for the seam's
// contract, so that the keyring's handling of what a store returns can be
// tested with any content; cluster's tests run the Redis one for real.
type memStore struct {
	mu        sync.Mutex
	m         map[string]SharedKeys
	locked    map[string]bool
	published []SharedKeys
}

func newMemStore() *memStore {
	return &memStore{m: map[string]SharedKeys{}, locked: map[string]bool{}}
}

func (s *memStore) Lookup(_ context.Context, server string) (SharedKeys, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.m[server]
	sk.Fetching = s.locked[server]
	return sk, nil
}

func (s *memStore) LockFetch(_ context.Context, server string) (func(context.Context, SharedKeys) error, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked[server] {
		return nil, false, nil
	}
	s.locked[server] = true
	return func(ctx context.Context, sk SharedKeys) error {
		s.mu.Lock()
		delete(s.locked, server)
		s.mu.Unlock()
		return s.Publish(ctx, server, sk)
	}, true, nil
}

func (s *memStore) Publish(_ context.Context, server string, sk SharedKeys) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published = append(s.published, sk)
	cur := s.m[server]
	if sk.Document != nil {
		cur.Document, cur.Checked = sk.Document, sk.Checked
	}
	cur.Failures, cur.RetryAt, cur.Reason = sk.Failures, sk.RetryAt, sk.Reason
	s.m[server] = cur
	return nil
}

// testSealer seals with a fixed key of "gw.example".
type testSealer struct{ key SigningKey }

func (s testSealer) Seal(doc []byte) ([]byte, error) { return AddSignature(doc, "gw.example", s.key) }
func (s testSealer) Open(doc []byte) ([]byte, error) {
	if err := CheckNotarySignature(doc, "gw.example", map[KeyID]ed25519.PublicKey{s.key.ID: s.key.Public()}); err != nil {
		return nil, err
	}
	return RemoveSignatures(doc, "gw.example")
}

func sharedOpts(t testing.TB, store SharedKeyStore) (func(*KeyringOptions), testSealer) {
	s := testSealer{key: mustKey(t, "gw")}
	return func(o *KeyringOptions) { o.Shared, o.SharedSealer = store, s }, s
}

func seal(t testing.TB, s testSealer, doc []byte) []byte {
	t.Helper()
	b, err := s.Seal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *memStore) put(server string, sk SharedKeys) {
	s.mu.Lock()
	s.m[server] = sk
	s.mu.Unlock()
}

func TestKeyringSharedDocumentAdopted(t *testing.T) {
	t.Parallel()
	store := newMemStore()
	mod, sealer := sharedOpts(t, store)
	env := newRing(t, mod)
	o := newOrigin(t, "o.example", "a")
	store.put(o.name, SharedKeys{Document: seal(t, sealer, o.doc(t, testNow.Add(24*time.Hour))), Checked: testNow.Add(-time.Minute)})
	pub, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID)
	if err != nil || !pub.Equal(o.key.Public()) {
		t.Fatalf("VerifyKey: %v", err)
	}
	if n := env.fetch.count(o.name); n != 0 || env.events.count(EventSharedHit) != 1 {
		t.Fatalf("%d fetches, %d shared hits; want the stored document used", n, env.events.count(EventSharedHit))
	}
}

func TestKeyringSharedUntrusted(t *testing.T) {
	t.Parallel()
	o := newOrigin(t, "o.example", "a")
	mallory := newOrigin(t, "o.example", "m")
	sealer := testSealer{key: mustKey(t, "gw")}
	other := testSealer{key: mustKey(t, "other")}
	good := o.doc(t, testNow.Add(24*time.Hour))
	sealed := seal(t, sealer, good)
	tampered := strings.Replace(string(sealed), `"valid_until_ts":`, `"valid_until_ts":9`, 1)
	for name, sk := range map[string]SharedKeys{
		"tampered":         {Document: []byte(tampered), Checked: testNow},
		"planted, no seal": {Document: mallory.doc(t, testNow.Add(24*time.Hour)), Checked: testNow},
		"planted, sealed by a stranger": {
			Document: seal(t, other, mallory.doc(t, testNow.Add(24*time.Hour))), Checked: testNow},
		"checked later":   {Document: sealed, Checked: testNow.Add(time.Hour)},
		"expired":         {Document: seal(t, sealer, o.doc(t, testNow.Add(-time.Hour))), Checked: testNow.Add(-2 * time.Hour)},
		"not a document":  {Document: []byte("{]"), Checked: testNow},
		"other server":    {Document: seal(t, sealer, newOrigin(t, "x.example", "a").doc(t, testNow.Add(time.Hour))), Checked: testNow},
		"too large":       {Document: make([]byte, MaxKeyDocumentSize+1), Checked: testNow},
		"zero check time": {Document: sealed},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := newMemStore()
			env := newRing(t, func(opts *KeyringOptions) { opts.Shared, opts.SharedSealer = store, sealer })
			env.fetch.set(o.name, good, nil)
			store.put(o.name, sk)
			pub, err := env.ring.VerifyKey(context.Background(), o.name, o.key.ID)
			if err != nil || !pub.Equal(o.key.Public()) {
				t.Fatalf("VerifyKey: %v", err)
			}
			if n := env.fetch.count(o.name); n != 1 {
				t.Fatalf("%d fetches: the stored document should have been refused and fetched instead", n)
			}
			env.ring.Close() // waits for the fetch goroutine, which publishes
			store.mu.Lock()
			defer store.mu.Unlock()
			if len(store.published) != 1 {
				t.Fatalf("published %+v, want the fetched document, sealed", store.published)
			}
			if _, err := sealer.Open(store.published[0].Document); err != nil {
				t.Fatalf("published %+v, want the fetched document, sealed", store.published)
			}
		})
	}
}

func TestKeyringSharedBackoffBounded(t *testing.T) {
	t.Parallel()
	store := newMemStore()
	mod, _ := sharedOpts(t, store)
	env := newRing(t, func(o *KeyringOptions) { mod(o); o.BackoffMax = time.Minute })
	reason := "Could not get keys\x00\x1b[31m" + strings.Repeat("x", 4096)
	store.put("down.example", SharedKeys{Failures: 1 << 30, RetryAt: testNow.Add(365 * 24 * time.Hour), Reason: reason})
	_, err := env.ring.VerifyKey(context.Background(), "down.example", "ed25519:a")
	e, ok := err.(*Error)
	if !ok || e.Kind != KindKeyFetchFailed {
		t.Fatalf("error %v, want a key fetch failure from the shared backoff", err)
	}
	if env.fetch.count("down.example") != 0 {
		t.Fatal("fetched an origin another instance backs off")
	}
	if len(e.Msg) > maxSharedReason+64 || strings.ContainsAny(e.Msg, "\x00\x1b") {
		t.Fatalf("reason not cleaned: %d bytes %q", len(e.Msg), e.Msg[:40])
	}
	env.ring.mu.Lock()
	ent := env.ring.servers["down.example"]
	retry, failures := ent.retryAt, ent.failures
	env.ring.mu.Unlock()
	if retry.After(testNow.Add(time.Minute)) || failures > maxSharedFailures {
		t.Fatalf("backoff taken over unbounded: retry %v failures %d", retry, failures)
	}
}

func TestKeyringSharedFailurePublished(t *testing.T) {
	t.Parallel()
	store := newMemStore()
	mod, _ := sharedOpts(t, store)
	env := newRing(t, mod)
	env.fetch.set("down.example", nil, context.DeadlineExceeded)
	if _, err := env.ring.VerifyKey(context.Background(), "down.example", "ed25519:a"); err == nil {
		t.Fatal("no error")
	}
	env.ring.Close() // waits for the fetch goroutine, which publishes
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.published) != 1 {
		t.Fatalf("published %d outcomes", len(store.published))
	}
	p := store.published[0]
	if p.Failures != 1 || !p.RetryAt.After(testNow) || p.Reason == "" || p.Document != nil {
		t.Fatalf("published %+v", p)
	}
	if store.locked["down.example"] {
		t.Fatal("fetch lock not released")
	}
}
