package policy

import (
	"context"
	"net/netip"
	"time"

	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/internal/servername"
)

// SharedLimiter keeps token buckets in a store that several fedgate
// instances share (cluster mode: package cluster implements it over Redis),
// so that a limit holds for the whole cluster instead of once per instance.
// policy does not know where the store is; [Options.Shared] hands it in.
//
// Take must take one token from every bucket in buckets, all or none, in
// one atomic step of the store (no read-modify-write races between
// instances), and answer within its own deadline: it is called on the
// request path. It returns the index of the first bucket that had no token
// (-1 when every bucket had one and all were debited) and, for a denial,
// how long until that bucket has a token again. An error means the store
// could not answer (down, slow, confused); the caller then uses its local
// buckets for this request. Implementations must be safe for concurrent
// use and must not keep buckets after returning.
type SharedLimiter interface {
	Take(ctx context.Context, buckets []SharedBucket) (denied int, retryAfter time.Duration, err error)
}

// SharedBucket names one bucket of a [SharedLimiter.Take] call and its
// configuration. The store keys the bucket by Limiter and Key (within the
// namespace the implementation was built for); Rate and Burst are the
// current configuration, so a reload applies at once everywhere.
type SharedBucket struct {
	// Limiter is the limiter's name: "per_ip", "per_origin",
	// "per_destination" or "class:<name>".
	Limiter string
	// Key is the bucket's key within the limiter: an IPv4 address, an IPv6
	// /64 prefix ("2001:db8::/64") or a lower-cased server name.
	Key string
	// Rate is the refill rate in tokens per second (> 0).
	Rate float64
	// Burst is the bucket's capacity (>= 1).
	Burst int
}

// maxSharedBuckets is how many buckets one request takes from at most on
// the stack before the slice grows: per_ip, per_origin and a few classes.
const maxSharedBuckets = 8

// AllowVerified applies the limits that hold once a request is
// authenticated: per_origin and the rate_limit.classes of ep for origin
// (none when origin is "": an endpoint without X-Matrix), and, with a
// [SharedLimiter], per_ip for peer cluster-wide. Call it once per request
// that passed the signature check (or needs none), after [Limiters.AllowIP].
//
// Without a SharedLimiter it is [Limiters.AllowOrigin] (per_ip was
// enforced by AllowIP). With one, AllowIP stays this instance's guard
// against junk before authentication, and AllowVerified takes the
// cluster-wide per_ip, per_origin and class buckets together, in one round
// trip to the shared store. If the store fails, the local per-origin and
// class buckets decide instead: each instance then enforces the full limit
// on its own.
func (l *Limiters) AllowVerified(ctx context.Context, peer netip.Addr, origin string, ep *endpoints.Endpoint) LimitResult {
	if l.shared == nil {
		if origin == "" {
			return allowedLimit
		}
		return l.AllowOrigin(origin, ep)
	}
	c := l.cfg.Load()
	var buf [maxSharedBuckets]SharedBucket
	buckets := buf[:0]
	if c.perIP.on() && peer.IsValid() {
		buckets = append(buckets, sharedBucket(LimiterPerIP, ipBucketKey(peer), c.perIP))
	}
	var classes []classLimit
	if origin != "" && !c.isExempt(origin) {
		var nb [servername.MaxLength]byte
		key := string(lowerKey(&nb, origin))
		if c.perOrigin.on() {
			buckets = append(buckets, sharedBucket(LimiterPerOrigin, key, c.perOrigin))
		}
		if ep != nil {
			classes = c.byOp[ep.Name]
		}
		for i := range classes {
			buckets = append(buckets, sharedBucket(classes[i].limiter, key, classes[i].params))
		}
	}
	if len(buckets) == 0 {
		return allowedLimit
	}
	denied, retry, err := l.shared.Take(ctx, buckets)
	if err != nil {
		// The store is down or slow: this instance's own buckets decide.
		if origin == "" {
			return allowedLimit
		}
		return l.AllowOrigin(origin, ep)
	}
	if denied < 0 || denied >= len(buckets) {
		return allowedLimit
	}
	if retry <= 0 {
		retry = time.Millisecond
	}
	switch b := buckets[denied]; b.Limiter {
	case LimiterPerIP:
		return l.limited(c, LimiterPerIP, ReasonRatePerIP,
			"Too many requests from your address ("+ReasonRatePerIP+")", retry)
	case LimiterPerOrigin:
		return l.limited(c, LimiterPerOrigin, ReasonRatePerOrigin,
			"Too many requests from your server ("+ReasonRatePerOrigin+")", retry)
	default:
		for i := range classes {
			if classes[i].limiter == b.Limiter {
				return l.limited(c, b.Limiter, ReasonRateClass, classes[i].msg, retry)
			}
		}
		return l.limited(c, b.Limiter, ReasonRateClass, "Too many requests from your server ("+ReasonRateClass+")", retry)
	}
}

// AllowEgress applies per_destination to an egress request for dest: with
// a [SharedLimiter] cluster-wide (one round trip; the local bucket when the
// store fails), otherwise [Limiters.AllowDestination].
func (l *Limiters) AllowEgress(ctx context.Context, dest string) LimitResult {
	if l.shared == nil {
		return l.AllowDestination(dest)
	}
	c := l.cfg.Load()
	if !c.perDest.on() {
		return allowedLimit
	}
	var nb [servername.MaxLength]byte
	b := [1]SharedBucket{sharedBucket(LimiterPerDestination, string(lowerKey(&nb, dest)), c.perDest)}
	denied, retry, err := l.shared.Take(ctx, b[:])
	switch {
	case err != nil:
		return l.AllowDestination(dest)
	case denied == 0:
		if retry <= 0 {
			retry = time.Millisecond
		}
		return l.limited(c, LimiterPerDestination, ReasonRatePerDestination,
			"Too many requests to "+quoteID(dest)+" ("+ReasonRatePerDestination+")", retry)
	}
	return allowedLimit
}

// Shared reports whether the limiters take from a [SharedLimiter].
func (l *Limiters) Shared() bool { return l.shared != nil }

func sharedBucket(limiter, key string, p bucketParams) SharedBucket {
	return SharedBucket{Limiter: limiter, Key: key, Rate: float64(p.limit), Burst: p.burst}
}

// ipBucketKey is the per_ip key of addr as text: the address for IPv4, the
// /64 prefix for IPv6 (the block a single host usually controls), as
// [Limiters.AllowIP] keys its local buckets.
func ipBucketKey(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
