package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/fedgate/fedgate/internal/glob"
	"github.com/fedgate/fedgate/internal/servername"
)

// MaxPatternLength bounds one allow/deny entry (glob or regular expression),
// so that a hostile or broken list file cannot make matching expensive.
const MaxPatternLength = glob.MaxPatternLength

// regexpPrefix marks a regular-expression entry.
const regexpPrefix = "re:"

// patternKind says how an entry matches.
type patternKind uint8

const (
	kindExact  patternKind = iota // a server name: hash lookup
	kindGlob                      // '*' and '?' wildcards: suffix index
	kindRegexp                    // "re:...": scanned, whole-name match
)

// pattern is one compiled allow/deny entry.
type pattern struct {
	kind patternKind
	// withPort: the entry names a port, so it is matched against the whole
	// server name; otherwise against the host with any port stripped.
	withPort bool
	// exact is the lower-cased entry (kindExact, DNS names).
	exact string
	// ip and port are set for exact entries that are IP literals.
	ip   netip.Addr
	port uint16
	glob glob.Glob
	re   *regexp.Regexp
}

// errEmptyPattern is returned for "" and "re:".
var errEmptyPattern = errors.New("empty entry")

// compilePattern compiles an allow/deny entry: "re:<regexp>", a glob, or an
// exact server name. Regular expressions are anchored to the whole name and
// case-insensitive. It never panics.
func compilePattern(s string) (pattern, error) {
	if len(s) > MaxPatternLength {
		return pattern{}, fmt.Errorf("entry is %d bytes long, more than %d", len(s), MaxPatternLength)
	}
	if expr, ok := strings.CutPrefix(s, regexpPrefix); ok {
		if expr == "" {
			return pattern{}, errEmptyPattern
		}
		// The expression must stand on its own before it is wrapped: "a)|(.*"
		// is unbalanced alone but would compile inside the wrapper, as an
		// unanchored match-everything.
		if _, err := regexp.Compile(expr); err != nil {
			return pattern{}, fmt.Errorf("bad regular expression: %w", err)
		}
		re, err := regexp.Compile(`(?i)^(?:` + expr + `)$`)
		if err != nil {
			return pattern{}, fmt.Errorf("bad regular expression: %w", err)
		}
		return pattern{kind: kindRegexp, re: re}, nil
	}
	return compileNamePattern(s, false)
}

// compileNamePattern compiles a glob or an exact server name (s is not a
// regular expression). With refuseBroad, a glob that matches every server
// name is refused with ErrTooBroad.
func compileNamePattern(s string, refuseBroad bool) (pattern, error) {
	if s == "" {
		return pattern{}, errEmptyPattern
	}
	g, err := glob.CompileServerName(s)
	if err != nil {
		return pattern{}, fmt.Errorf("bad glob: %w", err)
	}
	if !g.IsLiteral() {
		if refuseBroad && strings.Trim(s, "*?.:") == "" {
			return pattern{}, ErrTooBroad
		}
		return pattern{kind: kindGlob, glob: g, withPort: globHasPort(s)}, nil
	}
	n, err := servername.Parse(s)
	if err != nil {
		return pattern{}, fmt.Errorf("%q is not a valid server name, so it can never match: %w", s, err)
	}
	p := pattern{kind: kindExact, withPort: n.Port != 0, port: uint16(n.Port)}
	if n.IsIP() {
		p.ip = n.IP
	} else {
		p.exact = strings.ToLower(s)
	}
	return p, nil
}

// globHasPort reports whether a server-name glob names a port: a ':' after
// the closing bracket of an IPv6 literal, or anywhere when there is none.
func globHasPort(s string) bool {
	if i := strings.LastIndexByte(s, ']'); i >= 0 {
		s = s[i+1:]
	}
	return strings.IndexByte(s, ':') >= 0
}

