package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fedgate/fedgate/policy"
)

// gcraScript takes the rate-limit requests of one batch (see
// [Client.await]), in order, with the generic cell rate algorithm. A bucket
// is one number, its theoretical arrival time (TAT) in microseconds of
// Redis's own clock, so instances with skewed clocks agree.
//
// KEYS holds every take's bucket keys, one take after the other. ARGV
// holds, per take, its number of keys n followed by n pairs: a bucket's
// emission interval in microseconds (1/rate) and its burst. A take is
// one request: it gets a token from every one of its buckets, all or none.
// A bucket has room when max(TAT, now) + interval - burst*interval <= now;
// a take that finds one of its buckets without room writes nothing, so a
// refused request costs no bucket anything. A value that is not a number
// (or not a string at all) counts as no value, a fresh bucket; one further
// ahead than a full burst is cut back to it, an empty bucket: what Redis
// holds is never trusted.
//
// Later takes see what earlier ones took: the same bucket appears in
// several takes of a batch when one origin sends several requests at once.
// The script reads every key with one MGET (a key holding another type
// reads as nil), keeps each bucket's TAT in a table as it goes (as Redis
// would return it, rounded to whole microseconds) and writes each changed
// key once at the end, with the expiry the last take gave it (the time
// until the bucket is full again, plus a second; at most 1e15 ms, which
// Redis still takes for an expiry). Redis runs a script alone, so the
// batch is one atomic step, as a single take was.
//
// It returns two integers per take, in order: {0, 0} when allowed, or
// {i, wait} where i is the 1-based index, within the take, of its first
// bucket without room and wait the microseconds until it has room.
//
// The call is checked as it is read, and every write waits for the end:
// at most maxBatchKeys keys, from 1 to maxTakeKeys keys per take, counts
// that account for every key and argument, and intervals and bursts that
// are finite numbers (interval >= 0, burst >= 1). Anything else is an
// error reply and changes nothing. The Go side never sends such a call;
// the checks keep a malformed one from indexing past KEYS.
//
// Each ARGV string is parsed once, and a TAT is rounded with arithmetic
// rather than string.format (SET renders the whole number): in Redis 7.0
// that took the script from 19.5 to 17.5 µs for one take of three keys
// and from 10.5 to 8.9 µs per take in a batch of 16 (INFO commandstats;
// 9 to 7.3 µs when the takes share a per-IP bucket). The one-take script
// it replaced took 15.5 µs a take: a lone take pays about 2 µs of Redis
// time for sharing the script with batches, a take in a batch of four or
// more saves 4.5-8 µs.
const gcraScript = `
local nk, na = #KEYS, #ARGV
if nk > 1024 then
  return redis.error_reply('ERR fedgate rate limit: more than 1024 keys')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = {}
if nk > 0 then stored = redis.call('MGET', unpack(KEYS)) end
local state = {}           -- key -> TAT as this call knows it
local out, tats = {}, {}
local value, ttl, order = {}, {}, {}
local k, a = 0, 1
while a <= na do
  local n = tonumber(ARGV[a])
  if not n or n < 1 or n > 32 or n % 1 ~= 0 or a + 2 * n > na or k + n > nk then
    return redis.error_reply('ERR fedgate rate limit: bad key count at ARGV[' .. a .. ']')
  end
  local refused, wait = 0, 0
  for j = 1, n do
    local interval, burst = tonumber(ARGV[a + 2 * j - 1]), tonumber(ARGV[a + 2 * j])
    if not (interval and burst and interval >= 0 and interval < math.huge and burst >= 1 and burst < math.huge) then
      return redis.error_reply('ERR fedgate rate limit: bad interval or burst at ARGV[' .. (a + 2 * j - 1) .. ']')
    end
    if refused == 0 then
      local key = KEYS[k + j]
      local tat = state[key]
      if not tat then
        tat = now
        local x = tonumber(stored[k + j])
        if x and x > now then tat = x end
        state[key] = tat
      end
      local cap = now + burst * interval
      if tat > cap then tat = cap end
      local new = tat + interval
      local allow_at = new - burst * interval
      if allow_at > now then
        refused, wait = j, math.ceil(allow_at - now)
      else
        tats[j] = new
      end
    end
  end
  if refused == 0 then
    for j = 1, n do
      local key, new = KEYS[k + j], tats[j]
      -- Whole microseconds, rounded half to even as printf's %.0f does.
      local r = math.floor(new)
      local d = new - r
      if d > 0.5 or (d == 0.5 and r % 2 == 1) then r = r + 1 end
      if not value[key] then order[#order + 1] = key end
      value[key] = r
      ttl[key] = math.min(math.ceil((new - now) / 1000) + 1000, 1e15)
      state[key] = r
    end
  end
  out[#out + 1] = refused
  out[#out + 1] = wait
  k = k + n
  a = a + 1 + 2 * n
end
if k ~= nk then
  return redis.error_reply('ERR fedgate rate limit: ARGV counts ' .. k .. ' keys, KEYS holds ' .. nk)
end
for _, key in ipairs(order) do
  redis.call('SET', key, value[key], 'PX', ttl[key])
end
return out
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

var (
	errBadReply       = errors.New("unexpected reply from the rate limit script")
	errTooManyBuckets = fmt.Errorf("more than %d shared buckets in one request", maxTakeKeys)
)

// Take implements [policy.SharedLimiter]: one round trip, bounded by
// cluster.timeout (ctx is not waited on: the bound is the client's).
// Concurrent calls are batched (see [Client.await]): the calls queued
// while a batch is in flight go together in one script call, which keeps
// the CPU a request costs, fedgate's and Redis's, low under load; a lone
// request still goes at once. While Redis is marked down it returns an
// error at once, without a round trip.
func (l *Limiter) Take(ctx context.Context, buckets []policy.SharedBucket) (int, time.Duration, error) {
	c := l.c
	if !c.up.Load() {
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, errDown
	}
	r := getTake()
	l.fill(r, buckets)
	switch {
	case len(r.keys) == 0:
		putTake(r)
		return -1, 0, nil
	case len(r.keys) > maxTakeKeys:
		// The script refuses such a take; asking would fail its batch.
		putTake(r)
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, errTooManyBuckets
	}
	c.stats.calls[opRateLimit].Add(1)
	if !c.await(r) {
		// Closed while queued: r may still be in a flusher's hands, so it
		// is left to the garbage collector rather than reused.
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, errDown
	}
	res, err, n := r.res, r.err, len(r.keys)
	putTake(r)
	if err == nil && (res[0] < 0 || res[0] > int64(n)) {
		err = errBadReply
	}
	if err != nil {
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, err
	}
	if res[0] == 0 {
		return -1, 0, nil
	}
	i := int(res[0]) - 1
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

// fill puts the keys and script arguments of buckets into r, leaving out
// buckets without a rate (as Take's mapping back does).
func (l *Limiter) fill(r *takeReq, buckets []policy.SharedBucket) {
	for _, b := range buckets {
		if !(b.Rate > 0) {
			continue
		}
		r.keys = append(r.keys, l.ns+b.Limiter+":"+b.Key)
		a := l.c.bucketArgs(b.Rate, b.Burst)
		r.args = append(r.args, a[0], a[1])
	}
}

// bucketKey identifies a bucket configuration.
type bucketKey struct {
	rate  float64
	burst int
}

const (
	// maxCachedArgs bounds the cache of rendered script arguments; the
	// configuration has a handful of distinct limits, so it never fills
	// unless reloads keep changing them.
	maxCachedArgs = 256
	// maxInterval bounds a bucket's emission interval, in microseconds:
	// one token in about 31 years. A slower rate (or one so small that
	// 1/rate overflows) counts as this one, so the script never sees an
	// infinite interval, which it refuses with the rest of the batch.
	maxInterval = 1e15
)

// bucketArgs returns the script arguments of a bucket configuration: the
// emission interval in microseconds and the burst, rendered once and
// cached (as interface values, so a call neither formats nor boxes).
func (c *Client) bucketArgs(rate float64, burst int) *[2]any {
	k := bucketKey{rate, max(burst, 1)}
	if v, ok := c.args.Load(k); ok {
		return v.(*[2]any)
	}
	a := &[2]any{strconv.FormatFloat(min(1e6/rate, maxInterval), 'f', 3, 64), strconv.Itoa(k.burst)}
	if c.argsN.Add(1) <= maxCachedArgs {
		c.args.Store(k, a)
	}
	return a
}

// takeReq is one Take waiting for its batch. Its fields other than done
// belong to the flusher from the moment it is queued until done is sent.
type takeReq struct {
	keys []string
	args []any    // per key: interval and burst, from bucketArgs
	res  [2]int64 // the script's answer for this take
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
	r.keys, r.args, r.res, r.err = r.keys[:0], r.args[:0], [2]int64{}, nil
	takePool.Put(r)
}

// Batching bounds. maxTakeKeys and maxBatchKeys are checked by the script
// too (gcraScript); change them together.
const (
	// takeFlushers is how many batches may be in flight at once. One:
	// while a batch waits for Redis the calls that arrive queue up and go
	// together in the next, so a batch is about twice as large as with two
	// in flight, and each request pays for half as many system calls and
	// wake-ups (fedload -cluster, verified GET: 14-15 µs of fedgate's CPU
	// added per request with two, 10-12 µs with one). Redis runs scripts
	// one at a time anyway, so a second batch in flight only waited there.
	takeFlushers = 1
	// maxTakeBatch bounds the takes of one script call.
	maxTakeBatch = 256
	// maxTakeKeys bounds the buckets of one take: per_ip, per_origin and
	// the classes of one endpoint come to a few.
	maxTakeKeys = 32
	// maxBatchKeys bounds the keys of one script call, whatever its takes
	// hold: Redis builds its KEYS table from them before the script runs.
	maxBatchKeys = 1024
	// takeQueue bounds the calls waiting for a flusher.
	takeQueue = 1024
	// flushTurns is how many batches a caller flushes for others before
	// it hands the flushing on and waits for its own answer.
	flushTurns = 4
)

// takeBuf is what a flusher holds while it flushes: the batch and the
// script call's arguments, reused from one batch to the next. There is
// one per flusher slot (see [Client.await]), so only the slot's holder
// touches it.
type takeBuf struct {
	batch []*takeReq
	// args is the call: EVALSHA (or EVAL), the script's hash (or text),
	// the number of keys, every take's keys, then every take's ARGV part.
	args  []any
	sha   any // gcra.Hash(), boxed once
	nkeys int // args[2] is &nkeys: a pointer boxes without allocating
}

func newTakeBuf() *takeBuf {
	return &takeBuf{batch: make([]*takeReq, 0, maxTakeBatch), args: make([]any, 0, 128), sha: gcra.Hash()}
}

// await queues r and returns once it has its answer, or false if the
// client was closed first. There are no flusher goroutines: a caller that
// finds a free flusher slot (one of takeFlushers, each a takeBuf) becomes
// the flusher and sends what is queued, its own call included, as script
// calls, until the queue is empty or it has flushed flushTurns batches. A
// lone request thus makes its round trip on its own goroutine, with no
// hand-off; under load the calls that arrive while a batch is in flight
// wait for the next.
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
		case b := <-c.slots:
			empty := c.flush(b)
			c.slots <- b
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
// it found the queue empty. A batch ends at maxTakeBatch takes or before
// the take that would bring it past maxBatchKeys keys; that take starts
// the next batch, sent even when it is one turn too many.
func (c *Client) flush(b *takeBuf) bool {
	var carry *takeReq
	for turn := 0; ; turn++ {
		batch, keys := b.batch[:0], 0
		if carry != nil {
			batch, keys, carry = append(batch, carry), len(carry.keys), nil
		}
	collect:
		for turn < flushTurns && len(batch) < maxTakeBatch {
			select {
			case r := <-c.takes:
				if keys+len(r.keys) > maxBatchKeys {
					carry = r
					break collect
				}
				batch, keys = append(batch, r), keys+len(r.keys)
			default:
				break collect
			}
		}
		if len(batch) == 0 {
			return true
		}
		c.execTakes(b, batch, keys)
		for _, r := range batch {
			r.done <- struct{}{}
		}
		clear(batch)
		if turn+1 >= flushTurns && carry == nil {
			return false
		}
	}
}

// execTakes sends one batch of takes holding nkeys keys as one EVALSHA
// call of gcraScript, sent again as EVAL when Redis does not know the
// script (a new or restarted server, SCRIPT FLUSH), and hands every take
// its part of the answer (see [Client.answer]).
func (c *Client) execTakes(b *takeBuf, batch []*takeReq, nkeys int) {
	b.nkeys = nkeys
	args := append(b.args[:0], "evalsha", b.sha, &b.nkeys)
	for _, r := range batch {
		for i := range r.keys {
			// The take's own string, by pointer: boxing a string would
			// allocate, and r.keys stays put until r is done.
			args = append(args, &r.keys[i])
		}
	}
	for _, r := range batch {
		args = append(args, len(r.keys)) // at most maxTakeKeys: boxes without allocating
		args = append(args, r.args...)
	}
	// The fast client bounds every write, read and wait for a connection
	// by cluster.timeout; no per-batch context timer is needed.
	ctx := context.Background()
	start := time.Now()
	cmd := redis.NewIntSliceCmd(ctx, args...)
	err := c.fast.Process(ctx, cmd)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis lost its script cache: EVAL runs the script and caches it
		// again, and the batch's answer comes with it.
		args[0], args[1] = "eval", gcraScript
		cmd = redis.NewIntSliceCmd(ctx, args...)
		err = c.fast.Process(ctx, cmd)
	}
	c.stats.observe(start)
	clear(args) // drop the pointers into the takes
	b.args = args[:0]
	c.answer(batch, cmd.Val(), err)
}

// answer gives every take of batch its two integers of res. A failed call
// (err), or an answer without two integers per take, gives every take an
// error instead, so that each uses its local buckets; either counts as a
// failed round trip, and an unreachable or slow Redis is marked down.
func (c *Client) answer(batch []*takeReq, res []int64, err error) {
	switch {
	case err != nil:
		c.failed(opRateLimit, err)
		err = fmt.Errorf("cluster: rate-limit script call of %d takes: %w", len(batch), err)
	case len(res) != 2*len(batch):
		// Redis answered, so it is not down: count the error only.
		c.stats.errors[opRateLimit].Add(1)
		err = fmt.Errorf("cluster: %d integers for %d takes: %w", len(res), len(batch), errBadReply)
	}
	for i, r := range batch {
		if err != nil {
			r.err = err
			continue
		}
		r.res = [2]int64{res[2*i], res[2*i+1]}
	}
}

var _ policy.SharedLimiter = (*Limiter)(nil)
