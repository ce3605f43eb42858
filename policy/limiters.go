package policy

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/internal/servername"
)

// Limiter names, as reported in [LimitResult.Limiter]. Per-class limiters
// are named "class:" followed by the class or operation name configured in
// rate_limit.classes, e.g. "class:media".
const (
	LimiterPerIP               = "per_ip"
	LimiterPerOrigin           = "per_origin"
	LimiterConcurrentPerOrigin = "concurrent_per_origin"
	LimiterPerDestination      = "per_destination"
	LimiterClassPrefix         = "class:"
)

// concurrentRetryAfter is the Retry-After sent when the concurrency cap
// turns a request away: long enough for an in-flight request to finish.
const concurrentRetryAfter = time.Second

// LimitResult is the outcome of a rate or concurrency check. An allowed
// result without DryRun has every other field empty.
type LimitResult struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Limiter names the limiter that fired: "per_ip", "per_origin",
	// "class:<name>", "concurrent_per_origin" or "per_destination".
	Limiter string
	// Reason is the reason code: rate_per_ip, rate_per_origin, rate_class,
	// concurrent_per_origin or rate_per_destination.
	Reason string
	// Msg is safe text for the Matrix error body (M_LIMIT_EXCEEDED, 429),
	// naming the reason code.
	Msg string
	// RetryAfter is when a retry can succeed, for the Retry-After header
	// (rounded up to whole seconds) and retry_after_ms.
	RetryAfter time.Duration
	// DryRun marks a limit that dry_run did not enforce.
	DryRun bool
}

// Limited reports whether a limiter fired, enforced or not.
func (r LimitResult) Limited() bool { return r.Reason != "" }

// Limiters holds the rate and concurrency limiters. Their state (token
// buckets, in-flight counts) lives as long as the [Engine] and survives
// reloads: a reload changes rates and caps, keeping what each key has used.
// Every method is safe for concurrent use; AllowIP, AllowOrigin and
// AllowDestination do not allocate except for a key seen for the first
// time, and read the configuration without locks.
type Limiters struct {
	cfg      atomic.Pointer[limitConfig]
	now      func() time.Time
	maxKeys  int
	counters *counters
	shared   SharedLimiter // nil: in process only

	perIP, perOrigin, perDest *bucketStore
	slots                     *slotStore

	mu      sync.Mutex              // guards classes
	classes map[string]*bucketStore // by rate_limit.classes name; kept across reloads
}

// limitConfig is the compiled [rate_limit] section. Immutable.
type limitConfig struct {
	perIP, perOrigin, perDest bucketParams
	concurrent                int
	concurrentWait            time.Duration
	idle                      time.Duration
	since                     time.Time // when this configuration was compiled
	exempt                    nameSet
	byOp                      map[string][]classLimit // operation -> class limits
	classes                   []classLimit            // sorted by name
	dryRun                    bool
}

type classLimit struct {
	limiter string // "class:media"
	msg     string
	params  bucketParams
	store   *bucketStore
}

func newLimiters(now func() time.Time, maxKeys int, c *counters, shared SharedLimiter) *Limiters {
	l := &Limiters{
		shared:    shared,
		now:       now,
		maxKeys:   maxKeys,
		counters:  c,
		perIP:     newBucketStore(maxKeys),
		perOrigin: newBucketStore(maxKeys),
		perDest:   newBucketStore(maxKeys),
		classes:   map[string]*bucketStore{},
	}
	l.slots = newSlotStore(maxKeys, func() int { return l.cfg.Load().concurrent })
	return l
}