// rule identifies the configuration entry behind a match, for
// [Decision.Rule].
type rule struct {
	source string // "policy.deny", "list_file allow", ...
	index  int    // position in its list; -1 for a rule that is not a list entry
	text   string // the entry as written, or a description when index < 0
}

func (r rule) String() string {
	if r.index < 0 {
		return r.source + " " + r.text
	}
	return r.source + "[" + strconv.Itoa(r.index) + "] " + strconv.Quote(r.text)
}

// nameSet is a compiled list of server-name entries. Exact names are hash
// lookups, globs go through a suffix index and only regular expressions are
// scanned. Immutable after build; safe for concurrent use.
type nameSet struct {
	rules   []rule
	hosts   map[string]int32         // exact DNS names without a port
	full    map[string]int32         // exact DNS names with a port
	ips     map[netip.Addr]int32     // exact IP literals without a port
	ipPorts map[netip.AddrPort]int32 // exact IP literals with a port
	host    globIndex                // globs without a port, on the host
	port    globIndex                // globs with a port, on the whole name
	regexps []compiledRegexp
}

type compiledRegexp struct {
	re   *regexp.Regexp
	rule int32
}

// add compiles entries and adds them under source ("policy.deny"). It
// stops at the first bad entry and names it.
func (ns *nameSet) add(source string, entries []string) error {
	for i, e := range entries {
		p, err := compilePattern(e)
		if err != nil {
			return fmt.Errorf("%s[%d] %q: %w", source, i, e, err)
		}
		ns.addPattern(p, rule{source: source, index: i, text: e})
	}
	return nil
}

// addCompiled adds entries compiled beforehand (list files).
func (ns *nameSet) addCompiled(source string, entries []string, ps []pattern) {
	for i, p := range ps {
		ns.addPattern(p, rule{source: source, index: i, text: entries[i]})
	}
}

func (ns *nameSet) addPattern(p pattern, r rule) {
	id := int32(len(ns.rules))
	ns.rules = append(ns.rules, r)
	switch p.kind {
	case kindExact:
		switch {
		case p.ip.IsValid() && p.withPort:
			setFirst(&ns.ipPorts, netip.AddrPortFrom(p.ip, p.port), id)
		case p.ip.IsValid():
			setFirst(&ns.ips, p.ip, id)
		case p.withPort:
			setFirst(&ns.full, p.exact, id)
		default:
			setFirst(&ns.hosts, p.exact, id)
		}
	case kindGlob:
		if p.withPort {
			ns.port.add(p.glob, id)
		} else {
			ns.host.add(p.glob, id)
		}
	case kindRegexp:
		ns.regexps = append(ns.regexps, compiledRegexp{re: p.re, rule: id})
	}
}

// setFirst adds k to *m unless present: the first entry listed is the one
// decisions name.
func setFirst[K comparable](m *map[K]int32, k K, id int32) {
	if *m == nil {
		*m = make(map[K]int32)
	}
	if _, dup := (*m)[k]; !dup {
		(*m)[k] = id
	}
}

// len returns the number of entries.
func (ns *nameSet) len() int { return len(ns.rules) }

// match reports whether the parsed name matches an entry, and which.
// lower is the name lower-cased, as parseName returns it.
func (ns *nameSet) match(n *name, lower []byte) (rule, bool) {
	if id, ok := ns.lookup(n, lower); ok {
		return ns.rules[id], true
	}
	return rule{}, false
}

