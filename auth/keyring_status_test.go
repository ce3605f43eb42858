package auth

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestKeyringFailing: Failing lists the servers whose last fetch failed,
// most recently used first, with the cause and the retry time, counts all
// of them past the limit, and forgets a server once a fetch succeeds.
func TestKeyringFailing(t *testing.T) {
	t.Parallel()
	env := newRing(t, nil)
	good := newOrigin(t, "good.example", "a")
	env.fetch.set(good.name, good.doc(t, testNow.Add(24*time.Hour)), nil)
	ctx := context.Background()
	if _, err := env.ring.VerifyKey(ctx, good.name, good.key.ID); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"down1.example", "down2.example", "down3.example"} {
		if _, err := env.ring.VerifyKey(ctx, s, "ed25519:a"); err == nil {
			t.Fatalf("%s: no error", s)
		}
		env.clock.Advance(time.Second)
	}
	env.clock.Advance(time.Second)
	if _, err := env.ring.VerifyKey(ctx, "down3.example", "ed25519:a"); err == nil { // in backoff
		t.Fatal("no error in backoff")
	}

	total, list := env.ring.Failing(2)
	if total != 3 || len(list) != 2 {
		t.Fatalf("total %d, listed %d", total, len(list))
	}
	f := list[0]
	if f.Server != "down3.example" || list[1].Server != "down2.example" {
		t.Fatalf("order %s, %s", f.Server, list[1].Server)
	}
	if f.Failures != 1 || f.HasKeys || f.Err == nil || !strings.Contains(f.Err.Error(), "connection refused") {
		t.Fatalf("entry %+v", f)
	}
	if want := testNow.Add(2*time.Second + DefaultBackoffMin); !f.RetryAt.Equal(want) {
		t.Fatalf("retry at %v, want %v", f.RetryAt, want)
	}
	if !f.LastUsed.Equal(env.clock.Now()) {
		t.Fatalf("last used %v, want %v", f.LastUsed, env.clock.Now())
	}

	o := newOrigin(t, "down1.example", "a")
	env.fetch.set(o.name, o.doc(t, env.clock.Now().Add(24*time.Hour)), nil)
	env.clock.Advance(DefaultBackoffMin)
	if _, err := env.ring.VerifyKey(ctx, o.name, o.key.ID); err != nil {
		t.Fatal(err)
	}
	if total, _ := env.ring.Failing(10); total != 2 {
		t.Fatalf("after a success: %d failing", total)
	}
}
