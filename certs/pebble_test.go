package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// The ACME integration test runs a real Pebble, the ACME test server of
// Let's Encrypt (see fedtest.StartPebble). .ci/run installs it and sets
// FEDGATE_REQUIRE_PEBBLE=1, which turns a missing binary into a failure
// instead of a skip.

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// getOverTLS sends GET / to addr as serverName, verifying against roots,
// and returns the connection state.
func getOverTLS(t *testing.T, addr, serverName string, roots *x509.CertPool) *tls.ConnectionState {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get("https://" + serverName + "/")
	if err != nil {
		t.Fatalf("GET https://%s/ via %s: %v", serverName, addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("GET https://%s/: %d %q", serverName, resp.StatusCode, body)
	}
	if len(resp.TLS.VerifiedChains) == 0 {
		t.Fatal("no verified chain")
	}
	return resp.TLS
}

func TestACMEWithPebble(t *testing.T) {
	t.Parallel()
	bin := fedtest.PebbleBinary(t)
	for _, tc := range []struct {
		challenge string
		name      string
		validity  time.Duration
		renew     bool // wait for a renewal and a restart from storage
	}{
		{challenge: "http-01", name: "http01.fedgate.test", validity: time.Hour},
		{challenge: "tls-alpn-01", name: "alpn.fedgate.test", validity: 30 * time.Second, renew: true},
	} {
		t.Run(tc.challenge, func(t *testing.T) {
			t.Parallel()
			dns := fedtest.StartDNS(t, tc.name+". 60 IN A 127.0.0.1")
			httpLn, tlsLn := listen(t), listen(t)
			p := fedtest.StartPebble(t, fedtest.PebbleOptions{
				Binary: bin, DNS: dns, HTTPPort: portOf(httpLn), TLSPort: portOf(tlsLn), Validity: tc.validity,
			})
			storage := t.TempDir()
			logger, logs := observedLogger()
			opts := certs.Options{
				Mode:               certs.ModeACME,
				Names:              []string{tc.name},
				Logger:             logger,
				Email:              "ops@fedgate.test",
				CA:                 p.DirURL,
				CARoot:             p.APIRootFile,
				Storage:            storage,
				RenewalWindowRatio: 0.6,
				RenewCheckInterval: time.Second,
			}
			if tc.challenge == "http-01" {
				opts.HTTPChallengeAddr = httpLn.Addr().String()
			} else {
				opts.TLSALPNChallengeAddr = tlsLn.Addr().String()
			}
			m, err := certs.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Stop)
			redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://"+r.Host+r.URL.RequestURI(), http.StatusPermanentRedirect)
			})
			httpAddr := serveHTTP(t, httpLn, m.HTTPHandler(redirect))
			tlsAddr := serveTLS(t, tlsLn, m.TLSConfig(), okHandler)

			if err := m.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 60*time.Second, "the first certificate", func() bool { ok, _ := m.Ready(); return ok })

			state := getOverTLS(t, tlsAddr, tc.name, p.IssuerRoots)
			if state.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN negotiated %q, want h2", state.NegotiatedProtocol)
			}
			leaf := state.PeerCertificates[0]
			if err := leaf.VerifyHostname(tc.name); err != nil {
				t.Fatal(err)
			}
			st := m.Status()
			if len(st) != 1 || st[0].Pending || st[0].Serial != leaf.SerialNumber.Text(16) || st[0].Name != tc.name {
				t.Fatalf("status %+v does not describe the served certificate %s", st, leaf.SerialNumber.Text(16))
			}
			if !hasLog(logs, "certificate obtained") {
				t.Error("no log entry for the obtained certificate")
			}
			if n := logs.FilterMessageSnippet("served key authentication").FilterField(zap.String("challenge", tc.challenge)).Len(); n == 0 {
				t.Errorf("no %s challenge was answered by fedgate's listeners", tc.challenge)
			}

			// The plain listener still redirects what is not a challenge.
			noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noFollow.Get("http://" + httpAddr + "/.well-known/matrix/server")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusPermanentRedirect {
				t.Errorf("plain request answered %d, want a redirect", resp.StatusCode)
			}

			if !tc.renew {
				return
			}
			first := leaf.SerialNumber.Text(16)
			var renewed *x509.Certificate
			waitFor(t, 90*time.Second, "a renewed certificate", func() bool {
				l, err := handshake(t, tlsAddr, tc.name, p.IssuerRoots)
				if err == nil && l.SerialNumber.Text(16) != first {
					renewed = l
				}
				return renewed != nil
			})
			if !renewed.NotAfter.After(leaf.NotAfter) {
				t.Errorf("renewed certificate expires %v, not after the old one's %v", renewed.NotAfter, leaf.NotAfter)
			}
			getOverTLS(t, tlsAddr, tc.name, p.IssuerRoots)
			if !hasLog(logs, "certificate renewed") {
				t.Error("no log entry for the renewal")
			}

			// A restart finds the certificate in storage.
			m.Stop()
			logger2, logs2 := observedLogger()
			opts.Logger = logger2
			m2, err := certs.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m2.Stop)
			if err := m2.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			if !hasLog(logs2, "found in storage") {
				t.Errorf("restart did not find the stored certificate; logs: %v", logs2.All())
			}
			waitFor(t, 30*time.Second, "the stored certificate to load", func() bool { ok, _ := m2.Ready(); return ok })
		})
	}
}
