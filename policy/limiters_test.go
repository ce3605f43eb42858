package policy_test

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/policy"
)

func wantLimit(t testing.TB, what string, r policy.LimitResult, limiter string, dryRun bool) {
	t.Helper()
	switch {
	case limiter == "":
		if !r.Allowed || r.Limited() || r.DryRun {
			t.Errorf("%s: want allowed, got %+v", what, r)
		}
	case r.Limiter != limiter:
		t.Errorf("%s: limiter %q, want %q (%+v)", what, r.Limiter, limiter, r)
	case r.Allowed != dryRun || r.DryRun != dryRun:
		t.Errorf("%s: allowed %v dry run %v, want %v (%+v)", what, r.Allowed, r.DryRun, dryRun, r)
	case r.RetryAfter <= 0 || r.Msg == "" || r.Reason == "":
		t.Errorf("%s: incomplete result %+v", what, r)
	}
}

func endpoint(t testing.TB, method, path string) *endpoints.Endpoint {
	t.Helper()
	m, _ := match(t, method, path)
	return m.Endpoint
}

func TestPerIPLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[rate_limit]\nper_ip = { rate = \"1/s\", burst = 2 }\n")
	l := e.engine.Limiters()
	a := mustAddr("192.0.2.1")
	wantLimit(t, "1st", l.AllowIP(a), "", false)
	wantLimit(t, "2nd", l.AllowIP(a), "", false)
	r := l.AllowIP(a)
	wantLimit(t, "3rd", r, "per_ip", false)
	if r.Reason != "rate_per_ip" || r.RetryAfter != time.Second {
		t.Errorf("3rd: %+v, want rate_per_ip after 1s", r)
	}
	e.clock.Advance(500 * time.Millisecond)
	if r := l.AllowIP(a); r.RetryAfter != 500*time.Millisecond {
		t.Errorf("after 0.5s: retry after %v, want 500ms", r.RetryAfter)
	}
	e.clock.Advance(500 * time.Millisecond)
	wantLimit(t, "after 1s", l.AllowIP(a), "", false)
	wantLimit(t, "other address", l.AllowIP(mustAddr("192.0.2.2")), "", false)
	// IPv4-mapped IPv6 is the same IPv4 address.
	wantLimit(t, "mapped", l.AllowIP(mustAddr("::ffff:192.0.2.1")), "per_ip", false)

	// IPv6 addresses share a bucket per /64.
	wantLimit(t, "v6 a", l.AllowIP(mustAddr("2001:db8:1:2::1")), "", false)
	wantLimit(t, "v6 b", l.AllowIP(mustAddr("2001:db8:1:2:ffff::9")), "", false)
	wantLimit(t, "v6 same /64", l.AllowIP(mustAddr("2001:db8:1:2::77")), "per_ip", false)
	wantLimit(t, "v6 next /64", l.AllowIP(mustAddr("2001:db8:1:3::1")), "", false)

	if st := e.engine.Stats(); st.Denied["rate_per_ip"] != 4 {
		t.Errorf("rate_per_ip counted %d times, want 4", st.Denied["rate_per_ip"])
	}
}

func TestPerOriginAndClassLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `[rate_limit]
per_origin = { rate = "10/s", burst = 3 }
exempt = ["*.trusted.example"]
[rate_limit.classes]
media = { rate = "1/m", burst = 1 }
send = { rate = "0" }
`)
	l := e.engine.Limiters()
	media := endpoint(t, "GET", "/_matrix/federation/v1/media/download/x")
	send := endpoint(t, "PUT", "/_matrix/federation/v1/send/1")

	wantLimit(t, "media 1", l.AllowOrigin("remote.org", media), "", false)
	r := l.AllowOrigin("Remote.ORG", media) // same bucket, any case
	wantLimit(t, "media 2", r, "class:media", false)
	if r.Reason != "rate_class" || r.RetryAfter != time.Minute {
		t.Errorf("media 2: %+v", r)
	}
	wantLimit(t, "send after media", l.AllowOrigin("remote.org", send), "", false)
	// per_origin: 3 tokens, all used now (media 1, media 2, send).
	wantLimit(t, "per origin", l.AllowOrigin("remote.org", send), "per_origin", false)
	wantLimit(t, "nil endpoint", l.AllowOrigin("remote.org", nil), "per_origin", false)
	wantLimit(t, "other origin", l.AllowOrigin("other.org", media), "", false)
	for i := range 20 {
		wantLimit(t, "exempt "+strconv.Itoa(i), l.AllowOrigin("hs.trusted.example", media), "", false)
	}
	e.clock.Advance(100 * time.Millisecond)
	wantLimit(t, "refilled", l.AllowOrigin("remote.org", send), "", false)
}

func TestPerDestinationLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[rate_limit]\nper_destination = { rate = \"2/s\", burst = 1 }\n")
	l := e.engine.Limiters()
	wantLimit(t, "1st", l.AllowDestination("remote.org"), "", false)
	r := l.AllowDestination("REMOTE.org")
	wantLimit(t, "2nd", r, "per_destination", false)
	if r.Reason != "rate_per_destination" || r.RetryAfter != 500*time.Millisecond {
		t.Errorf("2nd: %+v", r)
	}
	wantLimit(t, "other", l.AllowDestination("other.org"), "", false)
}

func TestLimitsOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `[rate_limit]
per_ip = { rate = "0" }
per_origin = { rate = "0" }
per_destination = { rate = "0" }
concurrent_per_origin = 0
`)
	l := e.engine.Limiters()
	for range 1000 {
		wantLimit(t, "ip", l.AllowIP(mustAddr("192.0.2.1")), "", false)
		wantLimit(t, "origin", l.AllowOrigin("a.org", nil), "", false)
		wantLimit(t, "dest", l.AllowDestination("a.org"), "", false)
		release, r := l.AcquireOrigin(context.Background(), "a.org")
		wantLimit(t, "concurrent", r, "", false)
		release()
	}
}

func TestLimitsDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `[policy]
dry_run = true
[rate_limit]
per_ip = { rate = "1/h", burst = 1 }
per_origin = { rate = "1/h", burst = 1 }
concurrent_per_origin = 1
`)
	l := e.engine.Limiters()
	l.AllowIP(mustAddr("192.0.2.1"))
	wantLimit(t, "ip", l.AllowIP(mustAddr("192.0.2.1")), "per_ip", true)
	l.AllowOrigin("a.org", nil)
	wantLimit(t, "origin", l.AllowOrigin("a.org", nil), "per_origin", true)
	rel1, r1 := l.AcquireOrigin(context.Background(), "a.org")
	wantLimit(t, "slot 1", r1, "", false)
	rel2, r2 := l.AcquireOrigin(context.Background(), "a.org")
	wantLimit(t, "slot 2", r2, "concurrent_per_origin", true)
	rel2()
	rel1()
	st := e.engine.Stats()
	for _, reason := range []string{"rate_per_ip", "rate_per_origin", "concurrent_per_origin"} {
		if st.DryRun[reason] != 1 || st.Denied[reason] != 0 {
			t.Errorf("%s: dry run %d, denied %d", reason, st.DryRun[reason], st.Denied[reason])
		}
	}
}

