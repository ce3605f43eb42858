package discovery

import (
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// orderSRV returns the records in the order RFC 2782 says to try them:
// ascending priority; within one priority, a weighted random order in
// which a record's chance to come next is proportional to its weight
// (weight-0 records rarely go first). randN(n) returns a uniform integer in
// [0, n). Records with the target "." are dropped; the input is not
// modified.
func orderSRV(recs []*dns.SRV, randN func(int) int) []*dns.SRV {
	rest := make([]*dns.SRV, 0, len(recs))
	for _, r := range recs {
		if r.Target != "." {
			rest = append(rest, r)
		}
	}
	slices.SortStableFunc(rest, func(a, b *dns.SRV) int { return int(a.Priority) - int(b.Priority) })
	out := make([]*dns.SRV, 0, len(rest))
	for start := 0; start < len(rest); {
		end := start
		for end < len(rest) && rest[end].Priority == rest[start].Priority {
			end++
		}
		group := rest[start:end]
		// RFC 2782: put weight-0 records first, then pick by running sums.
		slices.SortStableFunc(group, func(a, b *dns.SRV) int {
			return boolInt(a.Weight != 0) - boolInt(b.Weight != 0)
		})
		for len(group) > 0 {
			total := 0
			for _, r := range group {
				total += int(r.Weight)
			}
			pick := randN(total + 1) // uniform in [0, total]
			i, sum := 0, 0
			for ; i < len(group)-1; i++ {
				sum += int(group[i].Weight)
				if sum >= pick {
					break
				}
			}
			out = append(out, group[i])
			group = slices.Delete(group, i, i+1)
		}
		start = end
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// randN is orderSRV's source of randomness in production. Weights spread
// load; they are not a security property, so math/rand is enough.
func randN(n int) int { return rand.IntN(n) }

// unavailable reports whether the SRV answer is RFC 2782's "decidedly not
// available": a single record whose target is ".".
func unavailable(recs []*dns.SRV) bool {
	return len(recs) == 1 && recs[0].Target == "."
}

// srvTarget is the host name of an SRV record without the final dot.
func srvTarget(r *dns.SRV) string {
	return strings.ToLower(strings.TrimSuffix(r.Target, "."))
}
