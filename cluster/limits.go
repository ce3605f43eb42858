package cluster

import (
	"context"
	"errors"
	"strconv"
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

// Take implements [policy.SharedLimiter]: one EVALSHA (EVAL once after a
// Redis restart flushed the script cache), bounded by cluster.timeout.
// While Redis is marked down it returns an error at once, without a round
// trip.
func (l *Limiter) Take(ctx context.Context, buckets []policy.SharedBucket) (int, time.Duration, error) {
	c := l.c
	if !c.up.Load() {
		c.stats.fallbacks[opRateLimit].Add(1)
		return -1, 0, errDown
	}
	var keyBuf [8]string
	var argBuf [16]any
	keys, args := keyBuf[:0], argBuf[:0]
	for _, b := range buckets {
		if b.Rate <= 0 {
			continue
		}
		keys = append(keys, l.ns+b.Limiter+":"+b.Key)
		args = append(args, strconv.FormatFloat(1e6/b.Rate, 'f', 3, 64), max(b.Burst, 1))
	}
	if len(keys) == 0 {
		return -1, 0, nil
	}
	start := time.Now()
	c.stats.calls[opRateLimit].Add(1)
	res, err := gcra.Run(ctx, c.fast, keys, args...).Int64Slice()
	c.stats.observe(start)
	if err == nil && len(res) != 2 {
		err = errBadReply
	}
	if err != nil {
		c.failed(opRateLimit, err)
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

var _ policy.SharedLimiter = (*Limiter)(nil)
