// Package gateway owns fedgate's listeners and everything that happens to a
// request: routing against the endpoint table, the inbound pipeline that
// authenticates and polices federation requests before forwarding them to
// the homeserver, the endpoints fedgate serves itself (well-known, key
// document, notary), the egress that captures the homeserver's outbound
// federation, and the Matrix error responses all of these send.
//
// Request flow (inbound):
//
//	TLS listener -> route (404/405 M_UNRECOGNIZED) -> local endpoint?
//	  -> X-Matrix parse -> destination check (hosted server) -> origin policy
//	  -> body read (size limit) -> origin key (keyring) -> signature
//	  -> endpoint/room/user policy and limits -> forward: the hosted
//	     server's upstream pools (route, balance, failover) -> homeserver
//
// Request flow (egress, one plain-HTTP listener for the homeserver):
//
//	CONNECT (TLS interception, or passthrough) | matrix-federation:// (Synapse)
//	  -> route -> X-Matrix origin is a hosted server -> destination lists (before DNS)
//	  -> endpoint/room rules -> body -> signature against our own keys
//	  -> per-destination limit and backoff -> fresh X-Matrix signature
//	  -> discovery client (SSRF guard, SNI) -> remote -> relayed answer
//	     (or, for another hosted server, its inbound pipeline in-process)
//
// A [Gateway] reads its configuration through one immutable runtime
// snapshot per request; [Gateway.Reload] swaps the snapshot atomically.
// Listeners, the keyring and limiter state outlive reloads.
//
// Several hosted servers (hosted.go): the snapshot holds one hostedServer
// per server name (top level and [[servers]]) and a hosting.Table. A
// request is handled as the server its Host and SNI name until the
// destination stage settles it from the X-Matrix destination, which must
// be a hosted name and agree with them; forwarding (through the server's
// own upstream.Set, pools.go), local answers, policy and limits are that
// server's. The egress speaks as the hosted server its
// X-Matrix origin names (and its egress secret allows), and hands requests
// for another hosted server to the inbound pipeline in-process.
//
// Cluster mode ([Options].Cluster, cluster.go): the gateway hands
// package cluster's Redis-backed seams to policy (shared rate limits,
// namespaced by hosted server name), the keyring (shared documents, sealed with
// our key) and the egress backoff table, and registers the cluster
// metrics. Nothing else in the gateway knows about Redis.
//
// Upstream pools (pools.go): one prober checks every hosted server's
// members (the readiness probe too); their health lives in one
// upstream.Tracker, scoped by hosted server name, that outlives reloads.
//
// Operations: the admin listener (admin.go) serves the operator console
// (/ and /status.json, built on package console in console.go), /healthz,
// /readyz ([Gateway.Ready]), Prometheus metrics from the Gateway's own
// registry (metrics.go, metrics_state.go) and pprof. Every request ends in
// finish, which counts it, feeds the console's recorder and writes the
// access log line (accesslog.go) and, for denials, the decision log line
// (decisionlog.go); log.hash_server_names
// turns server names in all of these logs into keyed hashes (namehash.go).
// The packages below gateway report through events and log through slog,
// which the gateway bridges to zap.
package gateway
