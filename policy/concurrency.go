package policy

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// slotStore counts the requests each origin has in flight and queues the
// ones waiting for a slot. Entries with nothing in flight carry no state and
// are forgotten by sweeps or when a shard is full; entries in use never
// are, so a release always finds its entry. Safe for concurrent use.
type slotStore struct {
	seed     maphash.Seed
	perShard int
	shards   [numShards]slotShard
	// limit returns the current cap (0 = unlimited); read on every
	// acquire and release so that a reload applies at once.
	limit func() int
}

type slotShard struct {
	mu sync.Mutex
	m  map[string]*slots
	_  [40]byte
}

// slots is one origin's in-flight count and wait queue, guarded by its
// shard's lock.
type slots struct {
	sh       *slotShard
	inflight int
	waiters  []*slotWaiter // FIFO
	lastUsed int64
	release  func() // made once per entry, so acquiring does not allocate
}

type slotWaiter struct {
	ready   chan struct{} // closed when granted
	granted bool
}

func newSlotStore(maxKeys int, limit func() int) *slotStore {
	s := &slotStore{seed: maphash.MakeSeed(), perShard: (maxKeys + numShards - 1) / numShards, limit: limit}
	if s.perShard < 1 {
		s.perShard = 1
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*slots)
	}
	return s
}

// acquireResult says how an acquire ended.
type acquireResult uint8

const (
	acquired  acquireResult = iota
	queueFull               // over the cap and the wait queue is full
	timedOut                // waited the whole wait, or ctx ended
	overCap                 // over the cap; caller asked not to wait (dry run)
)

// acquire takes a slot for key. Over the cap it waits up to wait (real
// time) in a queue of at most cap waiters. With force, an over-the-cap
// request takes a slot anyway and reports overCap (dry run). On success the
// returned func releases the slot; it must be called exactly once.
func (s *slotStore) acquire(ctx context.Context, key []byte, limit int, wait time.Duration, force bool, now time.Time) (func(), acquireResult) {
	sh := &s.shards[hashKey(s.seed, key)]
	sh.mu.Lock()
	e := sh.m[string(key)]
	if e == nil {
		if len(sh.m) >= s.perShard {
			sh.evict(0, s.perShard)
		}
		e = &slots{sh: sh}
		e.release = func() { s.release(e) }
		sh.m[string(key)] = e
	}
	e.lastUsed = now.UnixNano()
	if e.inflight < limit {
		e.inflight++
		sh.mu.Unlock()
		return e.release, acquired
	}
	if force {
		e.inflight++
		sh.mu.Unlock()
		return e.release, overCap
	}
	if wait <= 0 || len(e.waiters) >= limit {
		sh.mu.Unlock()
		return nil, queueFull
	}
	w := &slotWaiter{ready: make(chan struct{})}
	e.waiters = append(e.waiters, w)
	sh.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return e.release, acquired
	case <-t.C:
	case <-ctx.Done():
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if w.granted { // granted while we were giving up: keep it
		return e.release, acquired
	}
	for i, x := range e.waiters {
		if x == w {
			e.waiters = append(e.waiters[:i], e.waiters[i+1:]...)
			break
		}
	}
	return nil, timedOut
}

// release gives e's slot to the first waiter, or frees it. A cap lowered by
// a reload is honoured: slots above it are freed, not handed on.
func (s *slotStore) release(e *slots) {
	limit := s.limit()
	sh := e.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.inflight <= 0 { // released more often than acquired: a caller bug
		return
	}
	if len(e.waiters) > 0 && (limit <= 0 || e.inflight <= limit) {
		w := e.waiters[0]
		e.waiters[0] = nil
		e.waiters = e.waiters[1:]
		w.granted = true
		close(w.ready)
		return
	}
	e.inflight--
}

// evict forgets entries with nothing in flight and no waiters, used or
// not, when a shard is full (limit > 0), and idle ones otherwise.
// Called with sh.mu held.
func (sh *slotShard) evict(cutoff int64, limit int) int {
	n := 0
	for k, e := range sh.m {
		if e.inflight == 0 && len(e.waiters) == 0 && (limit > 0 || e.lastUsed < cutoff) {
			delete(sh.m, k)
			n++
		}
	}
	return n
}

func (s *slotStore) sweep(now time.Time, idle time.Duration) int {
	cutoff := now.Add(-idle).UnixNano()
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.evict(cutoff, 0)
		sh.mu.Unlock()
	}
	return n
}

func (s *slotStore) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
