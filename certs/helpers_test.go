package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// observedLogger returns a logger whose entries (info and above) the test
// can inspect; it stays safe to use after the test ends, unlike zaptest.
func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.InfoLevel)
	return zap.New(core), logs
}

// hasLog reports whether a log entry's message contains substr.
func hasLog(logs *observer.ObservedLogs, substr string) bool {
	for _, e := range logs.All() {
		if strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

// listen binds a kernel-chosen port on 127.0.0.1.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// okHandler answers every request with "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "ok")
})

// serveTLS serves h over TLS with cfg on ln until the test ends and returns
// the address.
func serveTLS(t *testing.T, ln net.Listener, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second, ErrorLog: discardLog()}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// serveHTTP serves h in plain HTTP on ln until the test ends.
func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: discardLog()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// handshake connects to addr with the given SNI name and roots (nil roots:
// no verification) and returns the served leaf.
func handshake(t *testing.T, addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &tls.Dialer{Config: &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// mustHandshake is handshake that fails the test on error.
func mustHandshake(t *testing.T, addr, serverName string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	leaf, err := handshake(t, addr, serverName, roots)
	if err != nil {
		t.Fatalf("TLS handshake with %s as %q: %v", addr, serverName, err)
	}
	return leaf
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("gave up after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// writePair writes cert (leaf, then extra PEM) and its key to certFile and
// keyFile, replacing them atomically as deployment tools do.
func writePair(t *testing.T, certFile, keyFile string, cert tls.Certificate, extra []byte) {
	t.Helper()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	certPEM = append(certPEM, extra...)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	writeFile(t, certFile, certPEM)
}

// writeFile replaces path atomically.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// isAlert reports whether err is a TLS alert sent by the server.
func isAlert(err error) bool {
	return err != nil && strings.Contains(err.Error(), "remote error: tls:")
}

// discardLog silences net/http's server error log (handshake failures the
// tests cause on purpose).
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
