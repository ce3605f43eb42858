// Package certs owns the certificates of fedgate's TLS listeners. A
// [Manager] built from [Options] hands every TLS listener its *tls.Config
// and, in ACME mode, the plain-HTTP handler that answers HTTP-01 challenges.
//
// Modes:
//   - self_signed: an ECDSA P-256 certificate for the configured names,
//     generated into the data folder on first start and reused afterwards.
//     For development only; real federation peers refuse it.
//   - files: a PEM certificate chain and key, reloaded on change or SIGHUP.
//   - acme: certificates from an ACME CA through certmagic.
//
// cmd/fedgate builds one Manager per process; it outlives configuration
// reloads. A Manager is safe for concurrent use.
package certs