// compile builds a configuration from rl without publishing it. Class
// stores it needs are created (and kept: an unused one holds nothing after
// the next sweep).
func (l *Limiters) compile(rl config.RateLimit, dryRun bool) (*limitConfig, error) {
	c := &limitConfig{
		perIP:          paramsOf(rl.PerIP),
		perOrigin:      paramsOf(rl.PerOrigin),
		perDest:        paramsOf(rl.PerDestination),
		concurrent:     max(rl.ConcurrentPerOrigin, 0),
		concurrentWait: rl.ConcurrentWait.D(),
		idle:           rl.IdleEviction.D(),
		since:          l.now(),
		dryRun:         dryRun,
	}
	if err := c.exempt.add("rate_limit.exempt", rl.Exempt); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rl.Classes))
	for n := range rl.Classes {
		names = append(names, n)
	}
	sort.Strings(names)
	table := endpoints.All()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range names {
		ops, err := expandEndpointName(table, n)
		if err != nil {
			return nil, fmt.Errorf("rate_limit.classes.%s: %w", n, err)
		}
		p := paramsOf(rl.Classes[n])
		if !p.on() {
			continue
		}
		store := l.classes[n]
		if store == nil {
			store = newBucketStore(l.maxKeys)
			l.classes[n] = store
		}
		cl := classLimit{
			limiter: LimiterClassPrefix + n,
			msg:     "Too many " + n + " requests from your server (" + ReasonRateClass + ")",
			params:  p,
			store:   store,
		}
		c.classes = append(c.classes, cl)
		for _, op := range ops {
			if c.byOp == nil {
				c.byOp = make(map[string][]classLimit)
			}
			c.byOp[op] = append(c.byOp[op], cl)
		}
	}
	return c, nil
}

func (l *Limiters) publish(c *limitConfig) { l.cfg.Store(c) }

// limited builds a result for a limiter that fired and counts it.
func (l *Limiters) limited(c *limitConfig, limiter, reason, msg string, retry time.Duration) LimitResult {
	l.counters.count(reason, c.dryRun)
	return LimitResult{Allowed: c.dryRun, Limiter: limiter, Reason: reason, Msg: msg, RetryAfter: retry, DryRun: c.dryRun}
}

var allowedLimit = LimitResult{Allowed: true}

// AllowIP takes a token from the per_ip bucket of addr, before anything
// about the request is known. IPv4 addresses (including IPv4-mapped IPv6)
// each have a bucket; IPv6 addresses share one per /64, the block a single
// host usually controls.
func (l *Limiters) AllowIP(addr netip.Addr) LimitResult {
	c := l.cfg.Load()
	if !c.perIP.on() {
		return allowedLimit
	}
	var key []byte
	var k4 [4]byte
	var k16 [16]byte
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		k4 = addr.As4()
		key = k4[:]
	case addr.Is6():
		p, _ := addr.Prefix(64)
		k16 = p.Addr().As16()
		key = k16[:]
	}
	if ok, retry := l.perIP.take(key, c.perIP, c.since, l.now(), c.idle); !ok {
		return l.limited(c, LimiterPerIP, ReasonRatePerIP,
			"Too many requests from your address ("+ReasonRatePerIP+")", retry)
	}
	return allowedLimit
}

// AllowOrigin takes a token from origin's per_origin bucket, then from the
// bucket of every rate_limit.classes entry naming ep's class or operation
// (a nil ep skips those). Origins matching rate_limit.exempt are not
// limited. Buckets are keyed by the lower-cased origin. Call it once the
// origin's signature is verified: keyed by a claimed origin, the bucket
// could be emptied by anyone forging that origin.
func (l *Limiters) AllowOrigin(origin string, ep *endpoints.Endpoint) LimitResult {
	c := l.cfg.Load()
	var classes []classLimit
	if ep != nil {
		classes = c.byOp[ep.Name]
	}
	if !c.perOrigin.on() && len(classes) == 0 {
		return allowedLimit
	}
	if c.isExempt(origin) {
		return allowedLimit
	}
	var buf [servername.MaxLength]byte
	key := lowerKey(&buf, origin)
	now := l.now()
	if c.perOrigin.on() {
		if ok, retry := l.perOrigin.take(key, c.perOrigin, c.since, now, c.idle); !ok {
			return l.limited(c, LimiterPerOrigin, ReasonRatePerOrigin,
				"Too many requests from your server ("+ReasonRatePerOrigin+")", retry)
		}
	}
	for i := range classes {
		cl := &classes[i]
		if ok, retry := cl.store.take(key, cl.params, c.since, now, c.idle); !ok {
			return l.limited(c, cl.limiter, ReasonRateClass, cl.msg, retry)
		}
	}
	return allowedLimit
}

