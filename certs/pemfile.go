package certs

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// randomSerial returns a random positive 128-bit certificate serial number.
func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// encodeKey renders an ECDSA private key as PKCS#8 PEM.
func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// pairHash identifies the contents of a certificate and key file pair.
type pairHash [sha256.Size]byte

func hashPair(certPEM, keyPEM []byte) pairHash {
	h := sha256.New()
	var n [8]byte
	for i := range n {
		n[i] = byte(len(certPEM) >> (8 * i))
	}
	h.Write(n[:])
	h.Write(certPEM)
	h.Write(keyPEM)
	var out pairHash
	h.Sum(out[:0])
	return out
}

// parsePair parses a PEM certificate chain and key and checks that they
// belong together and that the first certificate is a server certificate.
// The returned certificate has Leaf set.
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		return nil, errors.New("no leaf certificate")
	}
	if cert.Leaf.IsCA {
		return nil, errors.New("the first certificate is a CA certificate, not a server certificate")
	}
	return &cert, nil
}

// validityError says why leaf is not valid at now, or returns nil.
func validityError(leaf *x509.Certificate, now time.Time) error {
	switch {
	case !now.Before(leaf.NotAfter):
		return fmt.Errorf("certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}
