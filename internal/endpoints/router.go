package endpoints

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// maxParams is the largest number of parameters in any template.
const maxParams = 4

// Result is the outcome of a [Router.Lookup].
type Result uint8

const (
	// NotFound: no template matches the path (404 M_UNRECOGNIZED).
	NotFound Result = iota
	// Found: path and method match an endpoint.
	Found
	// MethodNotAllowed: a template matches the path, but not with this
	// method (405 M_UNRECOGNIZED).
	MethodNotAllowed
)

// Router maps raw request paths onto the endpoint table. Build it with
// [NewRouter]; it is immutable and safe for concurrent use.
type Router struct {
	root *node
}

type node struct {
	static    map[string]*node
	param     *node
	paramName string
	endpoints []*Endpoint // those whose template ends here
}

// Match is a successful lookup: the endpoint and its raw parameter values.
// It is a value type holding substrings of the looked-up path; it does not
// allocate.
type Match struct {
	Endpoint *Endpoint
	names    [maxParams]string
	values   [maxParams]string
	n        int
}

// RawParam returns the still percent-encoded value of the named path
// parameter, or "" if the template has no such parameter.
func (m *Match) RawParam(name string) string {
	for i := 0; i < m.n; i++ {
		if m.names[i] == name {
			return m.values[i]
		}
	}
	return ""
}

// Param returns the percent-decoded value of the named path parameter. It
// fails if the raw value holds a malformed escape.
func (m *Match) Param(name string) (string, error) {
	raw := m.RawParam(name)
	if strings.IndexByte(raw, '%') < 0 {
		return raw, nil
	}
	v, err := url.PathUnescape(raw)
	if err != nil {
		return "", fmt.Errorf("path parameter %s: %w", name, err)
	}
	return v, nil
}

// NewRouter builds a router over the whole endpoint table.
func NewRouter() *Router {
	return newRouter(table[:])
}

func newRouter(rows []Endpoint) *Router {
	r := &Router{root: &node{}}
	for i := range rows {
		e := &rows[i]
		n := r.root
		for _, seg := range splitTemplate(e.Path) {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				name := seg[1 : len(seg)-1]
				if n.param == nil {
					n.param = &node{paramName: name}
				} else if n.param.paramName != name {
					panic(fmt.Sprintf("endpoints: %s: parameter {%s} conflicts with {%s}", e.Path, name, n.param.paramName))
				}
				n = n.param
				continue
			}
			if n.static == nil {
				n.static = map[string]*node{}
			}
			child := n.static[seg]
			if child == nil {
				child = &node{}
				n.static[seg] = child
			}
			n = child
		}
		for _, other := range n.endpoints {
			if other.Method == e.Method {
				panic(fmt.Sprintf("endpoints: %s %s listed twice", e.Method, e.Path))
			}
		}
		n.endpoints = append(n.endpoints, e)
	}
	return r
}

// splitTemplate splits "/a/{b}/" into ["a", "{b}", ""].
func splitTemplate(p string) []string {
	return strings.Split(strings.TrimPrefix(p, "/"), "/")
}

// Lookup finds the endpoint for method and rawPath. rawPath is the path part
// of the request-target exactly as received (percent-encoded, without the
// query). Static segments match byte for byte; parameter segments must be
// non-empty. When the result is MethodNotAllowed, m.Endpoint is one of the
// endpoints registered for the path and [Router.Allowed] lists the methods.
func (r *Router) Lookup(method, rawPath string) (m Match, res Result) {
	if rawPath == "" || rawPath[0] != '/' {
		return Match{}, NotFound
	}
	var partial Match
	if r.lookup(r.root, method, rawPath[1:], &m, &partial) {
		return m, Found
	}
	if partial.Endpoint != nil {
		return partial, MethodNotAllowed
	}
	return Match{}, NotFound
}

// lookup walks the remaining path rest below n, preferring static children
// over parameters and backtracking when a branch dead-ends.
func (r *Router) lookup(n *node, method, rest string, m, partial *Match) bool {
	seg, tail, last := cutSegment(rest)
	if child := n.static[seg]; child != nil {
		if r.descend(child, method, tail, last, m, partial) {
			return true
		}
	}
	if n.param != nil && seg != "" && m.n < maxParams {
		m.names[m.n], m.values[m.n] = n.param.paramName, seg
		m.n++
		if r.descend(n.param, method, tail, last, m, partial) {
			return true
		}
		m.n--
	}
	return false
}

func (r *Router) descend(n *node, method, tail string, last bool, m, partial *Match) bool {
	if !last {
		return r.lookup(n, method, tail, m, partial)
	}
	for _, e := range n.endpoints {
		if e.Method == method {
			m.Endpoint = e
			return true
		}
	}
	if len(n.endpoints) > 0 && partial.Endpoint == nil {
		*partial = *m
		partial.Endpoint = n.endpoints[0]
	}
	return false
}

// cutSegment returns the first segment of rest, what follows its slash, and
// whether it was the last segment.
func cutSegment(rest string) (seg, tail string, last bool) {
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i], rest[i+1:], false
	}
	return rest, "", true
}

// Allowed returns the methods registered for the path of m, sorted, for an
// Allow header on a 405 answer.
func (r *Router) Allowed(rawPath string) []string {
	var methods []string
	for _, method := range []string{"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"} {
		if _, res := r.Lookup(method, rawPath); res == Found {
			methods = append(methods, method)
		}
	}
	sort.Strings(methods)
	return methods
}

func sortStrings(s []string) { sort.Strings(s) }
