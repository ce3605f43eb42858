package glob

import (
	"regexp"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern string
		s       string
		want    bool
	}{
		{"example.org", "example.org", true},
		{"example.org", "EXAMPLE.org", true},
		{"EXAMPLE.ORG", "example.org", true},
		{"example.org", "example.org.evil", false},
		{"example.org", "xexample.org", false},
		{"*.example.org", "a.example.org", true},
		{"*.example.org", "a.b.example.org", true},
		{"*.example.org", "example.org", false},
		{"*.example.org", "evilexample.org", false},
		{"*example.org", "evilexample.org", true},
		{"*", "", true},
		{"*", "anything", true},
		{"?", "", false},
		{"?", "a", true},
		{"?", "ab", false},
		{"ma?rix.org", "matrix.org", true},
		{"ma?rix.org", "marix.org", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a*b*c", "acb", false},
		{"*a*a*a*b", strings.Repeat("a", 100), false},
		{"**", "x", true},
		{"*:8448", "example.org:8448", true},
		{"*:8448", "example.org:8449", false},
		{"[::1]", "[::1]", true},
		{"evil.*", "EVIL.example", true},
	}
	for _, tt := range tests {
		g, err := Compile(tt.pattern)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.pattern, err)
		}
		if got := g.Match(tt.s); got != tt.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestCompileRejects(t *testing.T) {
	if _, err := Compile(""); err == nil {
		t.Error("empty pattern accepted")
	}
	if _, err := Compile(strings.Repeat("a", MaxPatternLength+1)); err == nil {
		t.Error("overlong pattern accepted")
	}
	for _, p := range []string{"exa mple.org", "evil.org/", "a,b", "ev\u00efl.org", "*.org\n", ""} {
		if _, err := CompileServerName(p); err == nil {
			t.Errorf("CompileServerName(%q) accepted", p)
		}
	}
	for _, p := range []string{"*.example.org", "[::1]:8448", "a?b-c.d"} {
		if _, err := CompileServerName(p); err != nil {
			t.Errorf("CompileServerName(%q): %v", p, err)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	g := MustCompile("*.matrix.org")
	matched := false
	allocs := testing.AllocsPerRun(100, func() { matched = g.Match("synapse.Matrix.org") })
	if !matched {
		t.Fatal("no match")
	}
	if allocs != 0 {
		t.Fatalf("Match allocates %v times", allocs)
	}
}

// FuzzMatch checks the matcher against a regular-expression translation of
// the same pattern.
func FuzzMatch(f *testing.F) {
	f.Add("*.example.org", "a.example.org")
	f.Add("a*b?c", "aXbYc")
	f.Add("??*", "ab")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		g, err := Compile(pattern)
		if err != nil {
			return
		}
		var re strings.Builder
		re.WriteString("(?s)^")
		for _, r := range strings.ToLower(pattern) {
			switch r {
			case '*':
				re.WriteString(".*")
			case '?':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString("$")
		// The matcher works on bytes; compare on ASCII input only, where
		// "one character" and "one byte" agree.
		for i := 0; i < len(pattern); i++ {
			if pattern[i] >= 0x80 {
				return
			}
		}
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return
			}
		}
		want := regexp.MustCompile(re.String()).MatchString(strings.ToLower(s))
		if got := g.Match(s); got != want {
			t.Fatalf("%q.Match(%q) = %v, regexp says %v", pattern, s, got, want)
		}
	})
}

func BenchmarkMatchSuffix(b *testing.B) {
	g := MustCompile("*.matrix.org")
	for b.Loop() {
		g.Match("synapse.matrix.org")
	}
}
