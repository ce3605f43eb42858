package auth

import (
	"crypto/ed25519"

	"github.com/fedgate/fedgate/internal/edverify"
)

// Verifier checks signatures by one ed25519 public key prepared once: the
// key is decoded once and, for the keys a [Keyring] hands out, a table of
// its multiples is built (about 7.5 KiB), which makes each check cost
// about 40 % of crypto/ed25519.Verify. It accepts and refuses exactly
// what crypto/ed25519.Verify does (the cofactorless check homeservers
// apply). A Verifier is immutable and safe for concurrent use.
type Verifier struct {
	pub ed25519.PublicKey
	key *edverify.PublicKey
}

// NewVerifier prepares pub (32 bytes) for verifying, without the table:
// for a key used once or twice. Errors are *[Error] of kind KindUnknownKey
// for a key of the wrong length.
func NewVerifier(pub ed25519.PublicKey) (*Verifier, error) {
	return newVerifier(pub, false)
}

// NewPrecomputedVerifier is [NewVerifier] with the table: it costs about
// one and a half verifications once and pays for itself from the second
// signature checked.
func NewPrecomputedVerifier(pub ed25519.PublicKey) (*Verifier, error) {
	return newVerifier(pub, true)
}

func newVerifier(pub ed25519.PublicKey, precompute bool) (*Verifier, error) {
	prepare := edverify.New
	if precompute {
		prepare = edverify.Precompute
	}
	key, err := prepare(pub)
	if err != nil {
		return nil, newError(KindUnknownKey, err, "public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	return &Verifier{pub: key.Bytes(), key: key}, nil
}

// PublicKey returns the key (do not modify it).
func (v *Verifier) PublicKey() ed25519.PublicKey { return v.pub }

// Precomputed reports whether v holds the table of multiples.
func (v *Verifier) Precomputed() bool { return v.key.Precomputed() }

// Verify reports whether sig is a valid signature of msg, with exactly
// crypto/ed25519.Verify's answer.
func (v *Verifier) Verify(msg, sig []byte) bool { return v.key.Verify(msg, sig) }
