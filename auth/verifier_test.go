package auth

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestKeyringKeepsPreparedKeys: the verifier for a key is built once and
// handed out again; it verifies what crypto/ed25519 verifies.
func TestKeyringKeepsPreparedKeys(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	env.fetch.set(o.name, o.doc(t, testNow.Add(24*time.Hour)), nil)
	v1, err := env.ring.Verifier(context.Background(), o.name, o.key.ID)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := env.ring.Verifier(context.Background(), o.name, o.key.ID)
	if err != nil || v1 != v2 || !v1.Precomputed() || !v1.PublicKey().Equal(o.key.Public()) {
		t.Fatalf("%v: %p %p precomputed %v", err, v1, v2, v1.Precomputed())
	}
	msg := []byte(`{"method":"GET"}`)
	sig := ed25519.Sign(o.key.Private, msg)
	if !v1.Verify(msg, sig) || v1.Verify(append(msg, ' '), sig) {
		t.Fatal("verifier disagrees with the signature")
	}
}

// TestKeyringPrecomputedBudget: no more than MaxPrecomputed keys hold a
// table; evicting a server gives its table back; keys beyond the budget
// still verify.
func TestKeyringPrecomputedBudget(t *testing.T) {
	t.Parallel()
	env := newRing(t, func(o *KeyringOptions) { o.MaxPrecomputed = 2; o.MaxServers = 3 })
	var origins []origin
	for i := range 4 {
		o := newOrigin(t, fmt.Sprintf("o%d.example", i), "a")
		env.fetch.set(o.name, o.doc(t, testNow.Add(24*time.Hour)), nil)
		origins = append(origins, o)
	}
	tables := 0
	for _, o := range origins[:3] {
		v, err := env.ring.Verifier(context.Background(), o.name, o.key.ID)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte(o.name)
		if !v.Verify(msg, ed25519.Sign(o.key.Private, msg)) {
			t.Fatalf("%s: valid signature refused", o.name)
		}
		if v.Precomputed() {
			tables++
		}
	}
	if tables != 2 {
		t.Fatalf("%d tables, want the budget of 2", tables)
	}
	// A fourth server evicts the least recently used (o0, which holds a
	// table): the budget has room again.
	v, err := env.ring.Verifier(context.Background(), origins[3].name, origins[3].key.ID)
	if err != nil || !v.Precomputed() {
		t.Fatalf("after an eviction: %v, precomputed %v", err, v != nil && v.Precomputed())
	}
	if n := precomputedTables(env.ring); n != 2 {
		t.Fatalf("%d tables counted, want 2", n)
	}
}

// TestKeyringRotationReplacesPreparedKey: when a key id names another key
// in a new document, the old prepared key is not handed out.
func TestKeyringRotationReplacesPreparedKey(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	env.fetch.set(o.name, o.doc(t, testNow.Add(time.Hour)), nil)
	v1, err := env.ring.Verifier(context.Background(), o.name, o.key.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Same key id, new key material (a server that lost its key).
	replaced := origin{name: o.name, key: mustKey(t, "a")}
	env.clock.Advance(time.Hour + time.Minute)
	env.fetch.set(o.name, replaced.doc(t, env.clock.Now().Add(time.Hour)), nil)
	v2, err := env.ring.Verifier(context.Background(), o.name, o.key.ID)
	if err != nil || v2 == v1 || !v2.PublicKey().Equal(replaced.key.Public()) {
		t.Fatalf("%v: got the old key", err)
	}
	if n := precomputedTables(env.ring); n != 1 {
		t.Fatalf("%d tables counted after the replacement, want 1", n)
	}
}

// TestKeyringPreparesConcurrently: many requests for a new key at once
// get one working verifier and count one table.
func TestKeyringPreparesConcurrently(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	o := newOrigin(t, "o.example", "a")
	env.fetch.set(o.name, o.doc(t, testNow.Add(24*time.Hour)), nil)
	msg := []byte("m")
	sig := ed25519.Sign(o.key.Private, msg)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			v, err := env.ring.Verifier(context.Background(), o.name, o.key.ID)
			if err != nil || !v.Verify(msg, sig) {
				t.Errorf("%v", err)
			}
		})
	}
	wg.Wait()
	if n := precomputedTables(env.ring); n != 1 {
		t.Fatalf("%d tables counted, want 1", n)
	}
}

// TestVerifyRequestWithMatchesVerifyRequestContent: both ways of checking
// an X-Matrix header give the same answers on the spec-derived vectors
// and on tampered ones.
func TestVerifyRequestWithMatchesVerifyRequestContent(t *testing.T) {
	t.Parallel()
	key := mustKey(t, "1")
	v, err := NewPrecomputedVerifier(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"a":1}`)
	x, err := SignRequest(key, "PUT", "/_matrix/federation/v1/send/1", "origin.test", "gw.test", body)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		uri, dest string
		body      []byte
	}{
		{"/_matrix/federation/v1/send/1", "gw.test", body},
		{"/_matrix/federation/v1/send/2", "gw.test", body},
		{"/_matrix/federation/v1/send/1", "other.test", body},
		{"/_matrix/federation/v1/send/1", "gw.test", []byte(`{"a":2}`)},
		{"/_matrix/federation/v1/send/1", "gw.test", nil}, // no content
		{"/_matrix/federation/v1/send/1", "gw.test", []byte(`{"a":1} `)},
	} {
		a := VerifyRequestContent(x, "PUT", tt.uri, tt.dest, tt.body, key.Public())
		b := VerifyRequestWith(x, "PUT", tt.uri, tt.dest, tt.body, v)
		if KindOf(a) != KindOf(b) || (a == nil) != (b == nil) {
			t.Fatalf("%+v: %v vs %v", tt, a, b)
		}
	}
	// A request without a body (the object has no "content"), both ways.
	get, err := SignRequest(key, "GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Agw.test", "origin.test", "gw.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, content := range [][]byte{nil, {}} {
		if err := VerifyRequestWith(get, "GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Agw.test", "gw.test", content, v); err != nil {
			t.Fatalf("GET: %v", err)
		}
	}
	if err := VerifyRequestWith(get, "GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Agw.test", "gw.test", []byte(`{}`), v); KindOf(err) != KindBadSignature {
		t.Fatalf("GET checked with content: %v", err)
	}
	if err := VerifyRequestWith(x, "PUT", "/_matrix/federation/v1/send/1", "gw.test", body, nil); KindOf(err) != KindUnknownKey {
		t.Fatalf("nil key: %v", err)
	}
}

// precomputedTables is how many precomputed tables k counts.
func precomputedTables(k *Keyring) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.precomputed
}
