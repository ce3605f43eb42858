package gateway

import (
	"testing"

	"github.com/fedgate/fedgate/upstream"
)

// homeserverReached reports whether any member of the running
// configuration's pools (of any hosted server) has answered (a probe or
// a request).
func homeserverReached(g *Gateway) bool {
	for _, hs := range g.rt.Load().servers {
		if _, last := upstreamUp(hs.upstream.Status()); !last.IsZero() {
			return true
		}
	}
	return false
}

// memberStatus returns the status of member (its index) of hs's pool
// named pool.
func memberStatus(t *testing.T, hs *hostedServer, pool string, member int) upstream.MemberStatus {
	t.Helper()
	for _, p := range hs.upstream.Status() {
		if p.Name == pool {
			return p.Members[member]
		}
	}
	t.Fatalf("%s has no pool %s", hs.name, pool)
	return upstream.MemberStatus{}
}
