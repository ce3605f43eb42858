package certs_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// egressPool trusts only the CA.
func egressPool(t *testing.T, ca *certs.EgressCA) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM()) {
		t.Fatal("CertPEM is not PEM")
	}
	return pool
}

func TestEgressCAOverSockets(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "egress-ca")
	ca, err := certs.LoadOrCreateEgressCA(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		perm os.FileMode
	}{{certs.EgressCAKeyFile, 0o600}, {certs.EgressCACertFile, 0o644}} {
		st, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil || st.Mode().Perm() != f.perm {
			t.Errorf("%s: mode %v (%v), want %v", f.name, st.Mode().Perm(), err, f.perm)
		}
	}
	if ca.CertPath() != filepath.Join(dir, certs.EgressCACertFile) {
		t.Errorf("CertPath() = %q", ca.CertPath())
	}
	onDisk, _ := os.ReadFile(ca.CertPath())
	if !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Error("CertPEM differs from the file")
	}

	// One listener intercepts every name; the fallback stands for the
	// CONNECT host of clients that send no SNI (IP literal destinations).
	ln := listen(t)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: ca.GetCertificateOr("127.0.0.1")}
	addr := serveTLS(t, ln, cfg, okHandler)
	pool := egressPool(t, ca)
	for _, name := range []string{"matrix.example.org", "Other.Example.NET", "synapse.internal.test", "127.0.0.1"} {
		sni := name
		if net.ParseIP(name) != nil {
			sni = "" // Go clients send no SNI for IP addresses either
		}
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: name})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		leaf := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if sni != "" && leaf.VerifyHostname(strings.ToLower(name)) != nil {
			t.Errorf("%s: leaf covers %v %v", name, leaf.DNSNames, leaf.IPAddresses)
		}
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life > 26*time.Hour {
			t.Errorf("%s: leaf lives %v", name, life)
		}
	}

	// A client trusting only the system roots or another CA refuses it.
	other := fedtest.NewCA(t)
	if _, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: other.Pool(), ServerName: "matrix.example.org"}); err == nil {
		t.Error("a client trusting another CA accepted the leaf")
	}

	// Restart: the same CA is loaded, and its leaves verify against the
	// pool built from the first start.
	again, err := certs.LoadOrCreateEgressCA(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Fatal("restart created a new CA")
	}
	leaf, err := again.CertificateFor("matrix.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "matrix.example.org"}); err != nil {
		t.Fatal(err)
	}
}

func TestEgressCARefusesBrokenFolders(t *testing.T) {
	t.Parallel()
	good := filepath.Join(t.TempDir(), "good")
	if _, err := certs.LoadOrCreateEgressCA(good, nil); err != nil {
		t.Fatal(err)
	}
	otherDir := filepath.Join(t.TempDir(), "other")
	if _, err := certs.LoadOrCreateEgressCA(otherDir, nil); err != nil {
		t.Fatal(err)
	}
	read := func(dir, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	leafCA := fedtest.NewCA(t)
	leafDir := t.TempDir()
	leafCert, leafKey := leafCA.WriteLeafFiles(t, leafDir, "not-a-ca.example")
	chainPEM, _ := os.ReadFile(leafCert)
	leafBlock, _ := pem.Decode(chainPEM) // the leaf without its CA
	leafKeyPEM, _ := os.ReadFile(leafKey)

	for _, tc := range []struct {
		name      string
		cert, key []byte // nil: file absent
		wantErr   string
	}{
		{"key without certificate", nil, read(good, certs.EgressCAKeyFile), "incomplete"},
		{"certificate without key", read(good, certs.EgressCACertFile), nil, "incomplete"},
		{"mismatched pair", read(good, certs.EgressCACertFile), read(otherDir, certs.EgressCAKeyFile), "unusable"},
		{"garbage", []byte("garbage"), []byte("garbage"), "unusable"},
		{"leaf instead of CA", pem.EncodeToMemory(leafBlock), leafKeyPEM, "not a CA certificate"},
	} {
		dir := t.TempDir()
		if tc.cert != nil {
			os.WriteFile(filepath.Join(dir, certs.EgressCACertFile), tc.cert, 0o644)
		}
		if tc.key != nil {
			os.WriteFile(filepath.Join(dir, certs.EgressCAKeyFile), tc.key, 0o600)
		}
		_, err := certs.LoadOrCreateEgressCA(dir, nil)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.wantErr)
		}
		// Nothing was overwritten: the operator decides.
		if got, _ := os.ReadFile(filepath.Join(dir, certs.EgressCACertFile)); !bytes.Equal(got, tc.cert) {
			t.Errorf("%s: certificate file changed", tc.name)
		}
	}

	if os.Geteuid() != 0 { // root reads anything
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, certs.EgressCACertFile), read(good, certs.EgressCACertFile), 0o644)
		os.WriteFile(filepath.Join(dir, certs.EgressCAKeyFile), read(good, certs.EgressCAKeyFile), 0o000)
		if _, err := certs.LoadOrCreateEgressCA(dir, nil); err == nil || !strings.Contains(err.Error(), "reading egress CA key") {
			t.Errorf("unreadable key: %v", err)
		}
	}

	// An expired CA is refused with the way out.
	_, err := certs.NewEgressCA(certs.EgressCAOptions{Dir: good, Now: func() time.Time { return time.Now().Add(11 * 365 * 24 * time.Hour) }})
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "remove") {
		t.Errorf("expired CA: %v", err)
	}
}

func TestEgressCABadNames(t *testing.T) {
	t.Parallel()
	ca, err := certs.LoadOrCreateEgressCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "example.org:8448", "*.example.org", "exa mple.org", "a..b", "fe80::1%eth0", "[127.0.0.1]", strings.Repeat("a", 300), "example.org\x00.evil"} {
		if _, err := ca.CertificateFor(name); !errors.Is(err, certs.ErrBadLeafName) {
			t.Errorf("CertificateFor(%q) = %v, want ErrBadLeafName", name, err)
		}
	}
	if _, err := ca.GetCertificate(&tls.ClientHelloInfo{}); !errors.Is(err, certs.ErrNoServerName) {
		t.Errorf("no SNI: %v", err)
	}
	for in, want := range map[string]string{"[::1]": "::1", "::ffff:127.0.0.1": "127.0.0.1", "Example.ORG.": "example.org"} {
		c, err := ca.CertificateFor(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if err := c.Leaf.VerifyHostname(want); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}
