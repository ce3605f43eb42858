// Package fedtest holds test infrastructure shared by fedgate's packages:
// a throw-away certificate authority, a DNS server on 127.0.0.1 built with
// miekg/dns, a homeserver that records every request it receives, a
// Pebble ACME server (Let's Encrypt's test CA, run from its binary) and a
// settable clock.
//
// Everything binds loopback addresses chosen by the kernel, signals
// readiness instead of sleeping, and is torn down with t.Cleanup. The
// fedgate binary uses none of it; the load generator (cmd/fedload) uses
// the certificate authority through its error-returning functions
// (GenerateCA, Leaf, WriteLeaf).
package fedtest
