// Command fedload is fedgate's load generator and comparison harness.
//
// It simulates N origin servers, each with its own ed25519 key and its
// key document served on loopback TLS (from a CA fedload makes), runs a
// minimal upstream homeserver, writes a fedgate configuration that reaches
// the origins through [outbound.overrides], signs thousands of distinct
// X-Matrix requests up front, and drives fedgate (and, for comparison, the
// same upstream directly, Caddy and nginx) in interleaved rounds. It reads
// each proxy's CPU time from /proc and prints req/s, p50/p90/p99 latency,
// CPU per request and ratios.
//
// Modes:
//
//	fedload bench  run the comparison (the default)
//	fedload soak   run a bounded mixed load against fedgate and report RSS,
//	               goroutines, threads and descriptors over time
//
// Everything listens and connects on 127.0.0.1 only, and every run is
// bounded by a request count and a duration. Run "fedload bench -h".
package main
