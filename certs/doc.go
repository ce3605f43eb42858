// Package certs owns the certificates of fedgate's TLS listeners and the
// egress CA.
//
// A [Manager] built from [Options] gives every TLS listener its
// *tls.Config and, in acme mode, the plain-HTTP handler that answers
// HTTP-01 challenges. Modes:
//
//   - acme: certificates from an ACME CA (Let's Encrypt by default, or any
//     directory such as step-ca or Pebble) through certmagic: HTTP-01 on
//     the plain listener, TLS-ALPN-01 on a TLS listener, file storage that
//     restarts reuse and several instances may share, renewal and OCSP
//     stapling in the background. Obtaining never blocks startup; until a
//     certificate exists, handshakes for its name fail with a TLS alert.
//   - files: a PEM chain and key, re-read when their contents change
//     (polled) or on [Manager.Reload]; a bad replacement is refused and
//     the old pair keeps serving.
//   - self_signed: an ECDSA certificate generated into the data folder on
//     first start and reused. For development only: federation peers
//     refuse self-signed certificates.
//
// What cmd/fedgate wires, once per process:
//
//	m, err := certs.New(opts)        // validates; files/self_signed load here
//	err = m.Start(ctx)               // returns at once; acme works in the background
//	defer m.Stop()
//	tlsCfg := m.TLSConfig()          // every TLS listener (federation, https)
//	h = m.HTTPHandler(redirect)      // the plain listener (:80)
//	err = m.Reload()                 // on SIGHUP
//	ok, why := m.Ready()             // /readyz; m.Status() for metrics
//
// The Manager outlives configuration reloads: certmagic keeps one Cache
// per process, and its GetConfigForCert callback hands out the current
// certmagic Config when a renewal comes due. fedgate never uses
// certmagic's package-level Default, HTTPS, TLS or Listen; every field it
// relies on is set explicitly. Events from certmagic (obtaining, obtained,
// failed, revoked) are logged and kept for [Manager.Status].
//
// Several hosted server names behind one gateway ([[servers]]) use a
// [Set]: one Manager per distinct set of certificate settings (servers
// sharing an ACME account share one certmagic cache, one certificate per
// name), the certificate chosen by SNI, the first server's for unknown
// names. cmd wires a Set where it would wire a Manager; [Set.Update]
// applies a reload that adds or removes servers.
//
// [EgressCA] is the CA the egress uses to intercept a homeserver's
// outbound TLS: created on first start and reused, minting short-lived
// leaf certificates per requested name.
//
// This package logs through zap, as certmagic does; it never imports
// gateway, config or cmd.
package certs
