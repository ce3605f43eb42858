package fedtest

import (
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
	"testing"
	"time"
)

// PebbleInstall is the command that installs the Pebble version the tests
// are written for; .ci/run runs it.
const PebbleInstall = "go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1"

// PebbleBinary returns the path of the pebble binary (Let's Encrypt's ACME
// test server): $PEBBLE_BIN, pebble on PATH, or pebble in GOBIN or
// GOPATH/bin. Without one it skips the test, or fails it when
// FEDGATE_REQUIRE_PEBBLE=1 (as in CI).
func PebbleBinary(t testing.TB) string {
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
	if os.Getenv("FEDGATE_REQUIRE_PEBBLE") == "1" {
		t.Fatalf("FEDGATE_REQUIRE_PEBBLE=1 but no pebble binary on PATH, in GOBIN or GOPATH/bin; install it with %s", PebbleInstall)
	}
	t.Skipf("pebble not installed (%s); skipping this ACME test", PebbleInstall)
	return ""
}

// PebbleOptions configures [StartPebble].
type PebbleOptions struct {
	// Binary is the pebble binary (from [PebbleBinary]).
	Binary string
	// DNS answers Pebble's lookups of the names it validates (required).
	DNS *DNS
	// HTTPPort and TLSPort are where Pebble sends HTTP-01 and TLS-ALPN-01
	// validations (on the addresses DNS gives).
	HTTPPort, TLSPort int
	// Validity is the lifetime of issued certificates; zero means 90 days.
	Validity time.Duration
}

// Pebble is a running Pebble ACME server on 127.0.0.1.
type Pebble struct {
	// DirURL is the ACME directory.
	DirURL string
	// APIRootFile is a PEM file with the root of Pebble's own HTTPS
	// certificate: what an ACME client must trust to talk to it.
	APIRootFile string
	// IssuerRoots holds the root that certificates Pebble issues chain to.
	IssuerRoots *x509.CertPool
}

// StartPebble runs Pebble until the test ends and returns once its API
// answers. Validation is immediate (PEBBLE_VA_NOSLEEP), good nonces are
// never rejected, and authorizations are never reused, so every order,
// renewals included, solves a challenge. Pebble's output is logged if the
// test fails.
func StartPebble(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	if o.Validity == 0 {
		o.Validity = 90 * 24 * time.Hour
	}
	dir := t.TempDir()
	ca := NewCA(t)
	certFile, keyFile := ca.WriteLeafFiles(t, dir, "localhost", "127.0.0.1")
	apiRoot := ca.WriteCertFile(t, dir)
	acmeAddr, mgmtAddr := FreeAddr(t), FreeAddr(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  acmeAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"keyAlgorithm":                   "ecdsa",
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		// One profile only: Pebble picks a random one for orders naming none.
		"profiles": map[string]any{"default": map[string]any{
			"description":    "fedgate test",
			"validityPeriod": int(o.Validity / time.Second),
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

	cmd := exec.Command(o.Binary, "-config", confFile, "-dnsserver", o.DNS.Addr)
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once, not after a random sleep
		"PEBBLE_WFE_NONCEREJECT=0", // never reject a good nonce
		"PEBBLE_AUTHZREUSE=0",      // every order validates again
	)
	out, exited := StartProcess(t, "pebble", cmd)

	// Ready when the management API answers; it also hands out the root
	// that issued certificates chain to.
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}},
	}
	defer client.CloseIdleConnections()
	get := func(url string) ([]byte, bool) {
		resp, err := client.Get(url)
		if err != nil {
			return nil, false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return body, err == nil && resp.StatusCode == http.StatusOK
	}
	var rootPEM []byte
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		var ok bool
		if rootPEM, ok = get("https://" + mgmtAddr + "/roots/0"); ok {
			if _, ok = get("https://" + acmeAddr + "/dir"); ok {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("pebble exited early:\n%s", out.String())
		case <-deadline.C:
			t.Fatalf("pebble did not answer within 30s:\n%s", out.String())
		case <-tick.C:
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root is not PEM: %q", rootPEM)
	}
	return &Pebble{DirURL: "https://" + acmeAddr + "/dir", APIRootFile: apiRoot, IssuerRoots: pool}
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment
// ago: for servers that bind their own listeners, and for a dial that
// must be refused.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}
