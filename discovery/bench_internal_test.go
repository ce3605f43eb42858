package discovery

import (
	"net/netip"
	"testing"
)

// BenchmarkGuardCheck: allowed addresses, the per-request case.
func BenchmarkGuardCheck(b *testing.B) {
	g := newGuard([]netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")})
	addrs := []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2a00:1450::1"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("64:ff9b::808:808")}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = g.check(addrs[i%len(addrs)])
	}
}

func BenchmarkPoolHost(b *testing.B) {
	k := dialKey{tlsName: "matrix.example.org", addr: netip.MustParseAddrPort("[2001:db8::1]:8448"), guarded: true}
	b.ReportAllocs()
	for b.Loop() {
		_ = poolHost(k)
	}
}
