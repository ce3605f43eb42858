package policy

import (
	"fmt"
	"net/netip"
	"slices"
)

// prefixSet is a compiled list of networks. Lookups cost one hash lookup
// per distinct prefix length in the set, whatever its size. Immutable after
// build; safe for concurrent use.
type prefixSet struct {
	rules []rule
	v4    prefixTable
	v6    prefixTable
}

type prefixTable struct {
	bits []int                  // distinct prefix lengths, longest first
	nets map[netip.Prefix]int32 // masked prefix -> rule
}

// add parses CIDRs (or bare addresses, meaning one host) under source. An
// IPv4-mapped IPv6 network is stored as the IPv4 network it covers, because
// peers are unmapped before lookup.
func (ps *prefixSet) add(source string, cidrs []string) error {
	for i, s := range cidrs {
		p, err := parsePrefix(s)
		if err != nil {
			return fmt.Errorf("%s[%d] %q: %w", source, i, s, err)
		}
		id := int32(len(ps.rules))
		ps.rules = append(ps.rules, rule{source: source, index: i, text: s})
		t := &ps.v6
		if p.Addr().Is4() {
			t = &ps.v4
		}
		if t.nets == nil {
			t.nets = make(map[netip.Prefix]int32)
		}
		if _, dup := t.nets[p]; !dup {
			t.nets[p] = id
		}
		if !slices.Contains(t.bits, p.Bits()) {
			t.bits = append(t.bits, p.Bits())
			slices.Sort(t.bits)
			slices.Reverse(t.bits)
		}
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("addresses with a zone are not networks")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	} else if p, err = netip.ParsePrefix(s); err != nil {
		return netip.Prefix{}, err
	}
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

func (ps *prefixSet) empty() bool { return len(ps.rules) == 0 }

// match reports whether addr lies in one of the networks, and which.
func (ps *prefixSet) match(addr netip.Addr) (rule, bool) {
	addr = addr.Unmap().WithZone("")
	t := &ps.v6
	if addr.Is4() {
		t = &ps.v4
	}
	for _, bits := range t.bits {
		p, err := addr.Prefix(bits)
		if err != nil {
			continue
		}
		if id, ok := t.nets[p]; ok {
			return ps.rules[id], true
		}
	}
	return rule{}, false
}
