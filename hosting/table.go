package hosting

import (
	"strings"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/servername"
)

// Results of the lookups that do not find exactly one server.
const (
	// None: the name is not one of the hosted servers' names or hosts.
	None = -1
	// Ambiguous: the host is the delegated host (or a certificate name)
	// of several hosted servers, so it does not say which one is meant.
	Ambiguous = -2
)

// Table indexes the hosted servers of one configuration. Positions are
// those of config.Config.Hosted: 0 is the top-level server. Build it with
// [New]; immutable and safe for concurrent use.
type Table struct {
	names  []string       // server names as configured, by position
	byName map[string]int // lower-case server name -> position
	byHost map[string]int // lower-case host name -> position, or Ambiguous
}

// New builds the table for the hosted servers' configurations (in the
// order of config.Config.Hosted). Names the configuration validation has
// already refused (duplicates, conflicting hosts) are indexed first come,
// first served; invalid server names are skipped.
func New(hosted []*config.Config) *Table {
	t := &Table{
		names:  make([]string, len(hosted)),
		byName: make(map[string]int, len(hosted)),
		byHost: make(map[string]int, 2*len(hosted)),
	}
	owned := map[string]bool{}
	for i, c := range hosted {
		t.names[i] = c.ServerName
		lower := strings.ToLower(c.ServerName)
		if _, dup := t.byName[lower]; !dup {
			t.byName[lower] = i
		}
		if n, err := servername.Parse(c.ServerName); err == nil {
			h := strings.ToLower(n.Host)
			if !owned[h] {
				owned[h] = true
				t.byHost[h] = i
			}
		}
	}
	// Delegated hosts and certificate names claim a host unless a server
	// name owns it; claimed by several servers, it names none of them.
	for i, c := range hosted {
		claims := []string{c.WellKnown.Server}
		if c.IsSet("tls.names") {
			claims = append(claims, c.TLS.Names...)
		}
		for _, claim := range claims {
			n, err := servername.Parse(claim)
			if err != nil {
				continue
			}
			h := strings.ToLower(n.Host)
			if owned[h] {
				continue
			}
			if prev, ok := t.byHost[h]; ok && prev != i {
				t.byHost[h] = Ambiguous
				continue
			}
			t.byHost[h] = i
		}
	}
	return t
}

// Len is the number of hosted servers.
func (t *Table) Len() int { return len(t.names) }

// Name returns the configured server name at position i.
func (t *Table) Name(i int) string { return t.names[i] }

// Names returns the configured server names in position order. The slice
// must not be modified.
func (t *Table) Names() []string { return t.names }

// Lookup returns the position of the hosted server named name, ignoring
// letter case (DNS does), or None. Callers that need the name exactly as
// configured compare with [Table.Name].
func (t *Table) Lookup(name string) int {
	if i, ok := t.byName[lower(name)]; ok {
		return i
	}
	return None
}

// ForHost returns the hosted server a Host header names: a server name
// exactly (with its port, if it has one), else the host without its port:
// a server's own host, or a delegated host or certificate name of exactly
// one server. It returns None for anything else and Ambiguous for a host
// several servers share.
func (t *Table) ForHost(host string) int {
	if host == "" {
		return None
	}
	l := lower(host)
	if i, ok := t.byName[l]; ok {
		return i
	}
	return t.forHostname(stripPort(l))
}

// ForSNI returns the hosted server a TLS server name (no port) names, as
// [Table.ForHost] does; "" (no SNI) is None.
func (t *Table) ForSNI(sni string) int {
	if sni == "" {
		return None
	}
	return t.forHostname(lower(strings.TrimSuffix(sni, ".")))
}

func (t *Table) forHostname(h string) int {
	if i, ok := t.byHost[h]; ok {
		return i
	}
	return None
}

// Sent returns the hosted server a request was sent to, from its Host
// header and TLS server name: the one the Host names, else the one the
// SNI names, else None (or Ambiguous when either is a shared host and
// neither names one server). conflict reports that Host and SNI name two
// different hosted servers: the request came over a connection made for
// another server.
func (t *Table) Sent(host, sni string) (i int, conflict bool) {
	h, s := t.ForHost(host), t.ForSNI(sni)
	switch {
	case h >= 0 && s >= 0 && h != s:
		return h, true
	case h >= 0:
		return h, false
	case s >= 0:
		return s, false
	case h == Ambiguous || s == Ambiguous:
		return Ambiguous, false
	}
	return None, false
}

// lower is strings.ToLower for ASCII, without allocating when s is
// already lower case (the usual Host header).
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// stripPort cuts ":port" off a lower-case host[:port] and the brackets off
// an IPv6 literal.
func stripPort(h string) string {
	if strings.HasPrefix(h, "[") {
		if end := strings.IndexByte(h, ']'); end > 0 {
			return h[1:end]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h[:i], ':') < 0 {
		return strings.TrimSuffix(h[:i], ".")
	}
	return strings.TrimSuffix(h, ".")
}