// TestLimiterStateSurvivesReload: buckets keep their tokens across a
// reload and adopt the new rates.
func TestLimiterStateSurvivesReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[rate_limit]\nper_origin = { rate = \"1/h\", burst = 2 }\n")
	l := e.engine.Limiters()
	l.AllowOrigin("a.org", nil)
	l.AllowOrigin("a.org", nil)
	wantLimit(t, "exhausted", l.AllowOrigin("a.org", nil), "per_origin", false)
	if err := e.update("[rate_limit]\nper_origin = { rate = \"1/h\", burst = 2 }\n"); err != nil {
		t.Fatal(err)
	}
	if e.engine.Limiters() != l {
		t.Fatal("Limiters changed identity across Update")
	}
	wantLimit(t, "still exhausted after reload", l.AllowOrigin("a.org", nil), "per_origin", false)
	if err := e.update("[rate_limit]\nper_origin = { rate = \"10/s\", burst = 2 }\n"); err != nil {
		t.Fatal(err)
	}
	// The new rate applies from the reload on, not from the key's next
	// request.
	e.clock.Advance(100 * time.Millisecond)
	wantLimit(t, "new rate applies", l.AllowOrigin("a.org", nil), "", false)
	wantLimit(t, "one token only", l.AllowOrigin("a.org", nil), "per_origin", false)
}

func TestConcurrentPerOrigin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[rate_limit]\nconcurrent_per_origin = 2\nconcurrent_wait = \"1h\"\nexempt = [\"trusted.example\"]\n")
	l := e.engine.Limiters()
	ctx := context.Background()
	rel1, r := l.AcquireOrigin(ctx, "a.org")
	wantLimit(t, "1", r, "", false)
	rel2, r := l.AcquireOrigin(ctx, "A.org")
	wantLimit(t, "2", r, "", false)

	// A third waits in the queue until a slot is released.
	type result struct {
		release func()
		r       policy.LimitResult
	}
	third := make(chan result, 1)
	go func() {
		rel, r := l.AcquireOrigin(ctx, "a.org")
		third <- result{rel, r}
	}()
	waitQueued(t, l, "a.org", 1)
	// A fourth fills the queue (as many waiters as slots); a fifth is
	// turned away at once.
	ctx4, cancel4 := context.WithCancel(ctx)
	fourth := make(chan policy.LimitResult, 1)
	go func() {
		_, r := l.AcquireOrigin(ctx4, "a.org")
		fourth <- r
	}()
	waitQueued(t, l, "a.org", 2)
	_, r = l.AcquireOrigin(ctx, "a.org")
	wantLimit(t, "queue full", r, "concurrent_per_origin", false)
	if r.Reason != "concurrent_per_origin" || r.RetryAfter != time.Second {
		t.Errorf("queue full: %+v", r)
	}
	// Other origins and exempt ones are unaffected.
	relB, r := l.AcquireOrigin(ctx, "b.org")
	wantLimit(t, "other origin", r, "", false)
	relB()
	for range 5 {
		rel, r := l.AcquireOrigin(ctx, "trusted.example")
		wantLimit(t, "exempt", r, "", false)
		defer rel()
	}

	rel1()
	got := <-third
	wantLimit(t, "third after release", got.r, "", false)
	// The fourth gives up when its context ends.
	cancel4()
	wantLimit(t, "fourth cancelled", <-fourth, "concurrent_per_origin", false)
	rel2()
	got.release()
	// Everything released: two new requests get slots at once.
	for range 2 {
		rel, r := l.AcquireOrigin(ctx, "a.org")
		wantLimit(t, "after all released", r, "", false)
		defer rel()
	}
}

func TestConcurrentWaitTimesOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[rate_limit]\nconcurrent_per_origin = 1\nconcurrent_wait = \"20ms\"\n")
	l := e.engine.Limiters()
	rel, r := l.AcquireOrigin(context.Background(), "a.org")
	wantLimit(t, "1", r, "", false)
	release2, r := l.AcquireOrigin(context.Background(), "a.org")
	wantLimit(t, "timed out", r, "concurrent_per_origin", false)
	if release2 != nil {
		t.Error("a refused acquire returned a release func")
	}
	rel()
	rel, r = l.AcquireOrigin(context.Background(), "a.org")
	wantLimit(t, "after release", r, "", false)
	rel()
}

// waitQueued waits until origin has n waiters, yielding between looks; the
// waiters are goroutines that have not necessarily been scheduled yet.
func waitQueued(t *testing.T, l *policy.Limiters, origin string, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for policy.QueuedForTest(l, origin) < n {
		select {
		case <-deadline.C:
			t.Fatalf("%d waiters never queued for %s", n, origin)
		case <-tick.C:
		}
	}
}

