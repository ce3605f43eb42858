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
// trip, bounded by cluster.timeout. Concurrent calls are batched: a
// flusher sends every call queued while the previous batch was in flight
// as one pipeline (one write, one read), which keeps the CPU a request
// costs, fedgate's and Redis's, low under load; a lone request still
// flushes at once. While Redis is marked down it returns an error at once,
// without a round trip.
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
		r.args = append(r.args, strconv.FormatFloat(1e6/b.Rate, 'f', 3, 64), max(b.Burst, 1))
	}
	if len(r.keys) == 0 {
		putTake(r)
		return -1, 0, nil
	}
	c.stats.calls[opRateLimit].Add(1)
	select {
	case c.takes <- r:
	case <-c.stopped:
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, errDown
	}
	select {
	case <-r.done:
	case <-c.stopped:
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
	// takeFlushers is how many batches may be in flight at once: while
	// one waits for Redis, the next collects the calls that arrive.
	takeFlushers = 2
	// maxTakeBatch bounds one pipeline.
	maxTakeBatch = 256
	// takeQueue bounds the calls waiting for a flusher.
	takeQueue = 1024
)

// flushTakes sends queued Take calls in batches until the client stops.
func (c *Client) flushTakes() {
	defer c.flushers.Done()
	batch := make([]*takeReq, 0, maxTakeBatch)
	for {
		var r *takeReq
		select {
		case r = <-c.takes:
		case <-c.stopped:
			return
		}
		batch = append(batch[:0], r)
	collect:
		for len(batch) < maxTakeBatch {
			select {
			case r := <-c.takes:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		c.execTakes(batch)
		for _, r := range batch {
			r.done <- struct{}{}
		}
	}
}

// execTakes runs one batch as a pipeline of EVALSHA calls, loading the
// script once when Redis does not know it (after a restart).
func (c *Client) execTakes(batch []*takeReq) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	start := time.Now()
	cmds := make([]*redis.Cmd, len(batch))
	for attempt := 0; ; attempt++ {
		pipe := c.fast.Pipeline()
		for i, r := range batch {
			cmds[i] = pipe.EvalSha(ctx, gcra.Hash(), r.keys, r.args...)
		}
		_, err := pipe.Exec(ctx)
		if attempt == 0 && err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if lerr := gcra.Load(ctx, c.fast).Err(); lerr == nil {
				continue
			}
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
