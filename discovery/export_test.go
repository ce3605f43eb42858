package discovery

// WellKnownWaiters returns how many callers wait for the well-known fetch
// of host in progress (0 when none runs), so tests can tell that
// concurrent lookups joined one fetch.
func WellKnownWaiters(r *Resolver, host string) int {
	if f := r.wkFlights.running(host); f != nil {
		return int(f.waiters.Load())
	}
	return 0
}
