package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/certs"
)

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	acme := func(mod func(*certs.Options)) certs.Options {
		o := certs.Options{Mode: certs.ModeACME, Names: []string{"example.org"}, Storage: dir, HTTPChallengeAddr: "127.0.0.1:80"}
		mod(&o)
		return o
	}
	for _, tc := range []struct {
		name    string
		opts    certs.Options
		wantErr string
	}{
		{"no mode", certs.Options{}, "no tls mode"},
		{"unknown mode", certs.Options{Mode: "letsencrypt"}, "not one of"},
		{"self_signed without data folder", certs.Options{Mode: certs.ModeSelfSigned}, "data folder"},
		{"files without key", certs.Options{Mode: certs.ModeFiles, CertFile: "c.pem"}, "cert_file and key_file"},
		{"acme without names", acme(func(o *certs.Options) { o.Names = nil }), "at least one name"},
		{"acme with an IP", acme(func(o *certs.Options) { o.Names = []string{"192.0.2.1"} }), "IP address"},
		{"acme without storage", acme(func(o *certs.Options) { o.Storage = "" }), "storage folder"},
		{"acme with a bad CA", acme(func(o *certs.Options) { o.CA = "zerossl" }), "directory URL"},
		{"acme without challenge listeners", acme(func(o *certs.Options) { o.HTTPChallengeAddr = "" }), "answer challenges"},
		{"acme with a bad listener", acme(func(o *certs.Options) { o.HTTPChallengeAddr = "localhost" }), "challenge listener address"},
		{"acme with a bad ratio", acme(func(o *certs.Options) { o.RenewalWindowRatio = 1 }), "renewal window ratio"},
		{"acme with unreadable roots", acme(func(o *certs.Options) { o.CARoot = filepath.Join(dir, "missing.pem") }), "reading ACME CA roots"},
		{"acme with roots that are not PEM", acme(func(o *certs.Options) {
			p := filepath.Join(dir, "roots.pem")
			os.WriteFile(p, []byte("hello"), 0o644)
			o.CARoot = p
		}), "no PEM certificate"},
	} {
		_, err := certs.New(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: New() = %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestTLSConfigDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	self, err := certs.New(certs.Options{Mode: certs.ModeSelfSigned, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	acme, err := certs.New(certs.Options{Mode: certs.ModeACME, Names: []string{"example.org"}, Storage: dir, HTTPChallengeAddr: "127.0.0.1:80"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m         *certs.Manager
		wantProto []string
	}{
		{self, []string{"h2", "http/1.1"}},
		{acme, []string{"h2", "http/1.1", "acme-tls/1"}},
	} {
		c := tc.m.TLSConfig()
		if c.MinVersion != tls.VersionTLS12 || !slices.Equal(c.NextProtos, tc.wantProto) || c.GetCertificate == nil {
			t.Errorf("%s: MinVersion %x, NextProtos %q", tc.m.Mode(), c.MinVersion, c.NextProtos)
		}
		for _, id := range c.CipherSuites {
			for _, bad := range tls.InsecureCipherSuites() {
				if id == bad.ID {
					t.Errorf("%s offers insecure suite %s", tc.m.Mode(), bad.Name)
				}
			}
			if name := tls.CipherSuiteName(id); !strings.Contains(name, "ECDHE") || strings.Contains(name, "CBC") {
				t.Errorf("%s offers %s", tc.m.Mode(), name)
			}
		}
		// Each call returns a fresh value the caller may change.
		c.NextProtos = nil
		if tc.m.TLSConfig().NextProtos == nil {
			t.Error("TLSConfig shares its value between callers")
		}
	}
}

func TestTLSRefusesOldVersions(t *testing.T) {
	t.Parallel()
	m, err := certs.New(certs.Options{Mode: certs.ModeSelfSigned, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, listen(t), m.TLSConfig(), okHandler)
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
	if err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	c.Close()
}

func TestSelfSignedReuse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(now time.Time, names ...string) (*certs.Manager, *x509.Certificate) {
		t.Helper()
		logger, logs := observedLogger()
		m, err := certs.New(certs.Options{Mode: certs.ModeSelfSigned, DataDir: dir, Names: names, Logger: logger, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		if !hasLog(logs, "for development only") {
			t.Error("self-signed certificate not logged as development-only")
		}
		addr := serveTLS(t, listen(t), m.TLSConfig(), okHandler)
		pem, err := os.ReadFile(filepath.Join(dir, "selfsigned", "cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: roots, Time: func() time.Time { return now }})
		if err != nil {
			t.Fatalf("handshake at %v: %v", now, err)
		}
		defer c.Close()
		return m, c.ConnectionState().PeerCertificates[0]
	}
	now := time.Now()
	m1, first := start(now)
	if !slices.Equal(first.DNSNames, []string{"localhost"}) || len(first.IPAddresses) != 2 {
		t.Fatalf("default names: %v %v", first.DNSNames, first.IPAddresses)
	}
	if ok, why := m1.Ready(); !ok || !strings.Contains(why, "development only") {
		t.Errorf("Ready() = %v, %q", ok, why)
	}
	if st, err := os.Stat(filepath.Join(dir, "selfsigned", "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", st.Mode(), err)
	}

	_, again := start(now)
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("restart generated a new certificate instead of reusing the stored one")
	}
	_, renamed := start(now, "localhost", "dev.example.org")
	if renamed.SerialNumber.Cmp(first.SerialNumber) == 0 || !slices.Contains(renamed.DNSNames, "dev.example.org") {
		t.Fatal("changed names did not produce a new certificate")
	}
	_, later := start(renamed.NotAfter.Add(-24*time.Hour), "localhost", "dev.example.org")
	if later.SerialNumber.Cmp(renamed.SerialNumber) == 0 {
		t.Fatal("a certificate about to expire was reused")
	}
}

func TestACMEPendingFailsFast(t *testing.T) {
	t.Parallel()
	// A CA nobody answers: obtaining fails, and until a certificate exists
	// handshakes get an alert while the plain listener keeps working.
	dead := listen(t)
	deadURL := "https://" + dead.Addr().String() + "/dir"
	dead.Close()

	httpLn, tlsLn := listen(t), listen(t)
	logger, logs := observedLogger()
	m, err := certs.New(certs.Options{
		Mode:                 certs.ModeACME,
		Names:                []string{"Pending.Example.ORG."},
		Logger:               logger,
		CA:                   deadURL,
		Storage:              t.TempDir(),
		HTTPChallengeAddr:    httpLn.Addr().String(),
		TLSALPNChallengeAddr: tlsLn.Addr().String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	httpAddr := serveHTTP(t, httpLn, m.HTTPHandler(http.NotFoundHandler()))
	tlsAddr := serveTLS(t, tlsLn, m.TLSConfig(), okHandler)

	// Before Start, handshakes already fail cleanly.
	if _, err := handshake(t, tlsAddr, "pending.example.org", nil); !isAlert(err) {
		t.Fatalf("handshake before Start: %v, want a TLS alert", err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
	if !hasLog(logs, "until they arrive, TLS handshakes for these names fail with an alert") {
		t.Errorf("pending certificates not logged: %v", logs.All())
	}
	for _, sni := range []string{"pending.example.org", "other.example.org", ""} {
		if _, err := handshake(t, tlsAddr, sni, nil); !isAlert(err) {
			t.Errorf("handshake with SNI %q: %v, want a TLS alert", sni, err)
		}
	}
	ok, why := m.Ready()
	if ok || !strings.Contains(why, "pending.example.org: no certificate yet") {
		t.Errorf("Ready() = %v, %q", ok, why)
	}
	waitFor(t, 30*time.Second, "the failed attempt to be recorded", func() bool { return m.Status()[0].LastError != "" })
	st := m.Status()[0]
	if !st.Pending || st.Name != "pending.example.org" || st.Source != certs.ModeACME || st.Location != deadURL {
		t.Errorf("status %+v", st)
	}
	if _, why := m.Ready(); !strings.Contains(why, "last attempt failed") {
		t.Errorf("Ready() reason %q does not carry the failure", why)
	}
	if !hasLog(logs, "could not get a certificate") {
		t.Error("failure not logged")
	}

	// Plain HTTP: unknown challenge tokens and other paths reach next.
	for _, path := range []string{"/.well-known/acme-challenge/unknown-token", "/"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want next's 404", path, resp.StatusCode)
		}
	}
	if err := m.Reload(); err != nil {
		t.Errorf("Reload in acme mode: %v", err)
	}
}

func TestHTTPHandlerPassThrough(t *testing.T) {
	t.Parallel()
	m, err := certs.New(certs.Options{Mode: certs.ModeSelfSigned, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.HTTPHandler(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/acme-challenge/x", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("self_signed HTTPHandler answered %d itself", rec.Code)
	}
}
