package cluster_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// seen records what a Backoff's Run applies.
type seen struct {
	mu sync.Mutex
	m  map[string]cluster.BackoffEntry
}

func (s *seen) apply(dest string, e cluster.BackoffEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[dest] = e
}

func (s *seen) get(dest string) (cluster.BackoffEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[dest]
	return e, ok
}

func runBackoff(t *testing.T, b *cluster.Backoff) *seen {
	s := &seen{m: map[string]cluster.BackoffEntry{}}
	fedtest.RunUntilCleanup(t, func(ctx context.Context) { b.Run(ctx, s.apply) })
	return s
}

func TestBackoffShared(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	ca, cb := newClient(t, r, "a"), newClient(t, r, "b")
	a, b := ca.Backoff(), cb.Backoff()
	sa, sb := runBackoff(t, a), runBackoff(t, b)
	until := time.UnixMilli(time.Now().Add(time.Minute).UnixMilli())
	e := cluster.BackoffEntry{Kind: cluster.BackoffFailing, Failures: 3, Until: until, SetAt: time.UnixMilli(time.Now().UnixMilli())}
	waitFor(t, "a published entry to reach b", 5*time.Second, func() bool {
		a.Publish("Down.Example", e) // again until b is subscribed
		got, ok := sb.get("down.example")
		return ok && got == e
	})
	// A late subscriber reads what is stored.
	cc := newClient(t, r, "c")
	sc := runBackoff(t, cc.Backoff())
	waitFor(t, "the stored entry to reach a new instance", 5*time.Second, func() bool {
		got, ok := sc.get("down.example")
		return ok && got == e
	})
	// A clear reaches the others and removes the stored entry.
	b.Publish("down.example", cluster.BackoffEntry{Kind: cluster.BackoffCleared, SetAt: time.Now()})
	waitFor(t, "the clear to reach a", 5*time.Second, func() bool {
		got, ok := sa.get("down.example")
		return ok && got.Kind == cluster.BackoffCleared
	})
	waitFor(t, "the stored entry to go", 5*time.Second, func() bool { return r.Do("EXISTS test:backoff:down.example") == ":0" })
	// Redis restarted: subscribers come back by themselves.
	r.Kill()
	r.Start()
	waitFor(t, "a message after a restart", 15*time.Second, func() bool {
		a.Publish("again.example", e)
		_, ok := sb.get("again.example")
		return ok
	})
}