// TestLimiterMemoryBounded floods each limiter with 100k distinct keys at
// one instant (no bucket refills, nothing is idle) and checks that it
// remembers at most MaxLimiterKeys, then that a sweep after idle_eviction
// forgets them all.
func TestLimiterMemoryBounded(t *testing.T) {
	t.Parallel()
	const maxKeys, flood = 4096, 100_000
	floods := map[string]func(l *policy.Limiters, media *endpoints.Endpoint, i int){
		"per_ip": func(l *policy.Limiters, _ *endpoints.Endpoint, i int) {
			l.AllowIP(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
			var a16 [16]byte // distinct /64s
			a16[0], a16[1], a16[5], a16[6], a16[7] = 0x20, 0x01, byte(i>>16), byte(i>>8), byte(i)
			l.AllowIP(netip.AddrFrom16(a16))
		},
		"per_origin": func(l *policy.Limiters, media *endpoints.Endpoint, i int) {
			l.AllowOrigin("s"+strconv.Itoa(i)+".flood.example", media)
		},
		"per_destination": func(l *policy.Limiters, _ *endpoints.Endpoint, i int) {
			l.AllowDestination("s" + strconv.Itoa(i) + ".flood.example")
		},
		"concurrent_per_origin": func(l *policy.Limiters, _ *endpoints.Endpoint, i int) {
			rel, _ := l.AcquireOrigin(context.Background(), "s"+strconv.Itoa(i)+".flood.example")
			rel()
		},
	}
	for name, f := range floods {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "")
			o := e.optionsFor(loadConfig(t, e.dir, `[rate_limit]
per_ip = { rate = "1/h", burst = 5 }
per_origin = { rate = "1/h", burst = 5 }
per_destination = { rate = "1/h", burst = 5 }
concurrent_per_origin = 4
idle_eviction = "10m"
[rate_limit.classes]
media = { rate = "1/h", burst = 5 }
`))
			o.MaxLimiterKeys = maxKeys
			eng, err := policy.New(o)
			if err != nil {
				t.Fatal(err)
			}
			l := eng.Limiters()
			media := endpoint(t, "GET", "/_matrix/federation/v1/media/download/x")
			for i := range flood {
				f(l, media, i)
			}
			keys := l.Keys()
			touched := []string{name}
			if name == "per_origin" {
				touched = append(touched, "class:media")
			}
			for _, lim := range touched {
				if n := keys[lim]; n > maxKeys || n == 0 {
					t.Errorf("%s remembers %d keys, want 1 to %d", lim, n, maxKeys)
				}
			}
			e.clock.Advance(11 * time.Minute)
			if n := l.Sweep(); n == 0 {
				t.Error("sweep forgot nothing")
			}
			for lim, n := range l.Keys() {
				if n != 0 {
					t.Errorf("%s still remembers %d keys after idle_eviction", lim, n)
				}
			}
		})
	}
}

// TestSweepForgetsFullBuckets: a bucket that has refilled carries no
// state, so a sweep forgets it even before idle_eviction.
func TestSweepForgetsFullBuckets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[rate_limit]\nper_ip = { rate = \"10/s\", burst = 2 }\nidle_eviction = \"1h\"\n")
	l := e.engine.Limiters()
	l.AllowIP(mustAddr("192.0.2.1"))
	l.AllowIP(mustAddr("192.0.2.1"))
	l.Sweep()
	if n := l.Keys()["per_ip"]; n != 1 {
		t.Fatalf("per_ip has %d keys, want 1 (an empty bucket must be kept)", n)
	}
	e.clock.Advance(time.Second)
	l.Sweep()
	if n := l.Keys()["per_ip"]; n != 0 {
		t.Fatalf("per_ip has %d keys after refilling, want 0", n)
	}
}
