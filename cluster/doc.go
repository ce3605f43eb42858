// Package cluster lets several fedgate instances share their state in
// Redis (or Valkey, which speaks the same protocol): rate limits, the
// keyring of remote servers' keys with its fetch locks and failure
// backoff, the egress backoff, and ACME storage. It is the only package
// that talks to Redis (through github.com/redis/go-redis/v9).
//
// # Seams
//
// The packages below the gateway do not import it. Each defines a small
// interface that a cluster type implements, and cmd/fedgate (ACME) and
// gateway (the rest) wire them when [cluster] is configured:
//
//	policy.SharedLimiter  <- (*Client).Limiter(namespace)  GCRA buckets, one Lua script call
//	auth.SharedKeyStore   <- (*Client).Keys()               documents, fetch lock, failure backoff
//	gateway's backoff     <- (*Client).Backoff()            published changes, local reads
//	certmagic.Storage     <- (*Client).CertStorage(...)     values, locks with fencing tokens
//
// Without [cluster] none of this exists and every package keeps its state
// in process, exactly as before.
//
// # The request path
//
// A request makes at most one round trip: the rate-limit script takes the
// cluster-wide per_ip, per_origin and class buckets together, after the
// signature check (policy.Limiters.AllowVerified). The keyring goes to
// Redis only after a miss in its own memory, and the egress backoff is
// read from each instance's own table, which the other instances' changes
// reach through a Redis channel.
//
// # When Redis fails
//
// Every round trip on the request path is bounded by cluster.timeout and
// never retried. The first failure that says Redis is unreachable, slow or
// not ready marks it down (logged once, fedgate_cluster_redis_up 0): from
// then on the seams answer "use your local state" without a round trip.
// [Client.Run] probes with PING at growing intervals and marks Redis up
// again on the first answer (logged once), and shared state resumes
// without a restart. ACME storage is the exception: certmagic needs its
// storage, so its operations wait for Redis (with their own, longer
// timeouts) while the certificates in memory keep being served.
//
// # Keys
//
// Every key starts with cluster.prefix ("fedgate:"):
//
//	rl:<namespace>:<limiter>:<key>  GCRA state (a number), expiring when the bucket is full again
//	keys:<server>                   keyring record (hash: doc, fail), expiring after 8 days
//	keys:<server>:lock              keyring fetch lock, a few seconds
//	backoff:<destination>           egress backoff entry, expiring with it; "backoff" is the channel
//	acme:item:<key>, acme:index     certmagic values and their index
//	acme:lock:<name>, acme:fence    certmagic locks and the fencing counter
//
// Everything read back from Redis is untrusted input: sizes are bounded,
// numbers checked, key documents verified again by the keyring, and
// malformed records ignored (and counted), never fatal.
package cluster
