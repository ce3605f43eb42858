package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/internal/servername"
)

// Egress backoff sharing. Every instance keeps its own backoff table and
// reads only that on the request path (no round trip); what changes in it
// (a failure, a 429, a success after a failure) is published:
//
//	<prefix>backoff:D        the entry for destination D, expiring with it
//	<prefix>backoff          the channel every instance subscribes to
//
// Messages and stored entries are one line each:
// "<node> <kind> <failures> <until_ms> <set_at_ms> <destination>". Kind 0
// clears an entry. On every (re)subscription an instance reads the stored
// entries, so one that was cut off from Redis catches up.

// Backoff kinds, as published.
const (
	BackoffCleared     = 0
	BackoffFailing     = 1
	BackoffRateLimited = 2
)

// BackoffEntry is one destination's backoff state as instances share it.
type BackoffEntry struct {
	// Kind is BackoffCleared, BackoffFailing or BackoffRateLimited.
	Kind uint8
	// Failures counts consecutive failures.
	Failures int
	// Until is when requests may be sent again.
	Until time.Time
	// SetAt is when the entry was last changed.
	SetAt time.Time
}

const (
	publishQueue     = 1024
	maxBackoffResync = 20000
	maxBackoffLine   = 512
	maxDestination   = 300
)

var publishBackoffScript = redis.NewScript(`
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// Backoff shares the egress backoff table between instances. Publish is
// non-blocking; Run publishes the queue and applies what other instances
// publish. Safe for concurrent use.
type Backoff struct {
	c       *Client
	channel string
	queue   chan backoffMsg
	dropped atomic.Uint64
	resyncs chan struct{}
}

type backoffMsg struct {
	dest string
	e    BackoffEntry
}

// Backoff returns the shared egress backoff (one per Client).
func (c *Client) Backoff() *Backoff { return c.backoffs }

// Publish queues dest's new entry for the other instances. It never
// blocks: when the queue is full (Redis slow or down) the entry is dropped
// and counted; the destination's entry expires or is rewritten anyway.
func (b *Backoff) Publish(dest string, e BackoffEntry) {
	if len(dest) > maxDestination {
		return
	}
	select {
	case b.queue <- backoffMsg{dest: strings.ToLower(dest), e: e}:
	default:
		b.dropped.Add(1)
		b.c.stats.fallbacks[opBackoff].Add(1)
	}
}

// Run publishes queued entries and calls apply for every entry another
// instance publishes (and for the stored ones on every (re)subscription),
// until ctx ends. apply must be quick and safe for concurrent use.
func (b *Backoff) Run(ctx context.Context, apply func(dest string, e BackoffEntry)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.publishLoop(ctx)
	}()
	b.subscribeLoop(ctx, apply)
	<-done
}

// resync asks the subscriber to read the stored entries again.
func (b *Backoff) resync() {
	select {
	case b.resyncs <- struct{}{}:
	default:
	}
}

func (b *Backoff) publishLoop(ctx context.Context) {
	c := b.c
	for {
		var m backoffMsg
		select {
		case <-ctx.Done():
			return
		case m = <-b.queue:
		}
		if !c.up.Load() {
			c.stats.fallbacks[opBackoff].Add(1)
			continue // the entry stays local; it expires on its own
		}
		line := EncodeBackoff(c.opts.Node, m.dest, m.e)
		expire := "0"
		if m.e.Kind != BackoffCleared {
			expire = strconv.FormatInt(millis(m.e.Until)+1, 10)
		}
		c.stats.calls[opBackoff].Add(1)
		pctx, cancel := context.WithTimeout(ctx, bulkTimeout)
		err := publishBackoffScript.Run(pctx, c.bulk, []string{c.key("backoff", m.dest)}, b.channel, line, expire).Err()
		cancel()
		if err != nil && ctx.Err() == nil {
			c.failed(opBackoff, err)
		}
	}
}

func (b *Backoff) subscribeLoop(ctx context.Context, apply func(string, BackoffEntry)) {
	c := b.c
	ps := c.bulk.Subscribe(ctx, b.channel)
	// Closing the subscription ends a Receive in progress at once, so a
	// shutdown does not wait for the receive timeout.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer func() {
		if stop() {
			ps.Close()
		}
	}()
	wait := probeMin
	for ctx.Err() == nil {
		select {
		case <-b.resyncs:
			b.load(ctx, apply)
		default:
		}
		msg, err := ps.ReceiveTimeout(ctx, probeEvery)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				continue // nothing published for a while
			}
			c.stats.errors[opBackoff].Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, probeMax)
			continue
		}
		wait = probeMin
		switch m := msg.(type) {
		case *redis.Subscription:
			b.load(ctx, apply) // (re)subscribed: catch up on what was missed
		case *redis.Message:
			node, dest, e, err := DecodeBackoff([]byte(m.Payload))
			if err != nil {
				c.stats.errors[opBackoff].Add(1)
				c.log.Debug("ignoring a malformed backoff message", zap.Error(err))
				continue
			}
			if node != c.opts.Node {
				apply(dest, e)
			}
		}
	}
}

// load applies the stored entries (at most maxBackoffResync).
func (b *Backoff) load(ctx context.Context, apply func(string, BackoffEntry)) {
	c := b.c
	lctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	iter := c.bulk.Scan(lctx, 0, c.key("backoff", "*"), 500).Iterator()
	var keys []string
	for iter.Next(lctx) && len(keys) < maxBackoffResync {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		c.failed(opBackoff, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		vals, err := c.bulk.MGet(lctx, keys[:n]...).Result()
		if err != nil {
			c.failed(opBackoff, err)
			return
		}
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			if _, dest, e, err := DecodeBackoff([]byte(s)); err == nil {
				apply(dest, e)
			}
		}
		keys = keys[n:]
	}
}

// Dropped returns how many entries were dropped because the queue was
// full.
func (b *Backoff) Dropped() uint64 { return b.dropped.Load() }

// EncodeBackoff renders one entry as it is published and stored.
func EncodeBackoff(node, dest string, e BackoffEntry) string {
	var b strings.Builder
	b.WriteString(node)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(int(e.Kind)))
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(e.Failures))
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(millis(e.Until), 10))
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(millis(e.SetAt), 10))
	b.WriteByte(' ')
	b.WriteString(dest)
	return b.String()
}

// DecodeBackoff parses a published or stored entry. The line comes from
// Redis and is untrusted: fields are bounded and checked.
func DecodeBackoff(line []byte) (node, dest string, e BackoffEntry, err error) {
	if len(line) > maxBackoffLine {
		return "", "", e, fmt.Errorf("backoff line of %d bytes is too long", len(line))
	}
	f := bytes.Fields(line)
	if len(f) != 6 {
		return "", "", e, fmt.Errorf("backoff line has %d fields, want 6", len(f))
	}
	kind, err := strconv.Atoi(string(f[1]))
	if err != nil || kind < BackoffCleared || kind > BackoffRateLimited {
		return "", "", e, fmt.Errorf("bad backoff kind %q", truncate(f[1], 16))
	}
	failures, err := strconv.Atoi(string(f[2]))
	if err != nil || failures < 0 || failures > 1<<20 {
		return "", "", e, fmt.Errorf("bad failure count %q", truncate(f[2], 16))
	}
	until, err := parseMillis(f[3])
	if err != nil {
		return "", "", e, err
	}
	setAt, err := parseMillis(f[4])
	if err != nil {
		return "", "", e, err
	}
	if len(f[5]) > maxDestination {
		return "", "", e, errors.New("destination too long")
	}
	// The destination is a server name (what discovery resolves), so it
	// is ASCII and lower-casing keeps its length; anything else another
	// writer put there is refused, never applied.
	dest = string(f[5])
	if !servername.Valid(dest) {
		return "", "", e, fmt.Errorf("destination %q is not a server name", truncate(f[5], 64))
	}
	e = BackoffEntry{Kind: uint8(kind), Failures: failures, Until: time.UnixMilli(until), SetAt: time.UnixMilli(setAt)}
	return string(f[0]), strings.ToLower(dest), e, nil
}

// millis is t in Unix milliseconds, 0 for times before 1970 (the zero
// time included).
func millis(t time.Time) int64 { return max(t.UnixMilli(), 0) }
