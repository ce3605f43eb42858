package servername

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxLength is the longest server name accepted: a 255-character DNS name
// plus ":" and a five-digit port. The spec recommends 230 characters or fewer.
const MaxLength = 255 + 6

// Name is a parsed server name. The zero value is not a valid name.
type Name struct {
	// Host is the hostname exactly as written, without brackets for IPv6
	// literals and without the port.
	Host string
	// Port is the explicit port, or 0 when the name has none.
	Port int
	// IP is the address when Host is an IP literal; otherwise it is the zero
	// netip.Addr.
	IP netip.Addr
}

// IsIP reports whether the name's host is an IPv4 or IPv6 literal.
func (n Name) IsIP() bool { return n.IP.IsValid() }

// HostLiteral returns the host in the form it takes in a server name or URL
// authority: IPv6 literals in brackets, everything else unchanged.
func (n Name) HostLiteral() string {
	if n.IP.Is6() {
		return "[" + n.Host + "]"
	}
	return n.Host
}

// String renders the name as it was parsed (host literal plus ":port" if any).
func (n Name) String() string {
	if n.Port == 0 {
		return n.HostLiteral()
	}
	return n.HostLiteral() + ":" + strconv.Itoa(n.Port)
}

// ErrEmpty is returned by [Parse] for the empty string.
var ErrEmpty = errors.New("server name is empty")

// Parse checks s against the server-name grammar and splits it.
//
// Beyond the spec's ABNF it enforces what the ABNF leaves to prose: ports are
// 1-65535, IPv4 octets are 0-255 without leading zeros, IPv6 literals are
// real IPv6 addresses without zones, and DNS names consist of non-empty labels
// of at most 63 characters (so "a..b", ".a" and "a." are refused).
func Parse(s string) (Name, error) {
	if s == "" {
		return Name{}, ErrEmpty
	}
	if len(s) > MaxLength {
		return Name{}, fmt.Errorf("server name is %d bytes long, more than %d", len(s), MaxLength)
	}
	host, portText, hasPort, err := split(s)
	if err != nil {
		return Name{}, err
	}
	n := Name{Host: host}
	if hasPort {
		p, err := parsePort(portText)
		if err != nil {
			return Name{}, err
		}
		n.Port = p
	}
	if s[0] == '[' {
		ip, err := parseIPv6(host)
		if err != nil {
			return Name{}, err
		}
		n.IP = ip
		return n, nil
	}
	if looksLikeIPv4(host) {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is4() {
			return Name{}, fmt.Errorf("server name %q: invalid IPv4 address", host)
		}
		n.IP = ip
		return n, nil
	}
	if err := checkDNSName(host); err != nil {
		return Name{}, err
	}
	return n, nil
}

// Valid reports whether s is a valid server name.
func Valid(s string) bool {
	_, err := Parse(s)
	return err == nil
}

// StripPort returns s without a trailing ":port", keeping IPv6 brackets. It
// does not validate s; use it only on names that passed [Parse].
func StripPort(s string) string {
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i >= 0 {
			return s[:i+1]
		}
		return s
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i]
	}
	return s
}

// split separates host and port without interpreting either.
func split(s string) (host, port string, hasPort bool, err error) {
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, fmt.Errorf("server name %q: missing ']' after IPv6 literal", s)
		}
		host, rest := s[1:end], s[end+1:]
		switch {
		case rest == "":
			return host, "", false, nil
		case rest[0] == ':':
			return host, rest[1:], true, nil
		default:
			return "", "", false, fmt.Errorf("server name %q: unexpected %q after IPv6 literal", s, rest)
		}
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return s, "", false, nil
	}
	if strings.IndexByte(s[i+1:], ':') >= 0 {
		return "", "", false, fmt.Errorf("server name %q: IPv6 literals must be in brackets", s)
	}
	return s[:i], s[i+1:], true, nil
}

func parsePort(p string) (int, error) {
	if p == "" || len(p) > 5 {
		return 0, fmt.Errorf("port %q: must be 1 to 5 digits", p)
	}
	v := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q: not a number", p)
		}
		v = v*10 + int(c-'0')
	}
	if v < 1 || v > 65535 {
		return 0, fmt.Errorf("port %d: out of range 1-65535", v)
	}
	return v, nil
}

func parseIPv6(host string) (netip.Addr, error) {
	if len(host) < 2 || len(host) > 45 {
		return netip.Addr{}, fmt.Errorf("IPv6 literal %q: wrong length", host)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(isDigit(c) || c == ':' || c == '.' || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')) {
			return netip.Addr{}, fmt.Errorf("IPv6 literal %q: invalid character %q", host, c)
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is6() {
		return netip.Addr{}, fmt.Errorf("IPv6 literal %q: not an IPv6 address", host)
	}
	return ip, nil
}

// looksLikeIPv4 reports whether host has the shape of the grammar's
// IPv4address (four dot-separated groups of digits). Such a host is only
// accepted as an address, never as a DNS name.
func looksLikeIPv4(host string) bool {
	groups, digits := 1, 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case isDigit(c):
			digits++
			if digits > 3 {
				return false
			}
		case c == '.':
			if digits == 0 {
				return false
			}
			groups++
			digits = 0
		default:
			return false
		}
	}
	return groups == 4 && digits > 0
}

func checkDNSName(host string) error {
	if len(host) > 255 {
		return fmt.Errorf("DNS name is %d bytes long, more than 255", len(host))
	}
	label := 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == '.':
			if label == 0 {
				return fmt.Errorf("DNS name %q: empty label", host)
			}
			label = 0
		case isDigit(c) || c == '-' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'):
			label++
			if label > 63 {
				return fmt.Errorf("DNS name %q: label longer than 63 characters", host)
			}
		default:
			return fmt.Errorf("DNS name %q: invalid character %q", host, c)
		}
	}
	if label == 0 {
		return fmt.Errorf("DNS name %q: empty label", host)
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
