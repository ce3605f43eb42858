package cluster_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
)

func TestLimiterSharedAcrossClients(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	a, b := newClient(t, r, "a").Limiter("example.org"), newClient(t, r, "b").Limiter("example.org")
	ctx := context.Background()
	bucket := []policy.SharedBucket{{Limiter: "per_origin", Key: "remote.example", Rate: 0.5, Burst: 5}}
	allowed := 0
	for i := range 20 {
		l := a
		if i%2 == 1 {
			l = b
		}
		denied, retry, err := l.Take(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		if denied < 0 {
			allowed++
			continue
		}
		if denied != 0 || retry <= 0 || retry > 2*time.Second {
			t.Fatalf("denied %d retry %v, want bucket 0 and a retry within 2s", denied, retry)
		}
	}
	// Burst 5 plus at most one token refilled while the loop ran.
	if allowed < 5 || allowed > 6 {
		t.Fatalf("%d of 20 allowed across two clients, want the burst of 5 (6 with a refill)", allowed)
	}
	// Another namespace has its own buckets.
	if denied, _, err := newClient(t, r, "c").Limiter("other.example").Take(ctx, bucket); err != nil || denied != -1 {
		t.Fatalf("other namespace: denied %d, %v", denied, err)
	}
}

func TestLimiterAllOrNothing(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	l := newClient(t, r, "a").Limiter("ns")
	ctx := context.Background()
	roomy := policy.SharedBucket{Limiter: "per_ip", Key: "192.0.2.1", Rate: 0.001, Burst: 2}
	tight := policy.SharedBucket{Limiter: "class:media", Key: "o.example", Rate: 0.001, Burst: 1}
	if d, _, err := l.Take(ctx, []policy.SharedBucket{roomy, tight}); err != nil || d != -1 {
		t.Fatalf("first take: %d %v", d, err)
	}
	// tight is empty now: a refused request must not cost roomy a token.
	for range 3 {
		if d, _, err := l.Take(ctx, []policy.SharedBucket{roomy, tight}); err != nil || d != 1 {
			t.Fatalf("want bucket 1 refused, got %d %v", d, err)
		}
	}
	if d, _, err := l.Take(ctx, []policy.SharedBucket{roomy}); err != nil || d != -1 {
		t.Fatalf("roomy lost tokens to refused requests: %d %v", d, err)
	}
	// A bucket with no rate is skipped and the index maps back.
	off := policy.SharedBucket{Limiter: "per_origin", Key: "o.example"}
	if d, _, err := l.Take(ctx, []policy.SharedBucket{off, tight}); err != nil || d != 1 {
		t.Fatalf("index with a skipped bucket: %d %v", d, err)
	}
}

func TestLimiterIgnoresGarbage(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	l := newClient(t, r, "a").Limiter("ns")
	r.Do("SET test:rl:ns:per_origin:o.example notanumber")
	r.Do("SET test:rl:ns:per_ip:192.0.2.9 99999999999999999999")
	b := []policy.SharedBucket{
		{Limiter: "per_origin", Key: "o.example", Rate: 1, Burst: 3},
		{Limiter: "per_ip", Key: "192.0.2.9", Rate: 1, Burst: 3},
	}
	// Garbage reads as a fresh bucket; a far-future value as an empty one.
	d, retry, err := l.Take(context.Background(), b)
	if err != nil || d != 1 || retry > 2*time.Second {
		t.Fatalf("got %d %v %v, want bucket 1 empty with a short retry", d, retry, err)
	}
}

func TestLimiterFallsBackWhenRedisDies(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	l := c.Limiter("ns")
	ctx := context.Background()
	b := []policy.SharedBucket{{Limiter: "per_origin", Key: "o.example", Rate: 100, Burst: 100}}
	if _, _, err := l.Take(ctx, b); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	if _, _, err := l.Take(ctx, b); err == nil {
		t.Fatal("take succeeded with Redis killed")
	}
	if c.Up() {
		t.Fatal("still up after a failed round trip")
	}
	// Down: answered at once, without a round trip.
	start := time.Now()
	for range 100 {
		if _, _, err := l.Take(ctx, b); err == nil {
			t.Fatal("take succeeded while down")
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("100 takes while down took %v", d)
	}
	r.Start()
	waitFor(t, "redis up again", 10*time.Second, c.Up)
	if d, _, err := l.Take(ctx, b); err != nil || d != -1 {
		t.Fatalf("after restart: %d %v", d, err)
	}
	st := c.Stats()
	if st.Downs != 1 || st.Fallbacks["rate_limit"] < 100 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLimiterConcurrentCallers: many callers at once, batched into
// pipelines, get exactly the bucket's burst between them, every call gets
// its own answer, and closing the client under load ends every call.
func TestLimiterConcurrentCallers(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	l := c.Limiter("ns")
	ctx := context.Background()
	shared := []policy.SharedBucket{{Limiter: "per_origin", Key: "busy.example", Rate: 0.001, Burst: 1000}}
	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := []policy.SharedBucket{shared[0], {Limiter: "per_ip", Key: "192.0.2." + strconv.Itoa(g), Rate: 1000, Burst: 1000}}
			for range 50 {
				d, _, err := l.Take(ctx, own)
				switch {
				case err != nil:
					t.Error(err)
					return
				case d == -1:
					allowed.Add(1)
				case d == 0:
					denied.Add(1)
				default:
					t.Errorf("denied by bucket %d", d)
					return
				}
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 1000 || denied.Load() != 64*50-1000 {
		t.Fatalf("%d allowed, %d denied; want exactly the burst of 1000 allowed", allowed.Load(), denied.Load())
	}

	// Closing under load: every call returns.
	c2, err := cluster.New(cluster.Options{URL: r.URL, Node: "b", Prefix: "test:"})
	if err != nil {
		t.Fatal(err)
	}
	l2 := c2.Limiter("ns")
	done := make(chan struct{})
	for range 32 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				l2.Take(ctx, shared)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	c2.Close()
	for range 32 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a call did not return after Close")
		}
	}
}

// TestLimiterFallsBackWhenRedisIsSlow: Redis alive but not answering
// within the timeout (CLIENT PAUSE holds every command) gives an error
// within about twice the timeout, marks Redis down, and sharing resumes
// once it answers again.
func TestLimiterFallsBackWhenRedisIsSlow(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := startClient(t, cluster.Options{URL: r.URL, Node: "slow", Prefix: "test:", Timeout: 250 * time.Millisecond})
	ctx := context.Background()
	l := c.Limiter("ns")
	b := []policy.SharedBucket{{Limiter: "per_origin", Key: "o.example", Rate: 100, Burst: 100}}
	if _, _, err := l.Take(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := r.Do("CLIENT PAUSE 2000 ALL"); got != "+OK" {
		t.Fatalf("CLIENT PAUSE: %q", got)
	}
	start := time.Now()
	if _, _, err := l.Take(ctx, b); err == nil {
		t.Fatal("take succeeded while Redis was paused")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("a slow Redis held the call for %v (timeout 250ms)", d)
	}
	if c.Up() {
		t.Fatal("still up after a timeout")
	}
	waitFor(t, "redis up after the pause", 10*time.Second, c.Up)
	if d, _, err := l.Take(ctx, b); err != nil || d != -1 {
		t.Fatalf("after the pause: %d %v", d, err)
	}
}

// TestLimiterScriptCacheLost: Redis forgetting its scripts (a restart,
// SCRIPT FLUSH) costs no request: the batch is sent again as EVAL.
func TestLimiterScriptCacheLost(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	l := c.Limiter("ns")
	b := []policy.SharedBucket{{Limiter: "per_origin", Key: "o.example", Rate: 100, Burst: 100}}
	for i := range 3 {
		if got := r.Do("SCRIPT FLUSH"); got != "+OK" {
			t.Fatalf("SCRIPT FLUSH: %q", got)
		}
		if d, _, err := l.Take(context.Background(), b); err != nil || d != -1 {
			t.Fatalf("take %d after SCRIPT FLUSH: %d %v", i, d, err)
		}
	}
	if st := c.Stats(); st.Fallbacks["rate_limit"] != 0 || st.Errors["rate_limit"] != 0 {
		t.Fatalf("stats %+v", st)
	}
}
