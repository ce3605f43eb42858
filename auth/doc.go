// Package auth owns the Matrix federation protocol's cryptographic core:
// unpadded base64, signing-key ids and key files (Synapse and Dendrite
// formats), canonical JSON, JSON signing and verification, the X-Matrix
// Authorization header, server key documents, and the keyring that caches
// remote servers' keys.
//
// auth does no networking of its own: the keyring is given a fetch function.
// Everything here is safe for concurrent use; keys and parsed documents are
// immutable values.
package auth
