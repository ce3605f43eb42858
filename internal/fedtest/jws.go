package fedtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Intermediate issues a CA certificate signed by ca, valid like ca.
func (ca *CA) Intermediate(t testing.TB, commonName string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             ca.Cert.NotBefore,
		NotAfter:              ca.Cert.NotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, key: key}
}

// ListSigner is a certificate and key that sign federation lists, with
// the chain to put into the x5c header (leaf first, root not included).
type ListSigner struct {
	Key   crypto.Signer
	Alg   jose.SignatureAlgorithm
	Chain []*x509.Certificate
}

// Signer issues a list-signing certificate from ca, valid from notBefore
// to notAfter, with an ECDSA P-256 key (alg ES256) or, when ed is set, an
// Ed25519 key (alg EdDSA). When ca is an [CA.Intermediate], its
// certificate follows the leaf in the chain.
func (ca *CA) Signer(t testing.TB, notBefore, notAfter time.Time, ed bool) *ListSigner {
	t.Helper()
	var key crypto.Signer
	alg := jose.ES256
	if ed {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, alg = k, jose.EdDSA
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: "fedgate test list signer"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf}
	if ca.certPEM == nil {
		chain = append(chain, ca.Cert) // ca is an intermediate
	}
	return &ListSigner{Key: key, Alg: alg, Chain: chain}
}

// Sign returns payload as a compact JWS signed by s, with the chain in
// the protected x5c header.
func (s *ListSigner) Sign(t testing.TB, payload []byte) string {
	t.Helper()
	x5c := make([]string, len(s.Chain))
	for i, c := range s.Chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	opts := (&jose.SignerOptions{}).WithHeader("x5c", x5c).WithType("JOSE")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: s.Alg, Key: s.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// UnsignedJWS returns payload as a compact JWS with the given protected
// header and an empty or arbitrary signature, for forgery tests ("alg":
// "none", a header naming another algorithm).
func UnsignedJWS(t testing.TB, header map[string]any, payload []byte, signature []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return strings.Join([]string{enc.EncodeToString(h), enc.EncodeToString(payload), enc.EncodeToString(signature)}, ".")
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
