package gateway

import (
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/internal/fedtest"
)

func TestDiscoveryOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := fedtest.NewCA(t)
	caFile := ca.WriteCertFile(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	base := "server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n[keys]\ngenerate = true\n"
	parse := func(t *testing.T, outbound string) *config.Config {
		t.Helper()
		c, err := config.Parse(filepath.Join(dir, "gateway.toml"), []byte(base+"[outbound]\n"+outbound))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := parse(t, `ca_file = "`+caFile+`"
resolvers = ["192.0.2.53", "[2001:db8::53]:5353"]
hosts_file = "peers.hosts"
allow_networks = ["10.0.0.0/8", "192.0.2.7", "fd00::/8"]
insecure_skip_verify = ["*.test.example"]
dns_timeout = "2s"
dial_timeout = "3s"
tls_timeout = "4s"
response_header_timeout = "5s"
max_idle_per_host = 3
[outbound.overrides]
"partner.example" = "10.1.2.3:8448"
`)
	o, err := DiscoveryOptions(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantNets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("fd00::/8")}
	if !slices.Equal(o.AllowNetworks, wantNets) || !slices.Equal(o.Resolvers, []string{"192.0.2.53", "[2001:db8::53]:5353"}) ||
		o.DNSTimeout != 2*time.Second || o.DialTimeout != 3*time.Second || o.TLSTimeout != 4*time.Second ||
		o.ResponseHeaderTimeout != 5*time.Second || o.MaxIdlePerHost != 3 || o.Overrides["partner.example"] != "10.1.2.3:8448" ||
		o.InsecureSkipVerify[0] != "*.test.example" || o.RootCAs == nil || o.HostsFile != filepath.Join(dir, "peers.hosts") {
		t.Fatalf("%+v", o)
	}
	if _, err := ca.Cert.Verify(x509.VerifyOptions{Roots: o.RootCAs}); err != nil {
		t.Fatalf("the CA file's root is not trusted: %v", err)
	}
	// The options build a resolver (no resolv.conf read: resolvers are set).
	if _, err := discovery.NewResolver(o); err != nil {
		t.Fatal(err)
	}

	if o, _ := DiscoveryOptions(parse(t, "max_idle_per_host = 0\n"), nil); o.MaxIdlePerHost >= 0 {
		t.Errorf("max_idle_per_host = 0 maps to %d, want pooling off", o.MaxIdlePerHost)
	}
	_, err = DiscoveryOptions(parse(t, `ca_file = "`+notPEM+`"`+"\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "gateway.toml:7: outbound.ca_file") {
		t.Fatalf("got %v", err)
	}
}
