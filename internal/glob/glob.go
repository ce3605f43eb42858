package glob

import (
	"errors"
	"fmt"
	"strings"
)

// MaxPatternLength bounds a pattern so that compiled policies stay small.
const MaxPatternLength = 1024

// Glob is a compiled pattern. The zero value matches only the empty string.
type Glob struct {
	pattern  string // lower-cased
	literal  bool   // no wildcards: match is a case-insensitive equality
	prefix   string // literal text before the first wildcard
	suffix   string // literal text after the last wildcard
	minLen   int    // number of characters any match needs at least
	wildcard bool   // contains '*'
}

// Compile compiles pattern. It refuses empty patterns and patterns longer
// than [MaxPatternLength]; every other string is a valid pattern.
func Compile(pattern string) (Glob, error) {
	if pattern == "" {
		return Glob{}, errors.New("empty pattern")
	}
	if len(pattern) > MaxPatternLength {
		return Glob{}, fmt.Errorf("pattern is %d bytes long, more than %d", len(pattern), MaxPatternLength)
	}
	p := lower(pattern)
	g := Glob{pattern: p}
	first := strings.IndexAny(p, "*?")
	if first < 0 {
		g.literal = true
		g.minLen = len(p)
		return g, nil
	}
	last := strings.LastIndexAny(p, "*?")
	g.prefix, g.suffix = p[:first], p[last+1:]
	g.wildcard = strings.IndexByte(p, '*') >= 0
	g.minLen = len(p) - strings.Count(p, "*")
	return g, nil
}

// MustCompile is Compile for patterns known to be valid; it panics otherwise.
// Use it only for constants in code and tests.
func MustCompile(pattern string) Glob {
	g, err := Compile(pattern)
	if err != nil {
		panic(err)
	}
	return g
}

// CompileServerName compiles a pattern meant to match server names. Besides
// the wildcards it allows only characters that can occur in a server name
// (letters, digits, '-', '.', ':', '[' and ']'), so that typos such as a
// space or a stray slash are reported instead of silently never matching.
func CompileServerName(pattern string) (Glob, error) {
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == '*' || c == '?' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']':
		case '0' <= c && c <= '9', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		default:
			return Glob{}, fmt.Errorf("pattern %q: character %q cannot occur in a server name", pattern, c)
		}
	}
	return Compile(pattern)
}

// String returns the (lower-cased) pattern.
func (g Glob) String() string { return g.pattern }

// IsLiteral reports whether the pattern has no wildcards.
func (g Glob) IsLiteral() bool { return g.literal }

// Literal returns the pattern's text when it has no wildcards, so callers can
// put literal patterns into a hash set instead of matching them one by one.
func (g Glob) Literal() (string, bool) { return g.pattern, g.literal }

// Suffix returns the literal text after the last wildcard; callers may use
// it to index patterns such as "*.example.org".
func (g Glob) Suffix() string { return g.suffix }

// Match reports whether s matches the pattern, ignoring ASCII case.
func (g Glob) Match(s string) bool {
	if g.literal {
		return len(s) == len(g.pattern) && equalFold(s, g.pattern)
	}
	if len(s) < g.minLen || (!g.wildcard && len(s) != g.minLen) {
		return false
	}
	if !hasPrefixFold(s, g.prefix) || !hasSuffixFold(s, g.suffix) {
		return false
	}
	return match(g.pattern, s)
}

// match is the classic linear-space wildcard matcher: on a mismatch it
// returns to the most recent '*' and lets it swallow one more character.
// Its worst case is O(len(p)*len(s)), bounded by the pattern and name limits.
func match(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || (p[pi] != '*' && p[pi] == toLower(s[si]))):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func toLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// equalFold compares s with an already lower-cased t of the same length.
func equalFold(s, t string) bool {
	for i := 0; i < len(t); i++ {
		if toLower(s[i]) != t[i] {
			return false
		}
	}
	return true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix)
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && equalFold(s[len(s)-len(suffix):], suffix)
}
