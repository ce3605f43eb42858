package certs_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// filesOptions are files-mode options for a pair written for names.
func filesOptions(t *testing.T, ca *fedtest.CA, dir string, names ...string) certs.Options {
	t.Helper()
	sub := filepath.Join(dir, names[0])
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := ca.WriteLeafFiles(t, sub, names...)
	return certs.Options{Mode: certs.ModeFiles, Names: names, CertFile: certFile, KeyFile: keyFile, PollInterval: -1}
}

// TestSetChoosesBySNI: each hosted server's names get its own certificate;
// servers with the same settings share one; unknown names and no SNI get
// the first server's; an update adds and removes servers without
// touching the others.
func TestSetChoosesBySNI(t *testing.T) {
	t.Parallel()
	ca := fedtest.NewCA(t)
	dir := t.TempDir()
	a := filesOptions(t, ca, dir, "a.test", "matrix.a.test")
	b := filesOptions(t, ca, dir, "b.test", "*.b.test")
	aAgain := a
	aAgain.Names = []string{"a2.test"} // shares a's pair (a wildcard or SAN certificate)
	set, err := certs.NewSet([]certs.Options{a, b, aAgain})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	if n := len(set.Options()); n != 2 {
		t.Fatalf("%d managers, want 2 (a and a2 share one)", n)
	}
	addr := serveTLS(t, listen(t), set.TLSConfig(), okHandler)
	covers := func(sni, want string) {
		t.Helper()
		leaf, err := handshake(t, addr, sni, nil)
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		if !slices.Contains(leaf.DNSNames, want) {
			t.Fatalf("SNI %q got the certificate for %v, want %s's", sni, leaf.DNSNames, want)
		}
	}
	covers("a.test", "a.test")
	covers("MATRIX.A.TEST", "a.test")
	covers("b.test", "b.test")
	covers("chat.b.test", "b.test") // wildcard name
	covers("a2.test", "a.test")
	covers("unknown.test", "a.test")
	covers("", "a.test")
	if ok, why := set.Ready(); !ok {
		t.Fatalf("not ready: %s", why)
	}

	// Add c, drop b: c is served, b's names fall back to the default.
	c := filesOptions(t, ca, dir, "c.test")
	if err := set.Update([]certs.Options{a, c}); err != nil {
		t.Fatal(err)
	}
	covers("c.test", "c.test")
	covers("b.test", "a.test")
	covers("a.test", "a.test")
	if st := set.Status(); len(st) != 2 {
		t.Fatalf("status after the update: %+v", st)
	}
	// A pair that cannot be loaded is refused and changes nothing.
	bad := certs.Options{Mode: certs.ModeFiles, Names: []string{"d.test"}, CertFile: filepath.Join(dir, "missing.pem"), KeyFile: filepath.Join(dir, "missing.key")}
	if err := set.Update([]certs.Options{a, c, bad}); err == nil {
		t.Fatal("a missing pair was accepted")
	}
	covers("c.test", "c.test")
}

// TestSetACMEWithPebble obtains certificates for two hosted servers from
// Pebble through one ACME account, then for a third one an update adds,
// without a new account or cache: certificates by SNI, one per name.
func TestSetACMEWithPebble(t *testing.T) {
	t.Parallel()
	bin := fedtest.PebbleBinary(t)
	names := []string{"a.multi.test", "b.multi.test", "c.multi.test"}
	var zone []string
	for _, n := range names {
		zone = append(zone, n+". 60 IN A 127.0.0.1")
	}
	dns := fedtest.StartDNS(t, zone...)
	httpLn, tlsLn := listen(t), listen(t)
	p := fedtest.StartPebble(t, fedtest.PebbleOptions{Binary: bin, DNS: dns, HTTPPort: portOf(httpLn), TLSPort: portOf(tlsLn)})
	logger, _ := observedLogger()
	storage := t.TempDir()
	opts := func(name string) certs.Options {
		return certs.Options{
			Mode: certs.ModeACME, Names: []string{name}, Logger: logger, Email: "ops@multi.test",
			CA: p.DirURL, CARoot: p.APIRootFile, Storage: storage, HTTPChallengeAddr: httpLn.Addr().String(),
		}
	}
	a, b, c := opts(names[0]), opts(names[1]), opts(names[2])
	set, err := certs.NewSet([]certs.Options{a, b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "not a challenge", http.StatusNotFound) })
	serveHTTP(t, httpLn, set.HTTPHandler(redirect))
	tlsAddr := serveTLS(t, tlsLn, set.TLSConfig(), okHandler)
	if err := set.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(set.Options()); n != 1 {
		t.Fatalf("%d managers for one ACME account, want 1", n)
	}
	waitFor(t, 60*time.Second, "certificates for a and b", func() bool { ok, _ := set.Ready(); return ok })
	for _, n := range names[:2] {
		leaf := getOverTLS(t, tlsAddr, n, p.IssuerRoots).PeerCertificates[0]
		if err := leaf.VerifyHostname(n); err != nil || len(leaf.DNSNames) != 1 {
			t.Fatalf("%s got a certificate for %v", n, leaf.DNSNames)
		}
	}
	if err := set.Update([]certs.Options{a, b, c}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "a certificate for c", func() bool {
		leaf, err := handshake(t, tlsAddr, names[2], p.IssuerRoots)
		return err == nil && leaf.VerifyHostname(names[2]) == nil
	})
	if st := set.Status(); len(st) != 3 {
		t.Fatalf("status %+v, want one entry per name", st)
	}
	getOverTLS(t, tlsAddr, names[0], p.IssuerRoots) // a still served
}
