package discovery

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// expirer is a cache value that knows when it may be dropped.
type expirer interface {
	// droppable reports whether the entry is of no further use at now.
	droppable(now time.Time) bool
}

// boundedCache is a mutex-guarded map with a size cap. Expiry is the
// caller's business (a well-known entry stays useful after it expires, as a
// fallback); the cap drops droppable entries first, then arbitrary ones.
type boundedCache[K comparable, V expirer] struct {
	mu  sync.Mutex
	m   map[K]V
	max int
}

func newBoundedCache[K comparable, V expirer](max int) *boundedCache[K, V] {
	return &boundedCache[K, V]{m: make(map[K]V), max: max}
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	return v, ok
}

func (c *boundedCache[K, V]) put(k K, v V, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for key, old := range c.m {
			if old.droppable(now) {
				delete(c.m, key)
			}
		}
		// Still full: drop arbitrary entries (map order is unspecified),
		// a tenth of the cap at once so that a flood pays this rarely.
		for key := range c.m {
			if len(c.m) < c.max-c.max/10 {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = v
}

// flight is one lookup in progress; every caller asking for the same key
// while it runs waits for it instead of starting another.
type flight[V any] struct {
	done    chan struct{}
	val     V
	err     error
	waiters atomic.Int32 // callers currently waiting (tests observe it)
}

// wait returns the flight's outcome, or ctx's error if ctx ends first; the
// flight itself goes on for the others and fills the cache.
func (f *flight[V]) wait(ctx context.Context) (V, error) {
	f.waiters.Add(1)
	defer f.waiters.Add(-1)
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// flightGroup coalesces concurrent lookups of the same key.
type flightGroup[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*flight[V]
}

// start returns the flight for k, starting fn in a new goroutine if none is
// running. fn must not panic and must bound its own duration.
func (g *flightGroup[K, V]) start(k K, fn func() (V, error)) *flight[V] {
	g.mu.Lock()
	if f, ok := g.m[k]; ok {
		g.mu.Unlock()
		return f
	}
	if g.m == nil {
		g.m = make(map[K]*flight[V])
	}
	f := &flight[V]{done: make(chan struct{})}
	g.m[k] = f
	g.mu.Unlock()
	go g.run(k, f, fn)
	return f
}

func (g *flightGroup[K, V]) run(k K, f *flight[V], fn func() (V, error)) {
	f.val, f.err = fn()
	g.mu.Lock()
	delete(g.m, k)
	g.mu.Unlock()
	close(f.done)
}

// running returns the flight in progress for k, if any.
func (g *flightGroup[K, V]) running(k K) *flight[V] {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[k]
}
