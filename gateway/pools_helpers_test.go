package gateway

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
