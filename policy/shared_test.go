package policy_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
)

// recordingShared is a SharedLimiter that records what it is asked and
// answers as told: it stands for the seam, not for Redis (cluster's own
// tests run the real script against a real redis-server).
type recordingShared struct {
	mu     sync.Mutex
	calls  [][]policy.SharedBucket
	denied int
	retry  time.Duration
	err    error
}

func (r *recordingShared) Take(_ context.Context, b []policy.SharedBucket) (int, time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, append([]policy.SharedBucket(nil), b...))
	return r.denied, r.retry, r.err
}

func newSharedEnv(t *testing.T, extra string, shared policy.SharedLimiter) *policy.Limiters {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: newClock(), log: &fedtest.SyncBuffer{}}
	o := e.optionsFor(loadConfig(t, e.dir, extra))
	o.Shared = shared
	eng, err := policy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return eng.Limiters()
}

const sharedLimits = "[rate_limit]\nper_ip = { rate = \"10/s\", burst = 20 }\nper_origin = { rate = \"2/s\", burst = 4 }\nexempt = [\"friend.example\"]\n[rate_limit.classes]\nmedia = { rate = \"1/s\", burst = 2 }\n"

func TestAllowVerifiedOneCall(t *testing.T) {
	t.Parallel()
	rec := &recordingShared{denied: -1}
	l := newSharedEnv(t, sharedLimits, rec)
	ctx := context.Background()
	media := endpoint(t, "GET", "/_matrix/media/v3/download/a.example/abc")
	if r := l.AllowVerified(ctx, netip.MustParseAddr("2001:db8:1:2:3::4"), "Remote.Example", media); !r.Allowed {
		t.Fatalf("allowed by the store, refused: %+v", r)
	}
	if len(rec.calls) != 1 {
		t.Fatalf("%d calls to the store, want one per request", len(rec.calls))
	}
	want := []policy.SharedBucket{
		{Limiter: "per_ip", Key: "2001:db8:1:2::/64", Rate: 10, Burst: 20},
		{Limiter: "per_origin", Key: "remote.example", Rate: 2, Burst: 4},
		{Limiter: "class:media", Key: "remote.example", Rate: 1, Burst: 2},
	}
	if got := rec.calls[0]; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("buckets\n got %+v\nwant %+v", got, want)
	}
	// Exempt origins and requests without X-Matrix take per_ip only.
	l.AllowVerified(ctx, netip.MustParseAddr("192.0.2.7"), "friend.example", media)
	l.AllowVerified(ctx, netip.MustParseAddr("::ffff:192.0.2.8"), "", nil)
	for i, key := range []string{"192.0.2.7", "192.0.2.8"} {
		got := rec.calls[1+i]
		if len(got) != 1 || got[0].Limiter != "per_ip" || got[0].Key != key {
			t.Fatalf("call %d: %+v", i+1, got)
		}
	}
}

func TestAllowVerifiedDenials(t *testing.T) {
	t.Parallel()
	rec := &recordingShared{}
	l := newSharedEnv(t, sharedLimits, rec)
	ctx := context.Background()
	media := endpoint(t, "GET", "/_matrix/media/v3/download/a.example/abc")
	peer := netip.MustParseAddr("192.0.2.1")
	for i, tc := range []struct{ limiter, reason string }{
		{"per_ip", policy.ReasonRatePerIP},
		{"per_origin", policy.ReasonRatePerOrigin},
		{"class:media", policy.ReasonRateClass},
	} {
		rec.denied, rec.retry = i, 1500*time.Millisecond
		r := l.AllowVerified(ctx, peer, "remote.example", media)
		if r.Allowed || r.Limiter != tc.limiter || r.Reason != tc.reason || r.RetryAfter != 1500*time.Millisecond || r.Msg == "" {
			t.Fatalf("denied bucket %d: %+v", i, r)
		}
	}
}

func TestAllowVerifiedFallsBackToLocal(t *testing.T) {
	t.Parallel()
	rec := &recordingShared{err: errors.New("redis down")}
	l := newSharedEnv(t, sharedLimits, rec)
	ctx := context.Background()
	peer := netip.MustParseAddr("192.0.2.1")
	// The store fails: the local per_origin bucket (burst 4) decides.
	allowed := 0
	for range 10 {
		if l.AllowVerified(ctx, peer, "remote.example", nil).Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("%d allowed with the store down, want the local burst of 4", allowed)
	}
	if r := l.AllowVerified(ctx, peer, "", nil); !r.Allowed {
		t.Fatalf("unauthenticated request refused with the store down: %+v", r)
	}
}

func TestAllowVerifiedWithoutShared(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sharedLimits)
	l := e.engine.Limiters()
	if l.Shared() {
		t.Fatal("Shared() without a SharedLimiter")
	}
	ctx := context.Background()
	peer := netip.MustParseAddr("192.0.2.1")
	allowed := 0
	for range 10 {
		if l.AllowVerified(ctx, peer, "remote.example", nil).Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("%d allowed, want per_origin's burst of 4 as AllowOrigin gives", allowed)
	}
}

func TestAllowEgressShared(t *testing.T) {
	t.Parallel()
	rec := &recordingShared{denied: 0, retry: time.Second}
	l := newSharedEnv(t, "[rate_limit]\nper_destination = { rate = \"5/s\", burst = 5 }\n", rec)
	r := l.AllowEgress(context.Background(), "Remote.Example")
	if r.Allowed || r.Limiter != policy.LimiterPerDestination || len(rec.calls) != 1 || rec.calls[0][0].Key != "remote.example" {
		t.Fatalf("%+v %+v", r, rec.calls)
	}
	rec.err = errors.New("down")
	if r := l.AllowEgress(context.Background(), "remote.example"); !r.Allowed {
		t.Fatalf("local bucket refused the first request: %+v", r)
	}
}
