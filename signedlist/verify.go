package signedlist

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fedgate/fedgate/policy"
)

// MaxListSize bounds a signed list (the JWS text): policy's bound on a
// list file plus the base64 and header overhead.
const MaxListSize = policy.MaxListFileSize*4/3 + 64<<10

// Algorithms are the JWS algorithms a list may be signed with.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// Errors callers may branch on; every refusal wraps one of them.
var (
	// ErrMalformed: not a compact JWS, an algorithm other than ES256 or
	// EdDSA (including "none"), or no x5c chain.
	ErrMalformed = errors.New("not a signed list")
	// ErrUntrusted: the x5c chain does not reach a trusted root at the
	// time of use (another root, an expired or not yet valid certificate).
	ErrUntrusted = errors.New("signer not trusted")
	// ErrBadSignature: the signature does not verify with the signer's key.
	ErrBadSignature = errors.New("bad signature")
	// ErrBadPayload: the signed payload is not a valid list.
	ErrBadPayload = errors.New("bad list")
)

// Verifier checks signed lists against a set of trusted roots. It is
// immutable and safe for concurrent use.
type Verifier struct {
	roots *x509.CertPool
	n     int
}

// NewVerifier builds a Verifier trusting the CERTIFICATE blocks of
// rootsPEM (list_trust). It fails when there is none or one does not
// parse.
func NewVerifier(rootsPEM []byte) (*Verifier, error) {
	pool := x509.NewCertPool()
	n := 0
	rest := rootsPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trusted root %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate in the trusted roots")
	}
	return &Verifier{roots: pool, n: n}, nil
}

// Roots returns how many roots the verifier trusts.
func (v *Verifier) Roots() int { return v.n }

// Verified is a list that passed [Verifier.Verify].
type Verified struct {
	// List is the payload, parsed.
	List policy.ListDocument
	// Alg is the signature algorithm, "ES256" or "EdDSA".
	Alg string
	// Signer is the leaf certificate that signed the list.
	Signer *x509.Certificate
	// NotAfter is when the first certificate of the verified chain
	// expires: from then on the list no longer verifies.
	NotAfter time.Time
}

// Verify checks a compact JWS at the instant now and returns its list.
// Errors wrap [ErrMalformed], [ErrUntrusted], [ErrBadSignature] or
// [ErrBadPayload].
func (v *Verifier) Verify(data []byte, now time.Time) (*Verified, error) {
	if len(data) > MaxListSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(data), MaxListSize)
	}
	text := strings.TrimSpace(string(data))
	if strings.HasPrefix(text, "{") {
		return nil, fmt.Errorf("%w: JSON, not a compact JWS (list_signature = \"jws\" refuses an unsigned list)", ErrMalformed)
	}
	obj, err := jose.ParseSignedCompact(text, algorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(obj.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(obj.Signatures))
	}
	sig := obj.Signatures[0]
	h := sig.Protected
	chains, err := h.Certificates(x509.VerifyOptions{
		Roots:       v.roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if errors.Is(err, jose.ErrMissingX5cHeader) {
		return nil, fmt.Errorf("%w: no x5c certificate chain in the protected header", ErrMalformed)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	leaf := chains[0][0]
	alg := jose.SignatureAlgorithm(h.Algorithm)
	if err := keyFits(alg, leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	payload, err := obj.Verify(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	doc, err := policy.ParseListDocument(bytes.TrimSpace(payload))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPayload, err)
	}
	notAfter := leaf.NotAfter
	for _, c := range chains[0] {
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	return &Verified{List: doc, Alg: string(alg), Signer: leaf, NotAfter: notAfter}, nil
}

// keyFits checks that the certificate's key is the kind alg needs, so a
// P-384 or RSA certificate cannot stand behind an ES256 header.
func keyFits(alg jose.SignatureAlgorithm, pub any) error {
	switch alg {
	case jose.ES256:
		if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
			return nil
		}
	case jose.EdDSA:
		if _, ok := pub.(ed25519.PublicKey); ok {
			return nil
		}
	}
	return fmt.Errorf("the signer's certificate holds a %T key, which %s cannot use", pub, alg)
}
