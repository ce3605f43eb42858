package certs_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/internal/fedtest"
)

const filesName = "matrix.example.org"

// filesSetup writes a first pair and starts a files-mode manager serving
// on loopback.
type filesSetup struct {
	ca                *fedtest.CA
	certFile, keyFile string
	m                 *certs.Manager
	addr              string
}

func startFiles(t *testing.T, poll time.Duration, names ...string) *filesSetup {
	t.Helper()
	s, _ := startFilesLogged(t, poll, names...)
	return s
}

func startFilesLogged(t *testing.T, poll time.Duration, names ...string) (*filesSetup, *observer.ObservedLogs) {
	t.Helper()
	dir := t.TempDir()
	ca := fedtest.NewCA(t)
	certFile, keyFile := ca.WriteLeafFiles(t, dir, filesName)
	logger, logs := observedLogger()
	m, err := certs.New(certs.Options{
		Mode: certs.ModeFiles, CertFile: certFile, KeyFile: keyFile,
		Names: names, PollInterval: poll, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	addr := serveTLS(t, listen(t), m.TLSConfig(), okHandler)
	return &filesSetup{ca: ca, certFile: certFile, keyFile: keyFile, m: m, addr: addr}, logs
}

func TestFilesReloadKeepsConnections(t *testing.T) {
	t.Parallel()
	s := startFiles(t, -1)
	roots := s.ca.Pool()

	// An HTTP/1.1 keep-alive connection opened before the change.
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{ServerName: filesName, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	get := func() {
		t.Helper()
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+filesName+"\r\n\r\n"); err != nil {
			t.Fatalf("request on the old connection: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response on the old connection: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok" {
			t.Fatalf("old connection answered %q", body)
		}
	}
	get()
	old := conn.ConnectionState().PeerCertificates[0].SerialNumber

	next := s.ca.Issue(t, filesName)
	writePair(t, s.certFile, s.keyFile, next, s.ca.CertPEM())
	if err := s.m.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := mustHandshake(t, s.addr, filesName, roots).SerialNumber; got.Cmp(next.Leaf.SerialNumber) != 0 {
		t.Fatalf("new handshake got serial %v, want the new pair's %v", got, next.Leaf.SerialNumber)
	}
	get() // the connection made before the reload still works
	if conn.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(old) != 0 {
		t.Fatal("old connection changed certificate")
	}
	if ok, why := s.m.Ready(); !ok {
		t.Fatalf("not ready: %s", why)
	}
}

func TestFilesRefusesBadPairs(t *testing.T) {
	t.Parallel()
	s := startFiles(t, -1)
	roots := s.ca.Pool()
	good := mustHandshake(t, s.addr, filesName, roots).SerialNumber

	other := s.ca.Issue(t, filesName)
	another := s.ca.Issue(t, filesName)
	expired := s.ca.IssueValid(t, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), filesName)
	foreign := fedtest.NewCA(t).Issue(t, filesName)
	for _, tc := range []struct {
		name    string
		write   func()
		wantErr string
	}{
		{"mismatched key", func() {
			writePair(t, s.certFile, s.keyFile, other, nil)
			// another's key over other's: the half-done deployment case
			writePair(t, s.certFile+".unused", s.keyFile, another, nil)
		}, "private key does not match"},
		{"garbage certificate", func() { writeFile(t, s.certFile, []byte("not PEM")) }, "failed to find any PEM data"},
		{"expired", func() { writePair(t, s.certFile, s.keyFile, expired, nil) }, "expired"},
		{"missing key file", func() { os.Remove(s.keyFile) }, "reading key file"},
	} {
		tc.write()
		err := s.m.Reload()
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: Reload() = %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
		if got := mustHandshake(t, s.addr, filesName, roots).SerialNumber; got.Cmp(good) != 0 {
			t.Fatalf("%s: serving %v after a refused reload, want the old %v", tc.name, got, good)
		}
		st := s.m.Status()[0]
		if st.LastError == "" || st.LastErrorTime.IsZero() {
			t.Errorf("%s: status does not report the refusal: %+v", tc.name, st)
		}
	}
	// Untrusted issuers are the operator's business (a chain fedgate does
	// not know the roots of); the pair itself is sound, so it is served.
	writePair(t, s.certFile, s.keyFile, foreign, nil)
	if err := s.m.Reload(); err != nil {
		t.Fatal(err)
	}
	if st := s.m.Status()[0]; st.LastError != "" {
		t.Errorf("error kept after a good reload: %q", st.LastError)
	}
}

func TestFilesPollPicksUpChanges(t *testing.T) {
	t.Parallel()
	s, logs := startFilesLogged(t, 10*time.Millisecond)
	roots := s.ca.Pool()

	// A broken pair is refused and logged once, however often it is polled.
	writeFile(t, s.certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	waitFor(t, 10*time.Second, "the poller to refuse the broken pair", func() bool { return s.m.Status()[0].LastError != "" })

	next := s.ca.Issue(t, filesName)
	writePair(t, s.certFile, s.keyFile, next, s.ca.CertPEM())
	waitFor(t, 10*time.Second, "the poller to serve the new pair", func() bool {
		return mustHandshake(t, s.addr, filesName, roots).SerialNumber.Cmp(next.Leaf.SerialNumber) == 0
	})
	if st := s.m.Status()[0]; st.Serial != next.Leaf.SerialNumber.Text(16) || st.Source != certs.ModeFiles || st.Location != s.certFile || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
	if n := logs.FilterMessageSnippet("cannot be used").Len(); n != 1 {
		t.Errorf("the broken pair was logged %d times, want once", n)
	}
}

func TestFilesStartup(t *testing.T) {
	t.Parallel()
	ca := fedtest.NewCA(t)
	for _, tc := range []struct {
		name      string
		setup     func(dir string) (certFile, keyFile string)
		wantErr   string // New fails
		wantReady bool
		wantWhy   string
	}{
		{"valid", func(dir string) (string, string) { return ca.WriteLeafFiles(t, dir, filesName) }, "", true, "files certificate for " + filesName + " valid"},
		{"missing", func(dir string) (string, string) {
			return filepath.Join(dir, "nope.pem"), filepath.Join(dir, "nope.key")
		}, "reading certificate file", false, ""},
		{"expired is served but not ready", func(dir string) (string, string) {
			c, k := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
			writePair(t, c, k, ca.IssueValid(t, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), filesName), nil)
			return c, k
		}, "", false, "expired"},
		{"wrong names still served", func(dir string) (string, string) { return ca.WriteLeafFiles(t, dir, "other.example") }, "", true, "valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			certFile, keyFile := tc.setup(t.TempDir())
			logger, logs := observedLogger()
			m, err := certs.New(certs.Options{Mode: certs.ModeFiles, CertFile: certFile, KeyFile: keyFile, Names: []string{filesName}, Logger: logger})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New() = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ok, why := m.Ready()
			if ok != tc.wantReady || !strings.Contains(why, tc.wantWhy) {
				t.Errorf("Ready() = %v, %q; want %v and %q", ok, why, tc.wantReady, tc.wantWhy)
			}
			if tc.name == "wrong names still served" && !hasLog(logs, "does not cover every configured name") {
				t.Error("no warning about the names the certificate misses")
			}
			// Served whatever SNI the client sends, and without SNI.
			addr := serveTLS(t, listen(t), m.TLSConfig(), okHandler)
			for _, sni := range []string{filesName, "unknown.example", ""} {
				if _, err := handshake(t, addr, sni, nil); err != nil {
					t.Errorf("handshake with SNI %q: %v", sni, err)
				}
			}
		})
	}
}

// BenchmarkFilesHandshake measures a full TLS handshake over loopback
// against a files-mode listener (ECDSA P-256 leaf, Go's default curves).
func BenchmarkFilesHandshake(b *testing.B) {
	dir := b.TempDir()
	ca := fedtest.NewCA(b)
	certFile, keyFile := ca.WriteLeafFiles(b, dir, filesName)
	m, err := certs.New(certs.Options{Mode: certs.ModeFiles, CertFile: certFile, KeyFile: keyFile, PollInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: filesName}
	b.ReportAllocs()
	for b.Loop() {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
