// Package upstream is how fedgate reaches its own homeserver.
//
// A [Member] is one homeserver address (a base URL such as
// "http://127.0.0.1:8008") with its own pool of keep-alive HTTP/1.1
// connections and its own timeouts. [New] builds one from [Options], which
// mirror one [upstream] section of the configuration; the gateway builds
// one Member per homeserver it forwards to (and a pool of homeserver
// workers is a set of Members).
//
// [Member.RoundTrip] writes a request exactly as given: the method, the
// request-target byte for byte (the homeserver checks the X-Matrix
// signature over it again), the header fields as received minus the
// hop-by-hop ones, and the body with a Content-Length. Nothing is
// rebuilt from a parsed URL and nothing is added (no User-Agent, no
// Accept-Encoding). It reads the response head with net/http's parser and
// returns the body as a stream the caller relays ([Body.StreamTo]) or
// reads in full ([Body.ReadAll]). Everything happens on the caller's
// goroutine: no reader or writer goroutine per connection.
//
// Every failure is an *[Error] whose [Kind] says how far the exchange got,
// which is what decides the answer to the remote server (502 or 504) and
// whether trying another member could be safe:
//
//   - [NotSent]: no connection could be made; nothing reached the
//     homeserver.
//   - [NoResponse]: the request was sent (perhaps partly) and the
//     connection broke before any byte of a response arrived.
//   - [HeaderTimeout]: the response head did not arrive in time.
//   - [BadResponse]: what arrived is not an HTTP/1.x response head.
//   - [BodyBroken]: the response broke off after its head (closed, reset,
//     malformed chunk, or a pause longer than the body timeout).
//
// A connection that was idle in the pool and turns out to be dead is
// never the caller's problem: an idle connection is checked before reuse
// (one non-blocking peek at its socket), and a reused connection that
// breaks before any response byte is retried once on a new connection
// when nothing was written or the method is safe to repeat.
//
// A Member is safe for concurrent use. It owns no goroutine except a
// timer that closes connections idle for longer than
// [Options.IdleTimeout]. [Member.Close] retires it: idle connections are
// closed at once, busy ones when their exchange ends.
//
// # Pools and routes
//
// A [Set] is what one [upstream] section builds ([NewSet]): a default
// [Pool] and routes that send some endpoints (by class or operation, the
// names policy rules use) to pools of their own, such as homeserver
// workers. Each pool spreads requests over its members by a [Balance]:
// in turn, by the least busy member, or by a consistent (rendezvous)
// hash of the verified origin, so that one remote server's transactions
// stay on one worker. [Set.RoundTrip] picks the pool with one map lookup
// and the member without a lock, sends the request there, and when that
// member could not take it (nothing sent, or the connection broke before
// any answer and the request is safe to repeat, see [Repeatable]) sends
// it once more to another member of the same pool. No request is ever
// repeated after a response head arrived.
//
// Members that fail are marked down for a growing period and skipped
// while another member can take their requests; [Set.Probe] checks every
// member actively (it is the gateway's readiness probe too). That state
// lives in a [Tracker] keyed by the Set's scope (the hosted server whose
// pools they are), pool and member URL, so it survives the reload that
// replaces a Set and is never shared between hosted servers; [Set.Status]
// reports it for readiness, metrics and the console. The files: set.go
// (the Set and its route table), pool.go (a pool's round trip and
// failover), balance.go, health.go, probe.go (probes and status),
// retry.go (what may be sent twice).
package upstream
