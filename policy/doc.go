// Package policy decides who may federate with this server and how much:
// server allow and deny lists (from the configuration and an external list
// file), peer networks, endpoint, room and user rules, and rate and
// concurrency limits. It owns no sockets and writes no responses; the
// gateway asks it and renders the answers.
//
// # Compiled once, read lock-free
//
// [New] compiles the [policy] and [rate_limit] sections (config.Policy and
// config.RateLimit: policy takes the sections as they are rather than
// mirroring every field in its own struct) and the list file into one
// immutable [Snapshot]. [Engine.Update] compiles a new configuration and
// swaps the snapshot with one atomic store; on error nothing changes.
// Requests load the snapshot once and use it to the end, so a reload never
// affects a request in flight. Exact server names are hash lookups, globs go
// through a suffix index and networks through one hash lookup per prefix
// length, so a check costs well under a microsecond and allocates nothing
// unless it denies, whatever the size of the lists.
//
// # Where the gateway calls it
//
// Inbound, cheapest first:
//
//	snap := engine.Snapshot()                       // once per request
//	snap.CheckPeer(peerAddr)                        // before anything
//	engine.Limiters().AllowIP(peerAddr)             // before authentication
//	// route lookup, X-Matrix parse, destination check
//	snap.CheckOrigin(origin)                        // before any key fetch
//	// body read, key fetch, signature check
//	engine.Limiters().AllowVerified(ctx, peer, origin, m.Endpoint) // AllowOrigin, plus shared per_ip in cluster mode
//	release, r := engine.Limiters().AcquireOrigin(ctx, origin) // defer release()
//	snap.CheckRequest(origin, &m, rawQuery, body)   // endpoint, room, user rules
//
// The per-origin limits belong after the signature check: before it the
// origin is only a claim, and anyone could empty a real server's bucket, or
// hold its concurrency slots with slow bodies, by sending requests in its
// name. Until then per_ip and the server's read timeouts bound the cost of
// junk. Endpoints without X-Matrix (legacy media, version) get
// CheckRequest with origin "", so deny_endpoints covers them too.
//
// Egress: snap.CheckDestination(dest) before any DNS lookup, then
// Limiters().AllowDestination(dest) and snap.CheckOutbound(dest, &m,
// rawQuery). For /send, snap.CheckRoom lets the gateway drop the PDUs and
// EDUs of denied rooms while still answering 200.
//
// # Decisions
//
// Every denial carries a reason code (the Reason constants), a Matrix
// errcode and a message naming the code, and the configuration entry that
// matched ([Decision.Rule], for the log only). A [LimitResult] names the
// limiter that fired and when to retry. With dry_run, denials come back
// allowed and marked DryRun, so the caller can log and count them. Denials
// are counted by reason for metrics ([Engine.Stats]); logging each one, once,
// is the caller's job.
//
// # Long-lived state
//
// The [Limiters] (token buckets from golang.org/x/time/rate, in-flight
// counts) belong to the [Engine] and survive reloads. Their memory is
// bounded: full or idle buckets are forgotten by [Engine.Run], and each
// limiter remembers at most [Options.MaxLimiterKeys] keys however many
// distinct addresses or origins it sees.
//
// # External rule sets
//
// Policy sources outside this package (moderation policy rooms in
// policyroom, signed federation lists in signedlist) own the network and
// the parsing; they hand the engine named rule sets with
// [Engine.SetExternal] and confirm them with [Engine.SetExternalStaleAt].
// Each set is compiled on its own into the same hash maps and glob index
// as the configuration's lists and swapped in with one atomic store, as a
// reload is; sets survive [Engine.Update]. Deny entries of a ban list
// ([KindBanList]) give origin_banned and destination_banned, those of a
// federation list ([KindList]) origin_denied and destination_denied; a set
// may be dry-run on its own, and past its StaleAt every origin and
// destination check fails closed (ban_list_stale, list_stale).
// [Decision.Rule] names the set and the entry's provenance.
//
// # Cluster mode
//
// With [Options.Shared] (a [SharedLimiter], implemented over Redis by
// package cluster), [Limiters.AllowVerified] takes the cluster-wide per_ip,
// per_origin and class buckets in one call, and [Limiters.AllowEgress] the
// per_destination bucket; AllowIP stays a local guard before
// authentication. When the store fails, the local buckets decide.
// Concurrency caps are always per instance.
//
// [Engine.Run] polls list_file: a rewritten file is reloaded; a bad one, or
// one with a lower version, is refused and the last good list kept. With
// list_max_age, a list whose file has not been rewritten for that long makes
// every origin and destination check fail closed (list_stale).
package policy
