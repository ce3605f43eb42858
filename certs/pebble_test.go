package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"go/build"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// The ACME integration test runs a real Pebble, the ACME test server of
// Let's Encrypt. .ci/run installs it with
//
//	go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1
//
// and sets FEDGATE_REQUIRE_PEBBLE=1, which turns a missing binary into a
// failure instead of a skip. PEBBLE_BIN names the binary explicitly.

// pebbleBinary finds the pebble binary or skips (fails under
// FEDGATE_REQUIRE_PEBBLE=1).
func pebbleBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PEBBLE_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, p := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "pebble")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	const install = "go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1"
	if os.Getenv("FEDGATE_REQUIRE_PEBBLE") == "1" {
		t.Fatalf("FEDGATE_REQUIRE_PEBBLE=1 but no pebble binary on PATH, in GOBIN or GOPATH/bin; install it with %s", install)
	}
	t.Skipf("pebble not installed (%s); skipping the ACME integration test", install)
	return ""
}

// pebble is a running Pebble instance.
type pebble struct {
	dirURL     string         // ACME directory
	apiRoot    string         // PEM file trusted for Pebble's own HTTPS API
	issuerRoot *x509.CertPool // Pebble's root for issued certificates
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePort returns a loopback port that was free a moment ago, for
// Pebble's own listeners (Pebble binds them itself).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// startPebble runs Pebble on loopback. It validates HTTP-01 on httpPort and
// TLS-ALPN-01 on tlsPort of 127.0.0.1 (as resolved by dns), issues
// certificates valid for validity, and serves its API with a certificate
// from a throw-away CA.
func startPebble(t *testing.T, bin string, dns *fedtest.DNS, httpPort, tlsPort int, validity time.Duration) *pebble {
	t.Helper()
	dir := t.TempDir()
	ca := fedtest.NewCA(t)
	certFile, keyFile := ca.WriteLeafFiles(t, dir, "localhost", "127.0.0.1")
	apiRoot := ca.WriteCertFile(t, dir)
	acmeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	mgmtAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  acmeAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"keyAlgorithm":                   "ecdsa",
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		// One profile only: Pebble picks a random one for orders that name none.
		"profiles": map[string]any{"default": map[string]any{
			"description":    "fedgate test",
			"validityPeriod": int(validity / time.Second),
		}},
	}}
	confJSON, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, confJSON, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-config", confFile, "-dnsserver", dns.Addr)
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once, not after a random sleep
		"PEBBLE_WFE_NONCEREJECT=0", // never reject a good nonce
		"PEBBLE_AUTHZREUSE=0",      // every order, renewals included, validates again
	)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pebble: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("pebble output:\n%s", out.String())
		}
	})

	// Ready when the management API answers; it also hands out the root
	// that issued certificates chain to.
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}},
	}
	defer client.CloseIdleConnections()
	var rootPEM []byte
	waitFor(t, 30*time.Second, "pebble to start", func() bool {
		select {
		case <-exited:
			t.Fatalf("pebble exited early:\n%s", out.String())
		default:
		}
		resp, err := client.Get("https://" + mgmtAddr + "/roots/0")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		rootPEM, err = io.ReadAll(resp.Body)
		return err == nil && resp.StatusCode == http.StatusOK
	})
	waitFor(t, 30*time.Second, "pebble's ACME directory", func() bool {
		resp, err := client.Get("https://" + acmeAddr + "/dir")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root is not PEM: %q", rootPEM)
	}
	return &pebble{dirURL: "https://" + acmeAddr + "/dir", apiRoot: apiRoot, issuerRoot: pool}
}

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
	bin := pebbleBinary(t)
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
			p := startPebble(t, bin, dns, portOf(httpLn), portOf(tlsLn), tc.validity)
			storage := t.TempDir()
			logger, logs := observedLogger()
			opts := certs.Options{
				Mode:               certs.ModeACME,
				Names:              []string{tc.name},
				Logger:             logger,
				Email:              "ops@fedgate.test",
				CA:                 p.dirURL,
				CARoot:             p.apiRoot,
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

			state := getOverTLS(t, tlsAddr, tc.name, p.issuerRoot)
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
				l, err := handshake(t, tlsAddr, tc.name, p.issuerRoot)
				if err == nil && l.SerialNumber.Text(16) != first {
					renewed = l
				}
				return renewed != nil
			})
			if !renewed.NotAfter.After(leaf.NotAfter) {
				t.Errorf("renewed certificate expires %v, not after the old one's %v", renewed.NotAfter, leaf.NotAfter)
			}
			getOverTLS(t, tlsAddr, tc.name, p.issuerRoot)
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
