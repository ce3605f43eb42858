package upstream

import (
	"fmt"
	"time"
)

// Balance is how a [Pool] spreads requests over its members.
type Balance uint8

const (
	// RoundRobin takes the members in turn, skipping those marked down.
	RoundRobin Balance = iota
	// Origin sends every request of one verified origin server to the
	// same member: the member with the highest rendezvous score for the
	// origin among those not marked down. Adding or removing a member
	// moves only that member's share of origins; a member marked down
	// hands its origins to the member with the next score, and gets them
	// back when it recovers. The score depends only on the origin and
	// the member's URL, so every fedgate instance in front of the same
	// workers agrees. Requests without a verified origin (unauthenticated
	// endpoints) are taken in turn, as with RoundRobin.
	Origin
	// LeastBusy picks the member with the fewest requests of this pool
	// in flight (from sending the request until its response body was
	// relayed), taking members in turn when several are equally busy.
	LeastBusy
)

// ParseBalance reads the configuration's name of a Balance:
// "round_robin", "origin" or "least_busy".
func ParseBalance(s string) (Balance, error) {
	switch s {
	case "round_robin", "":
		return RoundRobin, nil
	case "origin":
		return Origin, nil
	case "least_busy":
		return LeastBusy, nil
	}
	return 0, fmt.Errorf("balance %q: must be \"round_robin\", \"origin\" or \"least_busy\"", s)
}

func (b Balance) String() string {
	switch b {
	case RoundRobin:
		return "round_robin"
	case Origin:
		return "origin"
	case LeastBusy:
		return "least_busy"
	}
	return fmt.Sprintf("Balance(%d)", uint8(b))
}

// Rendezvous (highest random weight) hashing: every member has a seed
// derived from its URL; an origin's score on a member mixes the origin's
// hash with the seed, and the highest score wins. FNV-1a plus a 64-bit
// finaliser is deterministic across processes and machines (unlike
// hash/maphash, whose seed is random per process), which is what lets
// several fedgate instances route an origin to the same worker.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashString is FNV-1a over s, finalised.
func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix64(h)
}

// mix64 is the finaliser of SplitMix64: every input bit affects every
// output bit, so scores of one origin on different members are
// independent enough for rendezvous hashing.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// score is an origin's weight on a member.
func score(origin, seed uint64) uint64 { return mix64(origin ^ seed) }

// clock reads the time at most once per selection, and only when a
// member's health needs it.
type clock struct {
	now int64
	fn  func() time.Time
}

func (c *clock) nanos() int64 {
	if c.now == 0 {
		c.now = c.fn().UnixNano()
	}
	return c.now
}

// choose returns the member to send a request to: by the pool's balance
// among the members that are not marked down, or, when every candidate
// is down, among all of them (health bookkeeping never refuses traffic).
// exclude (may be nil) is a member already tried. originHash is used
// when hashed is true. It returns nil only when no member other than
// exclude exists.
func (p *Pool) choose(originHash uint64, hashed bool, exclude *slot, c *clock) *slot {
	ms := p.members
	if len(ms) == 1 {
		if exclude == ms[0] {
			return nil
		}
		return ms[0]
	}
	switch {
	case p.balance == Origin && hashed:
		var best, anyBest *slot
		var bestScore, anyScore uint64
		for _, s := range ms {
			if s == exclude {
				continue
			}
			w := score(originHash, s.seed)
			if anyBest == nil || w > anyScore {
				anyBest, anyScore = s, w
			}
			if (best == nil || w > bestScore) && s.st.eligible(c) {
				best, bestScore = s, w
			}
		}
		if best != nil {
			return best
		}
		return anyBest
	case p.balance == LeastBusy:
		n := uint64(len(ms))
		start := p.next.Add(1)
		var best, anyBest *slot
		var bestLoad, anyLoad int64
		for i := range n {
			s := ms[(start+i)%n]
			if s == exclude {
				continue
			}
			load := s.st.inFlight.Load()
			if anyBest == nil || load < anyLoad {
				anyBest, anyLoad = s, load
			}
			if (best == nil || load < bestLoad) && s.st.eligible(c) {
				best, bestLoad = s, load
			}
		}
		if best != nil {
			return best
		}
		return anyBest
	default:
		n := uint64(len(ms))
		start := p.next.Add(1)
		var first *slot
		for i := range n {
			s := ms[(start+i)%n]
			if s == exclude {
				continue
			}
			if s.st.eligible(c) {
				return s
			}
			if first == nil {
				first = s
			}
		}
		return first
	}
}
