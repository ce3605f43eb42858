package auth

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

// The current canonicaliser against the reference copy of the one it
// replaced (canonical_ref_test.go): the same inputs accepted and refused,
// with the same *JSONError (offset and reason), the same canonical
// output, and the same answer from every entry point (Canonicalize,
// IsCanonical, Validate, ContentOfInto), strict and lenient.

// checkAgainstReference fails t when the current implementation and the
// reference disagree on in. c is a long-lived Canonicalizer (state must
// not leak from one call to the next).
func checkAgainstReference(t *testing.T, c *Canonicalizer, in []byte) {
	t.Helper()
	for _, lenient := range []bool{false, true} {
		ref := &refCanonicalizer{Lenient: lenient}
		want, werr := ref.refCanonicalize([]byte("prefix:"), in)

		c.Lenient = lenient
		got, err := c.Canonicalize([]byte("prefix:"), in)
		sameResult(t, "Canonicalize", lenient, in, got, err, want, werr)

		pooled, perr := Canonicalize([]byte("prefix:"), in)
		if lenient {
			pooled, perr = canonicalizeLenient([]byte("prefix:"), in)
		}
		sameResult(t, "package-level Canonicalize", lenient, in, pooled, perr, want, werr)

		wantCanon := werr == nil && bytes.Equal(want[len("prefix:"):], in)
		if got := c.IsCanonical(in); got != wantCanon || got != ref.refIsCanonical(in) {
			t.Fatalf("lenient=%v: IsCanonical(%q) = %v, reference %v", lenient, in, got, !got)
		}
		if !lenient && IsCanonical(in) != wantCanon {
			t.Fatalf("package-level IsCanonical(%q) = %v", in, !wantCanon)
		}
		if verr := c.Validate(in); !sameError(verr, werr) {
			t.Fatalf("lenient=%v: Validate(%q) = %v, reference %v", lenient, in, verr, werr)
		}
	}

	// ContentOfInto over a buffer full of junk from an earlier request.
	junk := bytes.Repeat([]byte{'#'}, 64)
	got, err := ContentOfInto(junk[:0], in)
	want, werr := refContentOfInto(nil, in)
	if !sameError(err, werr) {
		t.Fatalf("ContentOfInto(%q): error %v, reference %v", in, err, werr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ContentOfInto(%q)\n got %q\nwant %q", in, got, want)
	}
	if err == nil && len(in) > 0 {
		if same := unsafe.SliceData(got) == unsafe.SliceData(in); same != bytes.Equal(in, want) {
			t.Fatalf("ContentOfInto(%q) returned the body itself: %v", in, same)
		}
	}
}

func sameResult(t *testing.T, what string, lenient bool, in, got []byte, err error, want []byte, werr error) {
	t.Helper()
	if !sameError(err, werr) {
		t.Fatalf("%s lenient=%v (%q): error %v, reference %v", what, lenient, in, err, werr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s lenient=%v (%q)\n got %q\nwant %q", what, lenient, in, got, want)
	}
}

// sameError: both nil, or both *JSONError with the same offset and reason.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ja, jb *JSONError
	return errors.As(a, &ja) && errors.As(b, &jb) && *ja == *jb
}

// FuzzCanonicalizeAgainstReference: the current canonicaliser and the
// reference agree on every input (see checkAgainstReference).
func FuzzCanonicalizeAgainstReference(f *testing.F) {
	for _, s := range referenceSeeds() {
		f.Add([]byte(s))
	}
	g := jsonGen{r: rand.New(rand.NewPCG(7, 7))}
	for range 40 {
		f.Add(g.document())
	}
	var c Canonicalizer
	f.Fuzz(func(t *testing.T, in []byte) {
		checkAgainstReference(t, &c, in)
	})
}

// TestCanonicalizeAgainstReference runs the comparison over the seeds and
// generated documents (valid and broken) from a fixed seed, so every run
// of the tests covers what the fuzz target starts from.
func TestCanonicalizeAgainstReference(t *testing.T) {
	t.Parallel()
	var c Canonicalizer
	for _, s := range referenceSeeds() {
		checkAgainstReference(t, &c, []byte(s))
	}
	n := 20000
	if raceEnabled || testing.Short() {
		n = 3000
	}
	g := jsonGen{r: rand.New(rand.NewPCG(1, 14))}
	for range n {
		checkAgainstReference(t, &c, g.document())
	}
	// The benchmark bodies, as sent and in every re-encoding.
	for _, size := range []int{2 << 10, 16 << 10} {
		canon := sendBody(t, size)
		for _, in := range [][]byte{canon, reencode(t, canon, goJSON), reencode(t, canon, asciiJSON), reencode(t, canon, pythonJSON), reencode(t, canon, fedloadJSON)} {
			checkAgainstReference(t, &c, in)
		}
	}
}

func referenceSeeds() []string {
	deep := func(open, close string, n int) string {
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	return []string{
		``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `-`, `01`, `1.`, `1e`, `1e+`, `.5`, `+1`, `--1`,
		`{"b":"2","a":"1"}`, `{"a":-0,"b":1e10}`, `{"a":"\u65E5"}`, `{"本":2,"日":1}`,
		` { "a" : [ 1 , 2.0 , -0.0e3 ] } `, `"\ud83d\ude00\u0000\u001F\/"`, `{"a":1,"a":2}`, `{"\u0061":1,"a":2}`,
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud800\udbff"`, `"\ud800\\udc00"`, `"\ud800\ud`, `"\u12"`, `"\u12G4"`,
		`"\x"`, `"\`, `"abc`, "\"\x01\"", "\"\x7f\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"",
		"\"\xe2\x82", "\"\xff\"", "\"abcdefgh\xffijkl\"", "\"abcdefghijklmnop\x00\"",
		`9007199254740991`, `9007199254740992`, `-9007199254740992`, `12345678901234567890`, `1.5`, `1e400`, `1e-400`,
		`0.000e-99999999999999999999`, `100000000000000000000e-5`, `1E+2`, `-1.50E1`, `9007199254740991.000`, `9007199254740992.0`,
		`{"big":18014398509481984}`, `[-18014398509481984,1e16,1.0e15]`,
		`[[[[[[[[]]]]]]]]`, deep("[", "]", 256), deep("[", "]", 257), deep(`{"a":`, "}", 256), deep(`{"a":`, "}", 257),
		`{"\n":1,"#":2,"😀":3,"\uffff":4}`, "\"\xff\"", `{"pdus":[{"content":{"body":"<b>hi</b> & \u2028"}}]}`,
		`{"aaaaaaaa":1,"aaaaaaab":2,"aaaaaaaa":3}`, `{"aaaaaaaab":1,"aaaaaaaa":2,"aaaaaaaab":3}`,
		`{"a\u0000":1,"a":2}`, `{"a":1,"a\u0000":2}`, `{"\u0000":1,"":2}`, `{"":1,"":2}`,
		`{"` + strings.Repeat("k", 80) + `":1,"` + strings.Repeat("k", 80) + `":2}`,
		`{"q":1,"p":2,"o":3,"n":4,"m":5,"l":6,"k":7,"j":8,"i":9,"h":10,"g":11,"f":12,"e":13,"d":14,"c":15,"b":16,"a":17}`,
		`{"q":1,"p":2,"o":3,"n":4,"m":5,"l":6,"k":7,"j":8,"i":9,"h":10,"g":11,"f":12,"e":13,"d":14,"c":15,"b":16,"a":17,"q":0}`,
		`{"a":1}x`, `{"a":1} `, `{"a":1}}`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{,}`, `{"a":}`, `{1:2}`,
		`tru`, `true`, `truex`, `nul`, `null`, `fals`, `false`, "\t\n\r {}", "{}\t\n\r ",
		`{"b":{"d":[{"f":1,"e":2}],"c":{"h":null,"g":"\u00e9"}},"a":" x "}`,
		`{"b":[{"d":1,"c":2},{"c":1}], "a":{"z":{"y":{"x":{"w":1,"v":2}}}}}`,
		`{"c":1,"b":2,"a":3}`, `{"c":1,"b":2,"a":3,"b":4}`, `{"b":1,"a":2,"b":3}`, `{"c":1,"b":2,"a":3,"d":4,"a":5}`,
		`{"aaaaaaab":1,"aaaaaaaa":2,"aaaaaaaa\u0000":3}`, `{"b":1,"a":2,"a":3}`, `{"a":1,"a":2}`,
	}
}

// jsonGen writes random JSON-like documents: values of every kind with
// random whitespace, key orders and escapes, duplicate keys, numbers of
// every form, deep nesting, and, for some documents, one defect (a cut,
// a changed, inserted or removed byte).
type jsonGen struct {
	r   *rand.Rand
	out []byte
}

func (g *jsonGen) document() []byte {
	g.out = nil
	if g.r.IntN(40) == 0 {
		g.deep()
	} else {
		g.ws()
		g.value(0)
		g.ws()
	}
	out := g.out
	if len(out) > 0 {
		switch g.r.IntN(10) {
		case 0:
			out = out[:g.r.IntN(len(out))]
		case 1:
			out[g.r.IntN(len(out))] = byte(g.r.IntN(256))
		case 2:
			i := g.r.IntN(len(out) + 1)
			const junk = "\"\\{}[],:0 \x00\xff"
			out = append(out[:i], append([]byte{junk[g.r.IntN(len(junk))]}, out[i:]...)...)
		case 3:
			i := g.r.IntN(len(out))
			out = append(out[:i], out[i+1:]...)
		}
	}
	return bytes.Clone(out)
}

// deep nests arrays and objects around the limit of MaxJSONDepth.
func (g *jsonGen) deep() {
	n := MaxJSONDepth - 3 + g.r.IntN(6)
	var closers []string
	for range n {
		if g.r.IntN(2) == 0 {
			g.out = append(g.out, '[')
			closers = append(closers, "]")
		} else {
			g.out = append(g.out, `{"k":`...)
			closers = append(closers, "}")
		}
		g.ws()
	}
	g.value(MaxJSONDepth)
	for i := len(closers) - 1; i >= 0; i-- {
		g.ws()
		g.out = append(g.out, closers[i]...)
	}
}

func (g *jsonGen) ws() {
	if g.r.IntN(4) != 0 {
		return
	}
	for range 1 + g.r.IntN(3) {
		g.out = append(g.out, " \t\n\r"[g.r.IntN(4)])
	}
}

func (g *jsonGen) value(depth int) {
	k := g.r.IntN(10)
	if depth > 6 && k < 4 {
		k += 4 // shallow trees mostly
	}
	switch k {
	case 0, 1:
		g.object(depth + 1)
	case 2, 3:
		g.array(depth + 1)
	case 4, 5, 6:
		g.str(g.text())
	case 7, 8:
		g.number()
	default:
		lits := []string{"true", "false", "null", "tru", "nulll", "True"}
		i := g.r.IntN(3)
		if g.r.IntN(10) == 0 {
			i = 3 + g.r.IntN(3)
		}
		g.out = append(g.out, lits[i]...)
	}
}

var genKeys = []string{
	"a", "b", "c", "ab", "ba", "", "é", "日", "😀", "\uffff", "\"", "\\", "\n", "#", "a\x00", "\x00", "/",
	"aaaaaaaa", "aaaaaaab", "aaaaaaaa\x00", "aaaaaaaab", "origin", "origin_server_ts", "pdus", "content",
	"body", "m.relates_to", "type", "\u007f", "\u0080", "\u07ff", "\u0800", "\U00010000", "\U0010ffff",
	strings.Repeat("k", 70), strings.Repeat("k", 70) + "x",
}

func (g *jsonGen) object(depth int) {
	g.out = append(g.out, '{')
	g.ws()
	n := g.r.IntN(6)
	if g.r.IntN(8) == 0 {
		n = 15 + g.r.IntN(6) // around the insertion sort's limit
	}
	keys := make([]string, 0, n)
	for range n {
		keys = append(keys, genKeys[g.r.IntN(len(genKeys))])
	}
	switch g.r.IntN(6) {
	case 0, 1: // sorted, canonical order (maybe with duplicates)
		sortStrings(keys)
	case 2: // reversed, or reversed at the start only
		sortStrings(keys)
		slices.Reverse(keys[:g.r.IntN(len(keys)+1)])
	}
	if g.r.IntN(3) != 0 { // usually no duplicates
		keys = dedupe(keys)
	}
	for i, k := range keys {
		if i > 0 {
			g.out = append(g.out, ',')
			g.ws()
		}
		g.str(k)
		g.ws()
		g.out = append(g.out, ':')
		g.ws()
		g.value(depth)
		g.ws()
	}
	g.out = append(g.out, '}')
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, k := range s {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func (g *jsonGen) array(depth int) {
	g.out = append(g.out, '[')
	g.ws()
	for i := range g.r.IntN(5) {
		if i > 0 {
			g.out = append(g.out, ',')
			g.ws()
		}
		g.value(depth)
		g.ws()
	}
	g.out = append(g.out, ']')
}

// text returns string content: words, non-ASCII text, controls, quotes,
// and now and then a long plain run (the word-at-a-time path).
func (g *jsonGen) text() string {
	parts := []string{
		"hello", "x", "Grüße", "日本語", "😀🎉", "\u2028", "\x7f", "\x01", "\n", "\t", "\"", "\\", "/", "<b>",
		"\x00", "\u0080", "\u07ff", "\u0800", "\uffff", "\U00010000", "\U0010ffff", " ", "abcdefgh", "$cmVwbHktdG8tZXZlbnQtaWQ",
	}
	var b strings.Builder
	for range g.r.IntN(6) {
		b.WriteString(parts[g.r.IntN(len(parts))])
	}
	if g.r.IntN(6) == 0 {
		b.WriteString(strings.Repeat("abcdefghijklmnop", 4)[:g.r.IntN(64)])
	}
	return b.String()
}

// str writes s as a JSON string, each character raw or escaped in one
// of the ways JSON allows, and now and then something JSON forbids.
func (g *jsonGen) str(s string) {
	g.out = append(g.out, '"')
	for _, r := range s {
		switch g.r.IntN(16) {
		case 0, 1: // \uXXXX, upper or lower case hex; astral as a pair
			g.uEscape(r, g.r.IntN(2) == 0)
			continue
		case 2: // the broken things
			if g.r.IntN(8) == 0 {
				g.out = append(g.out, []string{`\ud800`, `\udfff`, `\ud83d\u0041`, "\xff", "\xc0\xaf", "\xed\xa0\x80", "\x1f", `\q`, `\u00g0`, "\xe2\x82"}[g.r.IntN(10)]...)
			}
		case 3:
			if r == '/' {
				g.out = append(g.out, `\/`...)
				continue
			}
		}
		switch {
		case r == '"' || r == '\\':
			g.out = append(g.out, '\\', byte(r))
		case r < 0x20:
			if e := shortEscape(r); e != 0 && g.r.IntN(3) != 0 {
				g.out = append(g.out, '\\', e)
			} else {
				g.uEscape(r, g.r.IntN(3) == 0)
			}
		default:
			g.out = utf8.AppendRune(g.out, r)
		}
	}
	g.out = append(g.out, '"')
}

func (g *jsonGen) uEscape(r rune, upper bool) {
	format := `\u%04x`
	if upper {
		format = `\u%04X`
	}
	if r > 0xffff {
		r -= 0x10000
		g.out = fmt.Appendf(g.out, format+format, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		return
	}
	g.out = fmt.Appendf(g.out, format, r)
}

func (g *jsonGen) number() {
	tokens := []string{
		"0", "-0", "1", "-1", "42", "9007199254740991", "-9007199254740991", "9007199254740992", "-9007199254740992",
		"18014398509481984", "123456789012345678901234567890", "1.0", "1.5", "-0.0", "1e2", "1E+2", "1e-2", "150e-1",
		"1e400", "0e99999", "0.000e-99999999999999999999", "100000000000000000000e-5", "9007199254740991.000",
		"9007199254740992.0", "1e15", "1e16", "2.5e1", "01", "1.", ".5", "-", "1e", "+1",
	}
	if g.r.IntN(3) == 0 {
		g.out = fmt.Appendf(g.out, "%d", g.r.Int64N(1<<62)-1<<61)
		return
	}
	g.out = append(g.out, tokens[g.r.IntN(len(tokens))]...)
}
