package certs

import "crypto/tls"

// acmeTLSALPNProtocol is the ALPN protocol of the TLS-ALPN-01 challenge
// (RFC 8737). Only an ACME validation server offers it, and offers nothing
// else; normal clients never see it negotiated.
const acmeTLSALPNProtocol = "acme-tls/1"

// cipherSuites are the TLS 1.2 suites offered: forward-secret AEAD suites
// only (Mozilla's "intermediate" list without DHE). TLS 1.3 suites are not
// configurable in Go and are all modern. Go's server picks among these by
// its own preference order (AES-GCM with hardware support, else
// ChaCha20-Poly1305), not the client's.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// baseTLSConfig is the part of every listener's configuration that does not
// depend on the mode: TLS 1.2 or newer, modern suites, HTTP/2 and HTTP/1.1
// via ALPN. Curve preferences stay Go's defaults, which include the hybrid
// post-quantum key exchange.
func baseTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: append([]uint16(nil), cipherSuites...),
		NextProtos:   []string{"h2", "http/1.1"},
	}
}
