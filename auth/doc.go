// Package auth owns the Matrix federation protocol's cryptographic core:
// unpadded base64, signing-key ids and key files (Synapse and Dendrite
// formats), canonical JSON, JSON signing and verification, the X-Matrix
// Authorization header, server key documents and notary answers, and the
// keyring that caches remote servers' keys.
//
// It imports only the standard library and internal/servername, and does
// no networking: the keyring is given a [Fetcher].
//
// # Files
//
//   - canonical.go, marshal.go: canonical JSON from raw bytes
//     ([Canonicalize], [IsCanonical], [Canonicalizer]) and from Go values
//     ([Marshal]).
//   - sign.go: the Signing JSON algorithm ([SignJSON], [VerifyJSON],
//     [AddSignature]).
//   - xmatrix.go, request.go: the X-Matrix header ([ParseAuthorization],
//     [ParseXMatrix], [XMatrix.String]) and request signatures
//     ([SignRequest], [VerifyRequest]).
//   - keydoc.go: our key document ([BuildKeyDocument]) and remote ones
//     ([ParseServerKeys], [ParseNotaryResponse], [CheckNotarySignature]).
//   - keyring*.go: the [Keyring].
//   - errors.go: the one error type, [Error], with a [Kind].
//
// # Wiring in the gateway
//
// Inbound, per request, after the route lookup:
//
//	xs, err := auth.ParseAuthorization(r.Header.Values("Authorization"))
//	// KindMissingHeader -> 401 M_UNAUTHORIZED, KindMalformedHeader -> 400 M_UNAUTHORIZED
//	// check xs[0].Destination (if set) is one of our names, else 401;
//	// apply origin policy to xs[0].Origin before any key fetch; read the body
//	for _, x := range xs { // every supplied signature must verify
//		pub, err := keyring.VerifyKey(ctx, x.Origin, x.Key)
//		// KindUnknownKey / KindKeyFetchFailed -> 401 M_UNAUTHORIZED
//		err = auth.VerifyRequest(x, r.Method, r.RequestURI, ourName, body, pub)
//		// KindBadSignature, KindDestinationMismatch -> 401; KindBadBody -> 400 M_BAD_JSON
//	}
//
// Send [Error.Msg] to the remote server and log the whole error.
//
// Outbound (egress), per request, with the exact request-target bytes and
// body that will be sent:
//
//	x, err := auth.SignRequest(requestKey, method, requestURI, ourName, destination, body)
//	req.Header.Set("Authorization", x.String())
//
// Served locally: GET /_matrix/key/v2/server is [BuildKeyDocument] of the
// configured keys (rebuilt well before valid_until_ts); notary queries are
// answered from [Keyring.ServerKeysFor], each document passed through
// [AddSignature] with each of our keys.
//
// At start: [NewKeyring] with the configured notaries, pinned keys and
// cache file, then go keyring.Run(ctx); at shutdown keyring.Close().
//
// Cluster mode: [KeyringOptions.Shared] (a [SharedKeyStore], package
// cluster's Redis store) is consulted after a miss in memory, with a
// [SharedSealer] that seals documents before they are stored and checks
// the seal when they are read back.
//
// Everything here is safe for concurrent use unless a type's doc says
// otherwise ([Canonicalizer]); keys and parsed documents are immutable.
package auth
