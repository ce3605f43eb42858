package cluster

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fedgate/fedgate/policy"
)

// gcraScript takes one request from every bucket named in KEYS, all or
// none, with the generic cell rate algorithm: a bucket is one number, its
// theoretical arrival time (TAT) in microseconds of Redis's own clock, so
// instances with skewed clocks agree. ARGV holds, per key, the emission
// interval in microseconds (1/rate) and the burst. A request fits when
// max(TAT, now) + interval - burst*interval <= now. Nothing is written
// unless every bucket has room, so a refused request costs no bucket
// anything. It returns {0, 0} when allowed, or {i, wait} where i is the
// 1-based index of the first full bucket and wait the microseconds until
// it has room. Values that are not numbers (or lie further ahead than one
// full burst) are treated as a full bucket's state, never trusted.
const gcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[2*i-1])
  local burst = tonumber(ARGV[2*i])
  local tat = now
  local v = redis.call('GET', KEYS[i])
  if v then
    local x = tonumber(v)
    if x and x > now then tat = x end
  end
  local cap = now + burst * interval
  if tat > cap then tat = cap end
  local new = tat + interval
  local allow_at = new - burst * interval
  if allow_at > now then
    return {i, math.ceil(allow_at - now)}
  end
  tats[i] = new
end
for i = 1, n do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
end
return {0, 0}
`

// gcra is the script; its SHA1 is computed once.
var gcra = redis.NewScript(gcraScript)

// Limiter is a [policy.SharedLimiter] over Redis, for one namespace.
type Limiter struct {
	c  *Client
	ns string // key prefix of this namespace's buckets
}

// Limiter returns the shared rate limiter of namespace: buckets live under
// "<prefix>rl:<namespace>:<limiter>:<key>". The wiring chooses the
// namespace (the gateway uses the server name it fronts, so that each
// hosted server's policy engine has its own buckets); instances that must
// share limits use the same one.
func (c *Client) Limiter(namespace string) *Limiter {
	return &Limiter{c: c, ns: c.key("rl", namespace) + ":"}
}

var errBadReply = errors.New("unexpected reply from the rate limit script")

// Take implements [policy.SharedLimiter]: one script call in one round
// trip, bounded by cluster.timeout (ctx is not waited on: the bound is
// the client's). Concurrent calls are batched (see [Client.await]): the
// calls queued while a batch is in flight go together as one pipeline
// (one write, one read), which keeps the CPU a request costs, fedgate's
// and Redis's, low under load; a lone request still goes at once. While
// Redis is marked down it returns an error at once, without a round trip.
func (l *Limiter) Take(ctx context.Context, buckets []policy.SharedBucket) (int, time.Duration, error) {
	c := l.c
	if !c.up.Load() {
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, errDown
	}
	r := getTake()
	for _, b := range buckets {
		if b.Rate <= 0 {
			continue
		}
		r.keys = append(r.keys, l.ns+b.Limiter+":"+b.Key)
		a := l.c.bucketArgs(b.Rate, b.Burst)
		r.args = append(r.args, a[0], a[1])
	}
	if len(r.keys) == 0 {
		putTake(r)
		return -1, 0, nil
	}
	c.stats.calls[opRateLimit].Add(1)
	if !c.await(r) {
		// Closed while queued: r may still be in a flusher's hands, so it
		// is left to the garbage collector rather than reused.
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, errDown
	}
	res, err := r.res, r.err
	putTake(r)
	if err == nil && len(res) != 2 {
		err = errBadReply
	}
	if err != nil {
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, err
	}
	if res[0] <= 0 {
		return -1, 0, nil
	}
	i := int(res[0]) - 1
	if i >= len(buckets) {
		return -1, 0, errBadReply
	}
	// Buckets with Rate <= 0 were skipped; map back to the caller's index.
	for j, seen := 0, -1; j < len(buckets); j++ {
		if buckets[j].Rate > 0 {
			seen++
		}
		if seen == i {
			i = j
			break
		}
	}
	return i, time.Duration(max(res[1], 1)) * time.Microsecond, nil
}

// bucketKey identifies a bucket configuration.
type bucketKey struct {
	rate  float64
	burst int
}

// maxCachedArgs bounds the cache of rendered script arguments; the
// configuration has a handful of distinct limits, so it never fills
// unless reloads keep changing them.
const maxCachedArgs = 256

// bucketArgs returns the script arguments of a bucket configuration: the
// emission interval in microseconds and the burst, rendered once and
// cached (as interface values, so a call neither formats nor boxes).
func (c *Client) bucketArgs(rate float64, burst int) *[2]any {
	k := bucketKey{rate, max(burst, 1)}
	if v, ok := c.args.Load(k); ok {
		return v.(*[2]any)
	}
	a := &[2]any{strconv.FormatFloat(1e6/rate, 'f', 3, 64), strconv.Itoa(k.burst)}
	if c.argsN.Add(1) <= maxCachedArgs {
		c.args.Store(k, a)
	}
	return a
}

// takeReq is one Take waiting for its batch.
type takeReq struct {
	keys []string
	args []any
	res  []int64
	err  error
	done chan struct{}
}

var takePool = sync.Pool{New: func() any {
	return &takeReq{keys: make([]string, 0, 4), args: make([]any, 0, 8), done: make(chan struct{}, 1)}
}}

func getTake() *takeReq { return takePool.Get().(*takeReq) }

func putTake(r *takeReq) {
	clear(r.keys)
	clear(r.args)
	r.keys, r.args, r.res, r.err = r.keys[:0], r.args[:0], nil, nil
	takePool.Put(r)
}

// Batching bounds.
const (
	// takeFlushers is how many batches may be in flight at once. One:
	// while a batch waits for Redis the calls that arrive queue up and go
	// together in the next, so a batch is about twice as large as with two
	// in flight, and each request pays for half as many system calls and
	// wake-ups (fedload -cluster, verified GET: 14-15 µs of fedgate's CPU
	// added per request with two, 10-12 µs with one). Redis runs scripts
	// one at a time anyway, so a second batch in flight only waited there.
	takeFlushers = 1
	// maxTakeBatch bounds one pipeline.
	maxTakeBatch = 256
	// takeQueue bounds the calls waiting for a flusher.
	takeQueue = 1024
	// flushTurns is how many batches a caller flushes for others before
	// it hands the flushing on and waits for its own answer.
	flushTurns = 4
)

// await queues r and returns once it has its answer, or false if the
// client was closed first. There are no flusher goroutines: a caller that
// finds a free flusher slot (one of takeFlushers) becomes the flusher and
// sends what is queued, its own call included, as pipelines, until the
// queue is empty or it has flushed flushTurns batches. A lone request thus
// makes its round trip on its own goroutine, with no hand-off; under load
// the calls that arrive while a batch is in flight wait for the next.
//
// No call is left behind: every queued call's goroutine is either waiting
// for a slot, which a flusher frees, or flushing; one that drained the
// queue empty knows its own call was taken by a flusher.
func (c *Client) await(r *takeReq) bool {
	select {
	case c.takes <- r:
	case <-c.stopped:
		return false
	}
	for {
		select {
		case <-r.done:
			return true
		case c.slots <- struct{}{}:
			empty := c.flush()
			<-c.slots
			if empty {
				select {
				case <-r.done:
					return true
				case <-c.stopped:
					return false
				}
			}
		case <-c.stopped:
			return false
		}
	}
}

// flush sends up to flushTurns batches from the queue and reports whether
// it found the queue empty.
func (c *Client) flush() bool {
	var buf [maxTakeBatch]*takeReq
	for range flushTurns {
		batch := buf[:0]
	collect:
		for len(batch) < maxTakeBatch {
			select {
			case r := <-c.takes:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		if len(batch) == 0 {
			return true
		}
		c.execTakes(batch)
		for _, r := range batch {
			r.done <- struct{}{}
		}
	}
	return false
}

// execTakes runs one batch as a pipeline of EVALSHA calls, sent again as
// EVAL when Redis does not know the script (a new or restarted server).
func (c *Client) execTakes(batch []*takeReq) {
	// The fast client bounds every write, read and wait for a connection
	// by cluster.timeout; no per-batch context timer is needed.
	ctx := context.Background()
	start := time.Now()
	cmds := make([]*redis.Cmd, len(batch))
	for attempt := 0; ; attempt++ {
		pipe := c.fast.Pipeline()
		for i, r := range batch {
			if attempt == 0 {
				cmds[i] = pipe.EvalSha(ctx, gcra.Hash(), r.keys, r.args...)
			} else {
				// Redis lost its script cache (a restart): EVAL runs the
				// script and caches it again, in the same round trip.
				cmds[i] = pipe.Eval(ctx, gcraScript, r.keys, r.args...)
			}
		}
		_, err := pipe.Exec(ctx)
		if attempt == 0 && err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			continue
		}
		break
	}
	c.stats.observe(start)
	failed := false
	for i, r := range batch {
		r.res, r.err = cmds[i].Int64Slice()
		if r.err != nil && !failed {
			failed = true
			c.failed(opRateLimit, r.err)
		}
	}
}

var _ policy.SharedLimiter = (*Limiter)(nil)