// AcquireOrigin takes one of origin's concurrent_per_origin slots, once the
// origin's signature is verified (see [Limiters.AllowOrigin]). When all
// are in use it waits up to concurrent_wait (real time, not the injected
// clock) in a queue of at most concurrent_per_origin waiters, first come
// first served; a full queue, the wait running out or ctx ending gives
// concurrent_per_origin. When the result is Allowed, release must be called
// exactly once, when the request is done (a dry-run result holds a slot
// too); otherwise release is nil. Exempt origins and a cap of 0 get a
// release that does nothing.
func (l *Limiters) AcquireOrigin(ctx context.Context, origin string) (release func(), r LimitResult) {
	c := l.cfg.Load()
	if c.concurrent <= 0 || c.isExempt(origin) {
		return noRelease, allowedLimit
	}
	var buf [servername.MaxLength]byte
	key := lowerKey(&buf, origin)
	release, res := l.slots.acquire(ctx, key, c.concurrent, c.concurrentWait, c.dryRun, l.now())
	const msg = "Too many concurrent requests from your server (" + ReasonConcurrentPerOrigin + ")"
	switch res {
	case acquired:
		return release, allowedLimit
	case overCap:
		return release, l.limited(c, LimiterConcurrentPerOrigin, ReasonConcurrentPerOrigin, msg, concurrentRetryAfter)
	default:
		return nil, l.limited(c, LimiterConcurrentPerOrigin, ReasonConcurrentPerOrigin, msg, concurrentRetryAfter)
	}
}

func noRelease() {}

// AllowDestination takes a token from the per_destination bucket of an
// egress destination, keyed by the lower-cased server name.
func (l *Limiters) AllowDestination(dest string) LimitResult {
	c := l.cfg.Load()
	if !c.perDest.on() {
		return allowedLimit
	}
	var buf [servername.MaxLength]byte
	if ok, retry := l.perDest.take(lowerKey(&buf, dest), c.perDest, c.since, l.now(), c.idle); !ok {
		return l.limited(c, LimiterPerDestination, ReasonRatePerDestination,
			"Too many requests to "+quoteID(dest)+" ("+ReasonRatePerDestination+")", retry)
	}
	return allowedLimit
}

func (c *limitConfig) isExempt(origin string) bool {
	if c.exempt.len() == 0 {
		return false
	}
	var buf nameBuf
	n, lower, err := parseName(origin, &buf)
	if err != nil {
		return false
	}
	_, ok := c.exempt.lookup(&n, lower)
	return ok
}

// lowerKey lower-cases s into buf for use as a bucket key. Server names
// are at most servername.MaxLength bytes; a longer string is cut, which
// only makes garbage names share a bucket.
func lowerKey(buf *[servername.MaxLength]byte, s string) []byte {
	if len(s) > len(buf) {
		s = s[:len(buf)]
	}
	return lowerInto(buf[:0], s)
}

// Sweep forgets limiter state that carries no information: buckets that
// are full again or unused for idle_eviction, and origins with nothing in
// flight. [Engine.Run] calls it periodically; it returns how many keys it
// forgot.
func (l *Limiters) Sweep() int {
	c := l.cfg.Load()
	now := l.now()
	n := l.perIP.sweep(now, c.idle) + l.perOrigin.sweep(now, c.idle) + l.perDest.sweep(now, c.idle)
	n += l.slots.sweep(now, c.idle)
	l.mu.Lock()
	stores := make([]*bucketStore, 0, len(l.classes))
	for _, s := range l.classes {
		stores = append(stores, s)
	}
	l.mu.Unlock()
	for _, s := range stores {
		n += s.sweep(now, c.idle)
	}
	return n
}

// Keys returns how many keys each limiter currently remembers, by limiter
// name, for a gauge. It locks each shard briefly; do not call it per
// request.
func (l *Limiters) Keys() map[string]int {
	m := map[string]int{
		LimiterPerIP:               l.perIP.len(),
		LimiterPerOrigin:           l.perOrigin.len(),
		LimiterPerDestination:      l.perDest.len(),
		LimiterConcurrentPerOrigin: l.slots.len(),
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, s := range l.classes {
		m[LimiterClassPrefix+n] = s.len()
	}
	return m
}
