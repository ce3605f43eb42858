package discovery

import (
	"errors"
	"net/netip"
	"testing"
)

func TestGuard(t *testing.T) {
	t.Parallel()
	blocked := []string{
		"0.0.0.0", "0.1.2.3", "10.0.0.1", "100.64.0.1", "100.127.255.255", "127.0.0.1", "127.255.255.254",
		"169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.2.1", "192.88.99.1",
		"192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.1",
		"239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:0:10.0.0.1",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "100::1", "2001::1", "2001:2::1",
		"2001:db8::1", "2002:7f00:1::1", "2002:a00:1::", "3fff::1", "5f00::1", "fc00::1", "fd12:3456::1",
		"fe80::1", "fe80::1%eth0", "fec0::1", "ff02::1", "4000::1", "8000::1",
	}
	allowed := []string{
		"1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
		"192.0.1.1", "192.169.0.1", "198.17.255.255", "198.20.0.0", "223.255.255.255",
		"::ffff:1.1.1.1", "64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111", "2a00:1450::1",
		"2001:4860:4860::8888", "2001:200::1",
	}
	g := newGuard(nil)
	for _, s := range blocked {
		if err := g.check(netip.MustParseAddr(s)); !errors.Is(err, ErrBlocked) {
			t.Errorf("%s: allowed, want blocked", s)
		}
	}
	for _, s := range allowed {
		if err := g.check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if err := g.check(netip.Addr{}); !errors.Is(err, ErrBlocked) {
		t.Errorf("zero address allowed")
	}
}

func TestGuardAllowNetworks(t *testing.T) {
	t.Parallel()
	g := newGuard([]netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("::ffff:192.168.0.0/112"), // written as mapped: means 192.168.0.0/16
		netip.MustParsePrefix("fd00::/8"),
	})
	tests := []struct {
		addr string
		ok   bool
	}{
		{"10.1.2.3", true}, {"::ffff:10.1.2.3", true}, {"64:ff9b::a01:203", true}, {"10.2.0.1", false},
		{"192.168.7.7", true}, {"fd00::1", true}, {"fc00::1", false}, {"127.0.0.1", false},
	}
	for _, tt := range tests {
		err := g.check(netip.MustParseAddr(tt.addr))
		if (err == nil) != tt.ok {
			t.Errorf("%s: err=%v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}

func TestGuardErrorNamesRange(t *testing.T) {
	t.Parallel()
	err := newGuard(nil).check(netip.MustParseAddr("169.254.169.254"))
	if err == nil || err.Error() != "refused by the SSRF guard: 169.254.169.254 is in 169.254.0.0/16 (link-local, RFC 3927)" {
		t.Fatalf("%v", err)
	}
}