func (ns *nameSet) lookup(n *name, lower []byte) (int32, bool) {
	if len(ns.rules) == 0 {
		return 0, false
	}
	host := lower[:len(n.host)]
	if n.ip.IsValid() {
		if id, ok := ns.ips[n.ip]; ok {
			return id, true
		}
		if n.port != 0 {
			if id, ok := ns.ipPorts[netip.AddrPortFrom(n.ip, n.port)]; ok {
				return id, true
			}
		}
	} else {
		if id, ok := ns.hosts[string(host)]; ok {
			return id, true
		}
		if n.port != 0 {
			if id, ok := ns.full[string(lower)]; ok {
				return id, true
			}
		}
	}
	if id, ok := ns.host.match(n.host, host); ok {
		return id, true
	}
	if n.port != 0 {
		if id, ok := ns.port.match(n.full, lower); ok {
			return id, true
		}
	}
	for _, r := range ns.regexps {
		if r.re.MatchString(n.full) || (n.port != 0 && r.re.MatchString(n.host)) {
			return r.rule, true
		}
	}
	return 0, false
}

// globIndex finds the globs that can match a string without trying them
// all. A glob's literal suffix (the text after its last wildcard) must end
// every string it matches; the index keys each glob by the part of that
// suffix that starts at its first boundary character ('.' or ':'), so a
// lookup tries only the keys formed by the string's own boundaries: a
// handful of hash lookups for a server name or room ID. Globs whose suffix
// has no boundary ("*", "evil*", "*org") are kept in a short list that is
// always tried.
type globIndex struct {
	globs    []indexedGlob
	bySuffix map[string][]int32 // key -> indexes into globs
	always   []int32
}

type indexedGlob struct {
	g    glob.Glob
	rule int32
}

func isBoundary(c byte) bool { return c == '.' || c == ':' }

func (x *globIndex) add(g glob.Glob, id int32) {
	i := int32(len(x.globs))
	x.globs = append(x.globs, indexedGlob{g: g, rule: id})
	suffix := g.Suffix()
	b := strings.IndexAny(suffix, ".:")
	if b < 0 {
		x.always = append(x.always, i)
		return
	}
	if x.bySuffix == nil {
		x.bySuffix = make(map[string][]int32)
	}
	key := suffix[b:]
	x.bySuffix[key] = append(x.bySuffix[key], i)
}

// match tries the globs that can match s; lower is s lower-cased (used for
// the hash lookups). The lowest-numbered rule among the matches is not
// guaranteed: the first match found wins.
func (x *globIndex) match(s string, lower []byte) (int32, bool) {
	if len(x.globs) == 0 {
		return 0, false
	}
	for _, i := range x.always {
		if x.globs[i].g.Match(s) {
			return x.globs[i].rule, true
		}
	}
	if len(x.bySuffix) == 0 {
		return 0, false
	}
	for i := len(lower) - 1; i >= 0; i-- {
		if !isBoundary(lower[i]) {
			continue
		}
		for _, gi := range x.bySuffix[string(lower[i:])] {
			if x.globs[gi].g.Match(s) {
				return x.globs[gi].rule, true
			}
		}
	}
	return 0, false
}

// name is a server name split for matching. Its strings are substrings of
// the checked name.
//
// The lower-cased form travels separately, as a slice of a buffer on the
// caller's stack: the strings here reach regexp (which keeps its input),
// and escape analysis does not tell one field from another, so a buffer
// referenced from this struct would be moved to the heap on every call.
type name struct {
	full string     // as received
	host string     // host literal (IPv6 with brackets), no port
	port uint16     // 0 when the name has none
	ip   netip.Addr // set for IP literals
}

// nameBuf holds a lower-cased server name on the caller's stack.
type nameBuf [servername.MaxLength]byte

// parseName splits s and returns it lower-cased in buf. It fails for
// strings that are not server names.
func parseName(s string, buf *nameBuf) (name, []byte, error) {
	sn, err := servername.Parse(s)
	if err != nil {
		return name{}, nil, err
	}
	n := name{full: s, host: s, port: uint16(sn.Port), ip: sn.IP}
	if sn.Port != 0 {
		n.host = servername.StripPort(s)
	}
	return n, lowerInto(buf[:0], s), nil
}

// lowerInto appends s to dst with ASCII letters lower-cased.
func lowerInto(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// equalFold compares two ASCII strings ignoring the case of letters.
func equalFold[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
