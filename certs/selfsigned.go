package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
)

// selfSignedValidity is how long a generated development certificate lasts.
const selfSignedValidity = 365 * 24 * time.Hour

// loadOrCreateSelfSigned returns the development certificate kept in
// dataDir/selfsigned/, creating it when it is missing, expires within 30
// days, or does not cover exactly the configured names.
func loadOrCreateSelfSigned(dataDir string, names []string, log *zap.Logger) (*tls.Certificate, error) {
	dir := filepath.Join(dataDir, "selfsigned")
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case err == nil && coversExactly(cert.Leaf, names) && time.Until(cert.Leaf.NotAfter) > 30*24*time.Hour:
		log.Warn("using self-signed certificate: for development only, real federation servers will refuse it",
			zap.String("cert_file", certPath), zap.Strings("names", names), zap.Time("not_after", cert.Leaf.NotAfter))
		return &cert, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		log.Warn("existing self-signed certificate unusable, generating a new one", zap.Error(err))
	}
	certPEM, keyPEM, err := generateSelfSigned(names, time.Now())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing self-signed key: %w", err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing self-signed certificate: %w", err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading generated certificate: %w", err)
	}
	log.Warn("generated self-signed certificate: for development only, real federation servers will refuse it",
		zap.String("cert_file", certPath), zap.Strings("names", names))
	return &cert, nil
}

func coversExactly(leaf *x509.Certificate, names []string) bool {
	if leaf == nil {
		return false
	}
	var have []string
	have = append(have, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	want := make([]string, 0, len(names))
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			want = append(want, ip.String())
		} else {
			want = append(want, n)
		}
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(have, want)
}

// generateSelfSigned creates an ECDSA P-256 certificate for names (DNS
// names and IP addresses) and returns certificate and key as PEM.
func generateSelfSigned(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "fedgate development certificate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}
