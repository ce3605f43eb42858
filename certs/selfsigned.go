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
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/internal/fsutil"
)

const (
	// selfSignedValidity is how long a generated development certificate
	// lasts.
	selfSignedValidity = 365 * 24 * time.Hour
	// selfSignedRenewBefore regenerates a development certificate that
	// expires within this long.
	selfSignedRenewBefore = 30 * 24 * time.Hour
)

// selfSignedPaths returns where the development certificate is kept.
func selfSignedPaths(dataDir string) (dir, certPath, keyPath string) {
	dir = filepath.Join(dataDir, "selfsigned")
	return dir, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
}

// loadOrCreateSelfSigned returns the development certificate kept in
// dataDir/selfsigned/, creating it when it is missing, unreadable, expires
// within 30 days, or does not cover exactly the configured names.
func loadOrCreateSelfSigned(dataDir string, names []string, now time.Time, log *zap.Logger) (*tls.Certificate, string, error) {
	dir, certPath, keyPath := selfSignedPaths(dataDir)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case err == nil && coversExactly(cert.Leaf, names) && cert.Leaf.NotAfter.Sub(now) > selfSignedRenewBefore:
		log.Warn("serving a self-signed certificate: for development only, real federation servers refuse it",
			zap.String("cert_file", certPath), zap.Strings("names", names), zap.Time("not_after", cert.Leaf.NotAfter))
		return &cert, certPath, nil
	case err == nil:
		log.Info("self-signed certificate does not match the configured names or expires soon, generating a new one",
			zap.String("cert_file", certPath), zap.Strings("names", names), zap.Strings("had", subjects(cert.Leaf)))
	case !errors.Is(err, fs.ErrNotExist):
		log.Warn("existing self-signed certificate unusable, generating a new one", zap.String("cert_file", certPath), zap.Error(err))
	}
	certPEM, keyPEM, err := generateSelfSigned(names, now)
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("creating self-signed certificate folder: %w", err)
	}
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, "", fmt.Errorf("writing self-signed key: %w", err)
	}
	if err := fsutil.WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, "", fmt.Errorf("writing self-signed certificate: %w", err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("loading generated certificate: %w", err)
	}
	log.Warn("generated a self-signed certificate: for development only, real federation servers refuse it",
		zap.String("cert_file", certPath), zap.Strings("names", names), zap.Time("not_after", cert.Leaf.NotAfter))
	return &cert, certPath, nil
}

// coversExactly reports whether leaf names exactly the given names (as
// normalised by normalizeNames), in any order.
func coversExactly(leaf *x509.Certificate, names []string) bool {
	if leaf == nil {
		return false
	}
	have := subjects(leaf)
	want := slices.Clone(names)
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
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
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
	addSubjects(tmpl, names)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// addSubjects puts names into a certificate template as DNS or IP SANs.
func addSubjects(tmpl *x509.Certificate, names []string) {
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
}
