// Package discovery finds where a Matrix server lives and talks to it:
// the spec's server discovery algorithm (IP literals, explicit ports,
// /.well-known/matrix/server delegation, SRV _matrix-fed._tcp then the
// deprecated _matrix._tcp, A/AAAA on port 8448), DNS over
// github.com/miekg/dns against configured resolvers, the caches the spec
// asks for, an SSRF guard, and the federation HTTP client that connects with
// the right Host header, SNI and certificate checks.
//
// It owns no policy (who may be contacted is gateway's and policy's
// business) and no signing (auth). It imports only the standard library,
// miekg/dns and fedgate's internal leaf packages.
//
// Wiring: build one [Resolver] with [NewResolver] from [Options] and one
// [Client] over it with [NewClient]; keep both for the life of the process
// (their caches and connection pool are the point) and share them between
// the keyring and the egress. [Client.Do] sends a request to a server name;
// [Resolver.Resolve] alone explains a resolution ([Result.Steps]), which is
// what "fedgate resolve" prints.
//
// Failures are [*Error] values naming the phase that failed ([PhaseDNS],
// [PhaseGuard], [PhaseDial], [PhaseTLS], ...). A failed or invalid
// well-known document is never an error by itself: as the spec says,
// discovery falls through to SRV and A/AAAA. A DNS failure (SERVFAIL,
// timeout, no resolver answering) in the SRV or address steps is an error,
// not "no record": falling through to the next step would silently pick a
// worse target, for example port 8448 of a host whose SRV record points
// elsewhere.
//
// Everything here is safe for concurrent use. Nothing runs in the
// background apart from the connection pool's per-connection goroutines
// (net/http's); a lookup that misses the cache runs in one goroutine per
// distinct question, shared by every caller asking it, and fills the cache
// even if those callers give up. Caches are bounded
// ([Options.MaxCacheEntries]); pooled connections close after 90 s idle.
package discovery
