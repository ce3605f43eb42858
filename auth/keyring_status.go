package auth

import "time"

// FailingServer describes a server whose last key fetch failed, for
// operators (the console): it holds internal detail, never send it to a
// remote server.
type FailingServer struct {
	// Server is the server whose keys could not be fetched.
	Server string
	// Failures counts consecutive failed fetches.
	Failures int
	// Err is why the last fetch failed, with its internal cause.
	Err error
	// RetryAt is when the keyring fetches again; requests before it are
	// refused at once (EventBackoff).
	RetryAt time.Time
	// LastUsed is when a request last asked for the server's keys.
	LastUsed time.Time
	// HasKeys reports whether an older document is still held (it may
	// still verify requests signed with keys it lists, until it expires).
	HasKeys bool
}

// Failing returns how many servers' last key fetch failed and the limit
// most recently used of them, most recent first. It reads the keyring's
// state under its lock, walking every server it holds: call it for a
// status page, not per request.
func (k *Keyring) Failing(limit int) (total int, servers []FailingServer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for e := k.lru.next; e != &k.lru; e = e.next {
		if e.failures == 0 || e.lastErr == nil {
			continue
		}
		total++
		if len(servers) < limit {
			servers = append(servers, FailingServer{
				Server:   e.name,
				Failures: e.failures,
				Err:      e.lastErr,
				RetryAt:  e.retryAt,
				LastUsed: e.lastUsed,
				HasKeys:  e.keys != nil,
			})
		}
	}
	return total, servers
}
