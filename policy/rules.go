package policy

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/internal/glob"
)

// expandEndpointName turns a class or operation name into the operation
// names it covers. It fails for names the endpoint table does not know.
func expandEndpointName(table []endpoints.Endpoint, n string) ([]string, error) {
	var ops []string
	for i := range table {
		e := &table[i]
		if e.Class == n || e.Name == n {
			if !containsString(ops, e.Name) {
				ops = append(ops, e.Name)
			}
		}
	}
	if len(ops) == 0 {
		classes, _ := endpoints.Names()
		return nil, fmt.Errorf("unknown endpoint class or operation %q (classes: %v)", n, classes)
	}
	return ops, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// endpointRules are deny_endpoints and the per-origin overrides, compiled
// down to operation names so that a check is one or two hash lookups.
// Immutable after build.
type endpointRules struct {
	deny map[string]rule              // operation -> global entry denying it
	byOp map[string][]*originOverride // operation -> overrides naming it
}

// originOverride is one [policy.origins."pattern"] table.
type originOverride struct {
	match nameSet         // the one pattern
	deny  map[string]rule // operation -> its deny_endpoints entry
	allow map[string]bool // operations in its allow_endpoints
}

func compileEndpointRules(p config.Policy) (endpointRules, error) {
	table := endpoints.All()
	var r endpointRules
	for i, n := range p.DenyEndpoints {
		ops, err := expandEndpointName(table, n)
		if err != nil {
			return r, fmt.Errorf("policy.deny_endpoints[%d]: %w", i, err)
		}
		for _, op := range ops {
			if r.deny == nil {
				r.deny = make(map[string]rule)
			}
			if _, dup := r.deny[op]; !dup {
				r.deny[op] = rule{source: "policy.deny_endpoints", index: i, text: n}
			}
		}
	}
	keys := make([]string, 0, len(p.Origins))
	for k := range p.Origins {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		or := p.Origins[k]
		src := "policy.origins." + strconv.Quote(k)
		o := &originOverride{deny: map[string]rule{}, allow: map[string]bool{}}
		if err := o.match.add("policy.origins", []string{k}); err != nil {
			return r, fmt.Errorf("policy.origins key %q: %w", k, err)
		}
		named := map[string]bool{}
		for i, n := range or.DenyEndpoints {
			ops, err := expandEndpointName(table, n)
			if err != nil {
				return r, fmt.Errorf("%s.deny_endpoints[%d]: %w", src, i, err)
			}
			for _, op := range ops {
				if _, dup := o.deny[op]; !dup {
					o.deny[op] = rule{source: src + ".deny_endpoints", index: i, text: n}
				}
				named[op] = true
			}
		}
		for i, n := range or.AllowEndpoints {
			ops, err := expandEndpointName(table, n)
			if err != nil {
				return r, fmt.Errorf("%s.allow_endpoints[%d]: %w", src, i, err)
			}
			for _, op := range ops {
				o.allow[op] = true
				named[op] = true
			}
		}
		for op := range named {
			if r.byOp == nil {
				r.byOp = make(map[string][]*originOverride)
			}
			r.byOp[op] = append(r.byOp[op], o)
		}
	}
	return r, nil
}

// check applies the rules to operation op requested by (or sent to) peer.
// peer may be "" (unauthenticated requests): overrides then do not apply.
// Deny wins: an override's deny_endpoints beats another override's
// allow_endpoints, and allow_endpoints only lifts the global list.
func (r *endpointRules) check(peer, op string) (rule, bool) {
	global, denied := r.deny[op]
	overrides := r.byOp[op]
	if len(overrides) == 0 || peer == "" {
		return global, denied
	}
	var buf nameBuf
	n, lower, err := parseName(peer, &buf)
	if err != nil {
		return global, denied
	}
	lifted := false
	for _, o := range overrides {
		if _, ok := o.match.lookup(&n, lower); !ok {
			continue
		}
		if d, ok := o.deny[op]; ok {
			return d, true
		}
		if o.allow[op] {
			lifted = true
		}
	}
	if lifted {
		return rule{}, false
	}
	return global, denied
}

// roomSet is deny_rooms compiled: literal room IDs in a hash set, globs in
// a suffix index. Matching ignores ASCII case, like server ACL globs.
// Immutable after build.
type roomSet struct {
	rules []rule
	exact map[string]int32
	globs globIndex
}

func (rs *roomSet) add(source string, entries []string) error {
	for i, e := range entries {
		if e == "" || (e[0] != '!' && e[0] != '*' && e[0] != '?') {
			return fmt.Errorf("%s[%d] %q: must be a room ID (\"!abc:example.org\") or a glob on one (\"*:evil.example\")", source, i, e)
		}
		g, err := glob.Compile(e)
		if err != nil {
			return fmt.Errorf("%s[%d] %q: bad glob: %w", source, i, e, err)
		}
		id := int32(len(rs.rules))
		rs.rules = append(rs.rules, rule{source: source, index: i, text: e})
		if lit, ok := g.Literal(); ok {
			setFirst(&rs.exact, lit, id)
			continue
		}
		rs.globs.add(g, id)
	}
	return nil
}

func (rs *roomSet) empty() bool { return len(rs.rules) == 0 }

// match reports whether room (a decoded room ID) is denied. Globs are also
// tried on the ID with the port of its server part removed, so
// "*:evil.example" covers rooms of "evil.example:8448" as it covers the
// server name.
func (rs *roomSet) match(room string) (rule, bool) {
	var buf idBuf
	if len(room) > len(buf) {
		return rule{}, false
	}
	lower := lowerInto(buf[:0], room)
	if id, ok := rs.exact[string(lower)]; ok {
		return rs.rules[id], true
	}
	if id, ok := rs.globs.match(room, lower); ok {
		return rs.rules[id], true
	}
	if short, ok := roomWithoutPort(room); ok {
		if id, ok := rs.globs.match(short, lower[:len(short)]); ok {
			return rs.rules[id], true
		}
	}
	return rule{}, false
}
