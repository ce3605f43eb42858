package cluster

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fedgate/fedgate/policy"
)

// StallForTest stops renewing lock name as if this instance froze, without
// releasing it, so that it expires while "held".
func (s *CertStorage) StallForTest(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.locks[name]; h != nil {
		h.stopKeeping()
	}
}

// Bounds of the rate-limit script, for tests that probe them.
const (
	MaxTakeKeys  = maxTakeKeys
	MaxBatchKeys = maxBatchKeys
)

// HoldFlushForTest takes every flusher slot, so that Takes queue up
// without being sent, and returns a function that gives the slots back:
// the first caller to get one then sends the queue as one batch.
func (c *Client) HoldFlushForTest() (release func()) {
	held := make([]*takeBuf, 0, takeFlushers)
	for range takeFlushers {
		held = append(held, <-c.slots)
	}
	return func() {
		for _, b := range held {
			c.slots <- b
		}
	}
}

// QueuedForTest returns how many takes wait for a flusher.
func (c *Client) QueuedForTest() int { return len(c.takes) }

// TakeBatch is a batch of takes built by hand, sent as a flusher sends
// one.
type TakeBatch struct {
	c    *Client
	reqs []*takeReq
	buf  *takeBuf
	keys int
}

// TakeResult is what one take of a batch got: the script's two integers
// (index within the take of the first bucket without room, or 0; the
// wait in microseconds), or an error.
type TakeResult struct {
	Res [2]int64
	Err error
}

// BatchForTest builds a batch of one take per element of takes, in order,
// with the keys and arguments Take would send.
func (l *Limiter) BatchForTest(takes ...[]policy.SharedBucket) *TakeBatch {
	b := &TakeBatch{c: l.c, buf: newTakeBuf()}
	for _, t := range takes {
		r := &takeReq{done: make(chan struct{}, 1)}
		l.fill(r, t)
		b.reqs, b.keys = append(b.reqs, r), b.keys+len(r.keys)
	}
	return b
}

// Exec sends the batch as one script call, as a flusher does.
func (b *TakeBatch) Exec() { b.c.execTakes(b.buf, b.reqs, b.keys) }

// Results returns what every take got from the last Exec.
func (b *TakeBatch) Results() []TakeResult {
	out := make([]TakeResult, len(b.reqs))
	for i, r := range b.reqs {
		out[i] = TakeResult{r.res, r.err}
	}
	return out
}

// AnswerForTest hands res (and err) to n takes as a flusher hands a
// script call's answer, and returns what each got.
func (c *Client) AnswerForTest(n int, res []int64, err error) []TakeResult {
	b := &TakeBatch{c: c}
	for range n {
		b.reqs = append(b.reqs, &takeReq{})
	}
	c.answer(b.reqs, res, err)
	return b.Results()
}

// EvalRateLimitScriptForTest runs the rate-limit script with keys and
// argv exactly as given.
func (c *Client) EvalRateLimitScriptForTest(keys []string, argv ...any) ([]int64, error) {
	return gcra.Run(context.Background(), c.fast, keys, argv...).Int64Slice()
}

// legacyScript is the rate-limit script before batches went to Redis as
// one call: one take per call. Only the benchmark uses it, as the
// baseline the batch script is measured against.
const legacyScript = `
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

var legacy = redis.NewScript(legacyScript)

// ExecPipelined sends the batch the way fedgate did before one script
// call per batch: a go-redis pipeline of one EVALSHA per take (EVAL on
// NOSCRIPT), each answer read into its own slice. It is the benchmark's
// baseline.
func (b *TakeBatch) ExecPipelined() {
	c, batch := b.c, b.reqs
	ctx := context.Background()
	start := time.Now()
	cmds := make([]*redis.Cmd, len(batch))
	for attempt := 0; ; attempt++ {
		pipe := c.fast.Pipeline()
		for i, r := range batch {
			if attempt == 0 {
				cmds[i] = pipe.EvalSha(ctx, legacy.Hash(), r.keys, r.args...)
			} else {
				cmds[i] = pipe.Eval(ctx, legacyScript, r.keys, r.args...)
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
		res, err := cmds[i].Int64Slice()
		r.err = err
		if len(res) == 2 {
			r.res = [2]int64{res[0], res[1]}
		}
		if err != nil && !failed {
			failed = true
			c.failed(opRateLimit, err)
		}
	}
}

// ExecLegacyOne sends a batch of one take as the batch path sends its
// call (one command, arguments reused), but with the one-take script: what
// keeping the old script for lone takes would cost, for the benchmark.
func (b *TakeBatch) ExecLegacyOne() {
	if len(b.reqs) != 1 {
		panic("ExecLegacyOne takes a batch of one")
	}
	r, buf := b.reqs[0], b.buf
	buf.nkeys = len(r.keys)
	args := append(buf.args[:0], "evalsha", legacy.Hash(), &buf.nkeys)
	for i := range r.keys {
		args = append(args, &r.keys[i])
	}
	args = append(args, r.args...)
	ctx := context.Background()
	cmd := redis.NewIntSliceCmd(ctx, args...)
	err := b.c.fast.Process(ctx, cmd)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		args[0], args[1] = "eval", legacyScript
		cmd = redis.NewIntSliceCmd(ctx, args...)
		err = b.c.fast.Process(ctx, cmd)
	}
	clear(args)
	buf.args = args[:0]
	b.c.answer(b.reqs, cmd.Val(), err)
}

// EvalLegacyScriptForTest runs the one-take script fedgate used before
// batches went as one call, with keys and argv as given.
func (c *Client) EvalLegacyScriptForTest(keys []string, argv ...any) ([]int64, error) {
	return legacy.Run(context.Background(), c.fast, keys, argv...).Int64Slice()
}

// GetForTest reads a string key.
func (c *Client) GetForTest(key string) (string, error) {
	return c.fast.Get(context.Background(), key).Result()
}
