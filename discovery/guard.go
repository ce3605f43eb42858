package discovery

import (
	"fmt"
	"net/netip"
)

// specialRange is a network the SSRF guard refuses unless allowed.
type specialRange struct {
	prefix netip.Prefix
	name   string
}

// IPv4 special-purpose networks (IANA IPv4 Special-Purpose Address Registry
// and RFC 6890), refused unless Options.AllowNetworks lists them.
var specialIPv4 = []specialRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network, RFC 791"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private, RFC 1918"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space / CGNAT, RFC 6598"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, RFC 3927"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private, RFC 1918"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments, RFC 6890"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation, TEST-NET-1"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast, RFC 7526"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private, RFC 1918"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking, RFC 2544"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation, TEST-NET-2"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation, TEST-NET-3"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved, including broadcast"},
}

// IPv6 special-purpose networks inside global unicast 2000::/3; everything
// outside 2000::/3 is refused as well (see checkIPv6), apart from NAT64
// addresses, which are judged by the IPv4 address they embed.
var specialIPv6 = []specialRange{
	{netip.MustParsePrefix("2001::/32"), "Teredo, RFC 4380"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments, RFC 2928"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation, RFC 3849"},
	{netip.MustParsePrefix("3fff::/20"), "documentation, RFC 9637"},
}

// Ranges outside 2000::/3, named for error messages.
var otherIPv6 = []specialRange{
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible, deprecated, RFC 4291"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "IPv4-translated, RFC 2765"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use IPv4/IPv6 translation, RFC 8215"},
	{netip.MustParsePrefix("100::/64"), "discard-only, RFC 6666"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing SIDs, RFC 9602"},
	{netip.MustParsePrefix("fc00::/7"), "unique local, RFC 4193"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local, deprecated"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	globalUnicast = netip.MustParsePrefix("2000::/3")
	nat64         = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour     = netip.MustParsePrefix("2002::/16")
)

// guard is the SSRF guard: it refuses special-purpose addresses unless an
// allowed network contains them. It is immutable after newGuard.
type guard struct {
	allow []netip.Prefix
}

func newGuard(allow []netip.Prefix) guard {
	g := guard{allow: make([]netip.Prefix, 0, len(allow))}
	for _, p := range allow {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		g.allow = append(g.allow, p.Masked())
	}
	return g
}

// check returns nil if addr may be dialled, or an error wrapping ErrBlocked
// that names the range. Zones are ignored; IPv4-mapped IPv6 addresses are
// judged as the IPv4 address they map.
func (g guard) check(addr netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrBlocked)
	}
	addr = addr.WithZone("").Unmap()
	for _, p := range g.allow {
		if p.Contains(addr) {
			return nil
		}
	}
	if addr.Is4() {
		return blockedIn(addr, specialIPv4)
	}
	switch {
	case nat64.Contains(addr):
		b := addr.As16()
		return g.embedded(addr, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), "NAT64")
	case sixToFour.Contains(addr):
		b := addr.As16()
		return g.embedded(addr, netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), "6to4")
	case !globalUnicast.Contains(addr):
		if err := blockedIn(addr, otherIPv6); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s is outside IPv6 global unicast 2000::/3", ErrBlocked, addr)
	}
	return blockedIn(addr, specialIPv6)
}

// embedded judges an IPv6 address that carries an IPv4 address by that
// IPv4 address, so NAT64 gives no way around the IPv4 rules and IPv6-only
// hosts behind DNS64 still reach public IPv4 servers.
func (g guard) embedded(addr, v4 netip.Addr, kind string) error {
	if err := g.check(v4); err != nil {
		return fmt.Errorf("%s address %s embeds %s: %w", kind, addr, v4, err)
	}
	return nil
}

func blockedIn(addr netip.Addr, ranges []specialRange) error {
	for _, r := range ranges {
		if r.prefix.Contains(addr) {
			return fmt.Errorf("%w: %s is in %s (%s)", ErrBlocked, addr, r.prefix, r.name)
		}
	}
	return nil
}
