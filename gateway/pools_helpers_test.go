package gateway

// homeserverReached reports whether any member of the running
// configuration's pools has answered (a probe or a request).
func homeserverReached(g *Gateway) bool {
	_, last := upstreamUp(g.rt.Load().upstream.Status())
	return !last.IsZero()
}
