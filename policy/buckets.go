package policy

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/fedgate/fedgate/config"
)

// numShards splits every limiter's state so that concurrent requests for
// different keys rarely contend on one lock. A power of two.
const numShards = 64

// DefaultMaxLimiterKeys is the number of keys (addresses, /64 networks,
// origins or destinations) one limiter remembers at most when
// [Options.MaxLimiterKeys] is zero. At roughly 200 bytes a key this bounds
// each limiter to about 13 MB under a flood of distinct keys.
const DefaultMaxLimiterKeys = 65536

// bucketParams is a token bucket's configuration in the form rate uses.
type bucketParams struct {
	limit rate.Limit // tokens per second; 0 means the limit is off
	burst int
}

func paramsOf(l config.Limit) bucketParams {
	if !l.Enabled() {
		return bucketParams{}
	}
	burst := l.Burst
	if burst < 1 {
		burst = 1
	}
	return bucketParams{limit: rate.Limit(l.Rate.PerSecond), burst: burst}
}

func (p bucketParams) on() bool { return p.limit > 0 }

// bucket is one key's token bucket.
type bucket struct {
	lim      *rate.Limiter
	params   bucketParams // what lim was last configured with
	lastUsed int64        // unix nanoseconds of the injected clock
}

// full reports whether the bucket holds a full burst, in which case
// forgetting it loses nothing: a new bucket starts full.
func (b *bucket) full(now time.Time) bool {
	return b.lim.TokensAt(now) >= float64(b.lim.Burst())
}

// bucketStore holds the token buckets of one limiter, keyed by byte
// strings (an address, a lower-cased server name), in shards chosen by a
// seeded hash so that keys cannot be crafted to pile into one shard. It
// remembers at most maxKeys keys (rounded up to a multiple of numShards).
// Safe for concurrent use.
type bucketStore struct {
	seed     maphash.Seed
	perShard int
	shards   [numShards]bucketShard
}

type bucketShard struct {
	mu sync.Mutex
	m  map[string]*bucket
	_  [40]byte // keep neighbouring shard locks off one cache line
}

func newBucketStore(maxKeys int) *bucketStore {
	s := &bucketStore{seed: maphash.MakeSeed(), perShard: (maxKeys + numShards - 1) / numShards}
	if s.perShard < 1 {
		s.perShard = 1
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*bucket)
	}
	return s
}

// hashKey picks the shard of key.
func hashKey(seed maphash.Seed, key []byte) uint64 {
	return maphash.Bytes(seed, key) & (numShards - 1)
}

func (s *bucketStore) shard(key []byte) *bucketShard {
	return &s.shards[hashKey(s.seed, key)]
}

// take takes one token from key's bucket. When the bucket is empty it
// returns false and how long until a token is available. since is when p
// took effect: a bucket still configured otherwise is switched to p as of
// that instant, so the time between a reload and the key's next request
// accrues at the new rate. It allocates only when the key is new.
func (s *bucketStore) take(key []byte, p bucketParams, since, now time.Time, idle time.Duration) (bool, time.Duration) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[string(key)]
	if b == nil {
		if len(sh.m) >= s.perShard {
			sh.evict(now, idle, s.perShard)
		}
		b = &bucket{lim: rate.NewLimiter(p.limit, p.burst), params: p}
		sh.m[string(key)] = b
	} else if b.params != p {
		// The configuration changed: keep the tokens, adopt the new rate.
		b.lim.SetLimitAt(since, p.limit)
		b.lim.SetBurstAt(since, p.burst)
		b.params = p
	}
	b.lastUsed = now.UnixNano()
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	return false, retryAfter(b.lim.TokensAt(now), p.limit)
}

// retryAfter is how long until tokens reaches 1 at limit tokens per second,
// at least a millisecond.
func retryAfter(tokens float64, limit rate.Limit) time.Duration {
	if limit <= 0 {
		return time.Hour
	}
	secs := (1 - tokens) / float64(limit)
	if secs > 3600 || math.IsNaN(secs) {
		return time.Hour
	}
	d := time.Duration(math.Ceil(secs * float64(time.Second)))
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// evict forgets buckets that carry no information (full) or that have not
// been used for idle. When that does not bring the shard below limit (a
// flood of keys all in use), it forgets arbitrary buckets down to 7/8 of
// limit: those keys get a fresh burst, which is the price of bounded
// memory. Called with sh.mu held.
func (sh *bucketShard) evict(now time.Time, idle time.Duration, limit int) int {
	cutoff := now.Add(-idle).UnixNano()
	n := 0
	for k, b := range sh.m {
		if (idle > 0 && b.lastUsed < cutoff) || b.full(now) {
			delete(sh.m, k)
			n++
		}
	}
	if limit > 0 && len(sh.m) >= limit {
		target := limit - limit/8 - 1
		for k := range sh.m {
			if len(sh.m) <= target {
				break
			}
			delete(sh.m, k)
			n++
		}
	}
	return n
}

// sweep evicts idle and full buckets from every shard and returns how many
// it forgot.
func (s *bucketStore) sweep(now time.Time, idle time.Duration) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.evict(now, idle, 0)
		sh.mu.Unlock()
	}
	return n
}

// len returns the number of keys remembered.
func (s *bucketStore) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
