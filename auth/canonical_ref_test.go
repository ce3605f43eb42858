package auth

// The canonicaliser as it was at commit f00b898, before the work that
// made it faster, kept verbatim apart from names (every identifier prefixed
// "ref"; errors are the shared *JSONError): the reference the differential
// tests and FuzzCanonicalizeAgainstReference hold the current
// implementation to. Same inputs accepted and refused, with the same
// offset and reason, and the same canonical output. Do not "improve" it.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// refMaxJSONDepth is the deepest nesting of objects and arrays accepted in JSON
// input. Deeper input is refused rather than recursed into.
const refMaxJSONDepth = 256

// refMaxSafeInteger is 2^53-1, the largest integer canonical JSON allows (and
// the smallest is its negation).
const refMaxSafeInteger = 1<<53 - 1

// refCanonicalizer turns JSON text into the Matrix spec's canonical JSON
// (appendix "Canonical JSON"): object keys sorted by code point, no
// insignificant whitespace, integers only, the spec's minimal string
// escapes and raw UTF-8 for everything else.
//
// It scans the input bytes directly, never building a tree of Go values,
// and keeps its scratch space between calls, so a long-lived refCanonicalizer
// costs no allocations per call beyond growing dst. The zero value is ready
// to use (strict). A refCanonicalizer is not safe for concurrent use; the
// package-level [refCanonicalize] and [refIsCanonical] draw one from a pool.
//
// Input is refused with a *[JSONError] for: invalid JSON syntax, invalid
// UTF-8, lone UTF-16 surrogates in \u escapes, duplicate object keys,
// nesting deeper than [refMaxJSONDepth], data after the value, numbers that are
// not integral (floats) and integers outside [-(2^53)+1, 2^53-1]. Integral
// numbers written with a fraction or an exponent ("1e10", "1.0E2") become
// plain integers and "-0" becomes "0", as the spec's own example shows.
type refCanonicalizer struct {
	// Lenient keeps integers outside the 2^53 range instead of refusing
	// them, exactly as written. It exists only for the content of X-Matrix
	// signed requests and must not be used for anything else.
	//
	// Why: events in room versions 1-5 may contain such integers (the spec
	// says servers must not enforce canonical JSON strictly for them), and
	// Synapse signs and verifies request content containing them as-is.
	// Refusing a whole /send transaction over one old-room event would make
	// the sending server retry the transaction forever. Only plain integer
	// literals are kept this way: an out-of-range value written with a
	// fraction or exponent, and every non-integral number, is still
	// refused (Python reads those as floats, so no Synapse signed them as
	// integers, and expanding "1e999" would let a small body grow huge).
	Lenient bool

	src     []byte
	edits   int            // places seen so far where the output differs from the input
	members []refMember    // keys of the objects currently open, innermost last
	objects []refReordered // objects whose keys are out of order, as they closed
	byStart []int32        // indexes into objects, ordered by start offset
	perm    []refMember    // sorted keys of those objects
}

// refMember is one object key in the input.
type refMember struct {
	prefix uint64 // first 8 bytes of the decoded key, big-endian, zero-padded
	key    int32  // offset of the key's opening quote
	end    int32  // offset just past its closing quote
	child  int32  // 1 + index in objects of the value, if it is a refReordered object
	vend   int32  // if the value needs no rewriting: the offset just past it; else 0
	esc    bool   // the key contains backslash escapes
}

// refReordered records an object whose members must be written in a different
// order from the input's.
type refReordered struct {
	start, end int32 // offsets of '{' and just past '}'
	first, n   int32 // its sorted keys are perm[first : first+n]
}

// refCanonicalize appends the canonical form of the JSON text src to dst. On
// error dst is returned unchanged together with a *[JSONError]. Input that
// is already canonical is validated in one pass and copied as it is.
func (c *refCanonicalizer) refCanonicalize(dst, src []byte) ([]byte, error) {
	err := c.scan(src)
	defer c.release()
	if err != nil {
		return dst, err
	}
	if c.edits == 0 {
		return append(dst, src...), nil
	}
	dst = slices.Grow(dst, len(src))
	dst, _ = c.emit(dst, 0)
	return dst, nil
}

// refIsCanonical reports whether src is valid JSON already in canonical form,
// in one pass over it.
func (c *refCanonicalizer) refIsCanonical(src []byte) bool {
	err := c.scan(src)
	c.release()
	return err == nil && c.edits == 0
}

// Validate checks src as refCanonicalize would, without producing output.
func (c *refCanonicalizer) Validate(src []byte) error {
	err := c.scan(src)
	c.release()
	return err
}

// release drops the reference to the caller's input.
func (c *refCanonicalizer) release() { c.src = nil }

// refCanonPool holds strict Canonicalizers for the package-level functions.
var refCanonPool = sync.Pool{New: func() any { return new(refCanonicalizer) }}

// refMaxPooledScratch bounds the scratch (in keys) a pooled refCanonicalizer may
// keep, so one huge input does not pin memory forever.
const refMaxPooledScratch = 1 << 14

func refGetCanonicalizer(lenient bool) *refCanonicalizer {
	c := refCanonPool.Get().(*refCanonicalizer)
	c.Lenient = lenient
	return c
}

func refPutCanonicalizer(c *refCanonicalizer) {
	if cap(c.members) > refMaxPooledScratch || cap(c.perm) > refMaxPooledScratch || cap(c.objects) > refMaxPooledScratch || cap(c.byStart) > refMaxPooledScratch {
		*c = refCanonicalizer{}
	}
	c.src = nil
	refCanonPool.Put(c)
}

// refCanonicalize appends the canonical JSON form of src to dst (strict mode;
// see [refCanonicalizer] for the rules). On error dst is returned unchanged
// with a *[JSONError]. It is safe for concurrent use.
func refCanonicalize(dst, src []byte) ([]byte, error) {
	c := refGetCanonicalizer(false)
	dst, err := c.refCanonicalize(dst, src)
	refPutCanonicalizer(c)
	return dst, err
}

// refCanonicalizeLenient is refCanonicalize with [refCanonicalizer.Lenient] set, for
// X-Matrix request content only.
func refCanonicalizeLenient(dst, src []byte) ([]byte, error) {
	c := refGetCanonicalizer(true)
	dst, err := c.refCanonicalize(dst, src)
	refPutCanonicalizer(c)
	return dst, err
}

// refIsCanonical reports whether src is valid JSON in canonical form (strict
// mode). It is safe for concurrent use.
func refIsCanonical(src []byte) bool {
	c := refGetCanonicalizer(false)
	ok := c.refIsCanonical(src)
	refPutCanonicalizer(c)
	return ok
}

// ---- pass 1: validate, note whether the input is canonical, sort keys ----

func (c *refCanonicalizer) scan(src []byte) error {
	c.src, c.edits = src, 0
	c.members, c.objects, c.byStart, c.perm = c.members[:0], c.objects[:0], c.byStart[:0], c.perm[:0]
	if len(src) > math.MaxInt32 {
		return errAt(0, "input larger than 2 GiB")
	}
	i := c.ws(0)
	if i == len(src) {
		return errAt(i, "no JSON value")
	}
	i, err := c.value(i, 0)
	if err != nil {
		return err
	}
	if i = c.ws(i); i != len(src) {
		return errAt(i, "unexpected data after the JSON value")
	}
	if len(c.objects) > 0 {
		// objects are recorded as they close (post-order); emit looks up
		// the ones it meets outside a refReordered parent by start offset.
		for k := range c.objects {
			c.byStart = append(c.byStart, int32(k))
		}
		slices.SortFunc(c.byStart, func(a, b int32) int { return int(c.objects[a].start - c.objects[b].start) })
	}
	return nil
}

// ws skips JSON whitespace; any whitespace makes the input non-canonical.
func (c *refCanonicalizer) ws(i int) int {
	src := c.src
	j := i
	for j < len(src) && (src[j] == ' ' || src[j] == '\n' || src[j] == '\r' || src[j] == '\t') {
		j++
	}
	if j != i {
		c.edits++
	}
	return j
}

// unexpected describes the byte at i (or the end of input) and what was
// wanted instead.
func (c *refCanonicalizer) unexpected(i int, want string) *JSONError {
	if i >= len(c.src) {
		return errAt(i, "unexpected end of input, expected "+want)
	}
	b := c.src[i]
	if b >= 0x20 && b < 0x7f {
		return errAt(i, fmt.Sprintf("unexpected %q, expected %s", b, want))
	}
	return errAt(i, fmt.Sprintf("unexpected byte 0x%02x, expected %s", b, want))
}

func (c *refCanonicalizer) value(i, depth int) (int, error) {
	src := c.src
	if i >= len(src) {
		return i, c.unexpected(i, "a value")
	}
	switch b := src[i]; b {
	case '"':
		j, _, err := c.str(i)
		return j, err
	case '{':
		return c.object(i, depth+1)
	case '[':
		return c.array(i, depth+1)
	case 't':
		return c.literal(i, "true")
	case 'f':
		return c.literal(i, "false")
	case 'n':
		return c.literal(i, "null")
	default:
		if b == '-' || refIsDigit(b) {
			return c.number(i)
		}
		return i, c.unexpected(i, "a value")
	}
}

func (c *refCanonicalizer) literal(i int, lit string) (int, error) {
	if !bytes.HasPrefix(c.src[i:], []byte(lit)) {
		return i, errAt(i, "invalid literal, expected "+lit)
	}
	return i + len(lit), nil
}

func (c *refCanonicalizer) object(start, depth int) (int, error) {
	if depth > refMaxJSONDepth {
		return start, errAt(start, "nesting deeper than "+strconv.Itoa(refMaxJSONDepth)+" levels")
	}
	src := c.src
	base := len(c.members)
	sorted := true
	i := c.ws(start + 1)
	if i < len(src) && src[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(src) || src[i] != '"' {
			return i, c.unexpected(i, "a string key")
		}
		j, esc, err := c.str(i)
		if err != nil {
			return j, err
		}
		m := refMember{key: int32(i), end: int32(j), esc: esc}
		m.prefix = refKeyPrefix(src[i+1:j], esc)
		if len(c.members) > base {
			prev := &c.members[len(c.members)-1]
			cmp := -1 // prefixes decide most comparisons without a call
			if prev.prefix > m.prefix {
				cmp = 1
			} else if prev.prefix == m.prefix {
				cmp = c.cmpMembers(*prev, m)
			}
			switch cmp {
			case 0:
				return i, c.duplicate(m)
			case 1:
				sorted = false
				c.edits++
			}
		}
		i = c.ws(j)
		if i >= len(src) || src[i] != ':' {
			return i, c.unexpected(i, "':'")
		}
		vs := c.ws(i + 1)
		nobj, edits := len(c.objects), c.edits
		if i, err = c.value(vs, depth); err != nil {
			return i, err
		}
		switch {
		case c.edits == edits:
			m.vend = int32(i) // emit copies the value as it is
		case len(c.objects) > nobj && c.objects[len(c.objects)-1].start == int32(vs):
			m.child = int32(len(c.objects))
		}
		// Appended after the value: nested objects use the stack above
		// base and leave it as they found it.
		c.members = append(c.members, m)
		i = c.ws(i)
		if i < len(src) && src[i] == ',' {
			i = c.ws(i + 1)
			continue
		}
		if i < len(src) && src[i] == '}' {
			i++
			break
		}
		return i, c.unexpected(i, "',' or '}'")
	}
	if !sorted {
		ms := c.members[base:]
		if k := c.sortMembers(ms); k > 0 {
			later := ms[k]
			if ms[k-1].key > later.key {
				later = ms[k-1]
			}
			return int(later.key), c.duplicate(later)
		}
		first := len(c.perm)
		c.perm = append(c.perm, ms...)
		c.objects = append(c.objects, refReordered{start: int32(start), end: int32(i), first: int32(first), n: int32(len(ms))})
	}
	c.members = c.members[:base]
	return i, nil
}

func (c *refCanonicalizer) duplicate(m refMember) *JSONError {
	key := c.src[m.key+1 : m.end-1]
	if len(key) > 64 {
		return errAt(int(m.key), fmt.Sprintf("duplicate key %q...", key[:64]))
	}
	return errAt(int(m.key), fmt.Sprintf("duplicate key %q", key))
}

func (c *refCanonicalizer) array(start, depth int) (int, error) {
	if depth > refMaxJSONDepth {
		return start, errAt(start, "nesting deeper than "+strconv.Itoa(refMaxJSONDepth)+" levels")
	}
	src := c.src
	i := c.ws(start + 1)
	if i < len(src) && src[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = c.value(i, depth); err != nil {
			return i, err
		}
		i = c.ws(i)
		if i < len(src) && src[i] == ',' {
			i = c.ws(i + 1)
			continue
		}
		if i < len(src) && src[i] == ']' {
			return i + 1, nil
		}
		return i, c.unexpected(i, "',' or ']'")
	}
}

// refStrPlain[b] reports whether byte b stands for itself inside a JSON string
// and may appear raw in canonical JSON: printable ASCII and DEL, other than
// '"' and '\'.
var refStrPlain = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const (
	refLsb = 0x0101010101010101
	refMsb = 0x8080808080808080
)

// refSwarSpecial marks the bytes of v (eight input bytes, little-endian)
// that are not plain: below 0x20, '"', '\' or non-ASCII. The result has
// the top bit of such bytes set; borrows may also mark bytes after the
// first marked one, never before it, so the lowest mark is exact.
func refSwarSpecial(v uint64) uint64 {
	ctl := (v - refLsb*0x20) &^ v
	quote := v ^ (refLsb * '"')
	quote = (quote - refLsb) &^ quote
	bs := v ^ (refLsb * '\\')
	bs = (bs - refLsb) &^ bs
	return (ctl | quote | bs | v) & refMsb
}

// str validates the string starting at the quote at start and returns the
// offset just past its closing quote and whether it contains escapes.
func (c *refCanonicalizer) str(start int) (int, bool, error) {
	src := c.src
	n := len(src)
	j := start + 1
	esc := false
	for {
		for j+8 <= n {
			if m := refSwarSpecial(binary.LittleEndian.Uint64(src[j:])); m != 0 {
				j += bits.TrailingZeros64(m) >> 3 // the first special byte
				break
			}
			j += 8
		}
		for j < n && refStrPlain[src[j]] {
			j++
		}
		if j >= n {
			return j, esc, errAt(start, "unterminated string")
		}
		switch b := src[j]; {
		case b == '"':
			return j + 1, esc, nil
		case b == '\\':
			esc = true
			k, canonical, err := c.escape(j)
			if err != nil {
				return k, esc, err
			}
			if !canonical {
				c.edits++
			}
			j = k
		case b < 0x20:
			return j, esc, errAt(j, fmt.Sprintf("unescaped control character U+%04X in a string", b))
		default:
			size := refUtf8Seq(src[j:])
			if size == 0 {
				return j, esc, errAt(j, "invalid UTF-8 in a string")
			}
			j += size
		}
	}
}

// refUtf8Seq returns the length of the valid multi-byte UTF-8 sequence at the
// start of s (whose first byte is >= 0x80), or 0 if it is invalid: a stray
// continuation byte, an overlong form, a surrogate or a value above U+10FFFF.
func refUtf8Seq(s []byte) int {
	b0 := s[0]
	switch {
	case b0 >= 0xc2 && b0 < 0xe0:
		if len(s) >= 2 && s[1]&0xc0 == 0x80 {
			return 2
		}
	case b0 >= 0xe0 && b0 < 0xf0:
		if len(s) >= 3 && s[1]&0xc0 == 0x80 && s[2]&0xc0 == 0x80 &&
			!(b0 == 0xe0 && s[1] < 0xa0) && !(b0 == 0xed && s[1] >= 0xa0) {
			return 3
		}
	default:
		if r, size := utf8.DecodeRune(s); r != utf8.RuneError {
			return size
		}
	}
	return 0
}

// escape validates the escape sequence at the backslash at j, returning the
// offset after it and whether it is already in canonical form.
func (c *refCanonicalizer) escape(j int) (int, bool, error) {
	src := c.src
	if j+1 >= len(src) {
		return j, false, errAt(j, "unterminated escape sequence")
	}
	switch src[j+1] {
	case '"', '\\', 'b', 'f', 'n', 'r', 't':
		return j + 2, true, nil
	case '/':
		return j + 2, false, nil
	case 'u':
		u, ok := refHex4(src, j+2)
		if !ok {
			return j, false, errAt(j, "invalid \\u escape")
		}
		switch {
		case u >= 0xd800 && u < 0xdc00:
			if j+12 > len(src) || src[j+6] != '\\' || src[j+7] != 'u' {
				return j, false, errAt(j, fmt.Sprintf("lone surrogate \\u%04x", u))
			}
			if lo, ok := refHex4(src, j+8); !ok || lo < 0xdc00 || lo >= 0xe000 {
				return j, false, errAt(j, fmt.Sprintf("lone surrogate \\u%04x", u))
			}
			return j + 12, false, nil
		case u >= 0xdc00 && u < 0xe000:
			return j, false, errAt(j, fmt.Sprintf("lone surrogate \\u%04x", u))
		case u < 0x20 && refShortEscape(rune(u)) == 0:
			const hexdig = "0123456789abcdef"
			canonical := src[j+2] == '0' && src[j+3] == '0' && src[j+4] == hexdig[u>>4] && src[j+5] == hexdig[u&0xf]
			return j + 6, canonical, nil
		default:
			return j + 6, false, nil
		}
	default:
		return j, false, errAt(j, "invalid escape sequence")
	}
}

// refHex4 decodes the four hex digits at src[i:i+4].
func refHex4(src []byte, i int) (uint16, bool) {
	if i+4 > len(src) {
		return 0, false
	}
	a, b, c, d := refHexVal[src[i]], refHexVal[src[i+1]], refHexVal[src[i+2]], refHexVal[src[i+3]]
	if (a|b|c|d)&0x10 != 0 {
		return 0, false
	}
	return uint16(a)<<12 | uint16(b)<<8 | uint16(c)<<4 | uint16(d), true
}

// refHexVal maps hex digits to their value and every other byte to 0x10.
var refHexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0x10
	}
	for i := byte(0); i < 10; i++ {
		t['0'+i] = i
	}
	for i := byte(0); i < 6; i++ {
		t['a'+i], t['A'+i] = 10+i, 10+i
	}
	return t
}()

// refShortEscape returns the letter of the two-character escape canonical JSON
// uses for r, or 0.
func refShortEscape(r rune) byte {
	switch r {
	case '\b':
		return 'b'
	case '\t':
		return 't'
	case '\n':
		return 'n'
	case '\f':
		return 'f'
	case '\r':
		return 'r'
	}
	return 0
}

func refIsDigit(b byte) bool { return '0' <= b && b <= '9' }

// number validates the number at start and checks it is an integer in range.
func (c *refCanonicalizer) number(start int) (int, error) {
	src := c.src
	n := len(src)
	i := start
	if src[i] == '-' {
		i++
	}
	if i >= n || !refIsDigit(src[i]) {
		return i, errAt(start, "invalid number")
	}
	intStart := i
	if src[i] == '0' {
		i++
	} else {
		for i < n && refIsDigit(src[i]) {
			i++
		}
	}
	intEnd := i
	plain := true
	if i < n && src[i] == '.' {
		plain = false
		i++
		d := i
		for i < n && refIsDigit(src[i]) {
			i++
		}
		if i == d {
			return i, errAt(start, "invalid number: no digits after '.'")
		}
	}
	if i < n && (src[i] == 'e' || src[i] == 'E') {
		plain = false
		i++
		if i < n && (src[i] == '+' || src[i] == '-') {
			i++
		}
		d := i
		for i < n && refIsDigit(src[i]) {
			i++
		}
		if i == d {
			return i, errAt(start, "invalid number: no digits in the exponent")
		}
	}
	if plain {
		digits := src[intStart:intEnd]
		if len(digits) == 1 && digits[0] == '0' {
			if intStart != start {
				c.edits++ // -0
			}
			return i, nil
		}
		if !c.Lenient && !refSafeDigits(digits) {
			return i, errAt(start, "integer out of range [-(2^53)+1, 2^53-1]")
		}
		return i, nil
	}
	c.edits++
	if _, _, reason := refIntegralValue(src[start:i]); reason != "" {
		return i, errAt(start, reason)
	}
	return i, nil
}

// refSafeDigits reports whether the decimal digits (no leading zeros) are at
// most 2^53-1.
func refSafeDigits(d []byte) bool {
	const limit = "9007199254740991"
	if len(d) != len(limit) {
		return len(d) < len(limit)
	}
	return string(d) <= limit
}

// refIntegralValue evaluates a valid JSON number token that has a fraction or
// an exponent. It returns the magnitude when the value is an integer within
// the safe range, or a reason why it is not.
func refIntegralValue(tok []byte) (neg bool, v uint64, reason string) {
	i := 0
	if tok[0] == '-' {
		neg = true
		i = 1
	}
	mEnd := i
	for mEnd < len(tok) && tok[mEnd] != 'e' && tok[mEnd] != 'E' {
		mEnd++
	}
	var exp int64
	if mEnd < len(tok) {
		k := mEnd + 1
		expNeg := false
		if tok[k] == '+' || tok[k] == '-' {
			expNeg = tok[k] == '-'
			k++
		}
		for ; k < len(tok); k++ {
			if exp < 1<<40 { // saturate: beyond this the answer no longer changes
				exp = exp*10 + int64(tok[k]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	// Mantissa digits, ignoring the '.': find the significant ones.
	first, last, fracDigits, afterDot := -1, -1, int64(0), false
	for k := i; k < mEnd; k++ {
		b := tok[k]
		if b == '.' {
			afterDot = true
			continue
		}
		if afterDot {
			fracDigits++
		}
		if b != '0' {
			if first < 0 {
				first = k
			}
			last = k
		}
	}
	if first < 0 {
		return neg, 0, "" // zero, whatever the exponent
	}
	sig := int64(0)      // significant digits from first to last
	trailing := int64(0) // digits after last
	for k := first; k < mEnd; k++ {
		if tok[k] == '.' {
			continue
		}
		if k <= last {
			sig++
		} else {
			trailing++
		}
	}
	e10 := exp - fracDigits + trailing
	if e10 < 0 {
		return neg, 0, "number is not an integer (canonical JSON has no floats)"
	}
	if sig+e10 > 16 {
		return neg, 0, "integer out of range [-(2^53)+1, 2^53-1]"
	}
	for k := first; k <= last; k++ {
		if tok[k] != '.' {
			v = v*10 + uint64(tok[k]-'0')
		}
	}
	for ; e10 > 0; e10-- {
		v *= 10
	}
	if v > refMaxSafeInteger {
		return neg, 0, "integer out of range [-(2^53)+1, 2^53-1]"
	}
	return neg, v, ""
}

// refKeyPrefix returns the first eight bytes of a validated key's decoded
// value as a big-endian number, zero-padded. body runs from after the
// opening quote to after the closing one. Comparing prefixes orders keys
// correctly whenever the prefixes differ: a zero pad only ever compares
// against a real byte when one key is a proper prefix of the other, and a
// key containing U+0000 only makes two prefixes equal, never wrongly
// ordered.
func refKeyPrefix(body []byte, esc bool) uint64 {
	if !esc {
		n := len(body) - 1 // without the closing quote
		if len(body) >= 8 {
			// Load eight bytes and keep the key's: no loop for short keys.
			return binary.BigEndian.Uint64(body) & (^uint64(0) << (64 - 8*min(n, 8)))
		}
		var p uint64
		for i, b := range body[:n] {
			p |= uint64(b) << (56 - 8*i)
		}
		return p
	}
	r := refKeyReader{s: body}
	var p uint64
	for i := 0; i < 8; i++ {
		b, ok := r.next()
		if !ok {
			break
		}
		p |= uint64(b) << (56 - 8*i)
	}
	return p
}

// sortMembers sorts an object's keys and returns k > 0 if ms[k-1] and
// ms[k] are equal (a duplicate key), else 0. Insertion sort handles the
// usual handful of keys (shifting, prefix comparison inlined, and the
// comparison that stops each insertion doubles as the duplicate check:
// every pair adjacent in the result was compared when the later of the two
// was inserted); pdqsort and a pass over neighbours handle larger objects.
func (c *refCanonicalizer) sortMembers(ms []refMember) int {
	if len(ms) > 16 {
		slices.SortFunc(ms, c.cmpMembers)
		for k := 1; k < len(ms); k++ {
			if c.cmpMembers(ms[k-1], ms[k]) == 0 {
				return k
			}
		}
		return 0
	}
	dup := -1
	for i := 1; i < len(ms); i++ {
		m := ms[i]
		j := i
		for ; j > 0; j-- {
			p := ms[j-1].prefix
			if m.prefix > p {
				break
			}
			if m.prefix == p {
				cmp := c.cmpMembers(m, ms[j-1])
				if cmp == 0 && dup < 0 {
					dup = 0 // found; position settled below
				}
				if cmp >= 0 {
					break
				}
			}
			ms[j] = ms[j-1]
		}
		ms[j] = m
	}
	if dup < 0 {
		return 0
	}
	for k := 1; k < len(ms); k++ { // rare: locate the pair for the message
		if c.cmpMembers(ms[k-1], ms[k]) == 0 {
			return k
		}
	}
	return 0
}

// cmpMembers orders two keys by the code points of their decoded values.
func (c *refCanonicalizer) cmpMembers(a, b refMember) int {
	if a.prefix != b.prefix {
		if a.prefix < b.prefix {
			return -1
		}
		return 1
	}
	if !a.esc && !b.esc {
		return bytes.Compare(c.src[a.key+1:a.end-1], c.src[b.key+1:b.end-1])
	}
	return refCompareDecoded(c.src[a.key+1:a.end], c.src[b.key+1:b.end])
}

// refCompareDecoded compares two validated JSON string bodies (after the
// opening quote, up to and including the closing quote) by their decoded
// UTF-8 bytes, which is code point order.
func refCompareDecoded(a, b []byte) int {
	ra, rb := refKeyReader{s: a}, refKeyReader{s: b}
	for {
		x, okx := ra.next()
		y, oky := rb.next()
		switch {
		case !okx && !oky:
			return 0
		case !okx:
			return -1
		case !oky:
			return 1
		case x != y:
			if x < y {
				return -1
			}
			return 1
		}
	}
}

// refKeyReader yields the decoded UTF-8 bytes of a validated JSON string.
type refKeyReader struct {
	s      []byte
	buf    [utf8.UTFMax]byte
	bi, bn int
}

func (r *refKeyReader) next() (byte, bool) {
	if r.bi < r.bn {
		b := r.buf[r.bi]
		r.bi++
		return b, true
	}
	b := r.s[0]
	switch b {
	case '"':
		return 0, false
	case '\\':
		rn, size := refDecodeEscape(r.s)
		r.s = r.s[size:]
		r.bn = utf8.EncodeRune(r.buf[:], rn)
		r.bi = 1
		return r.buf[0], true
	}
	r.s = r.s[1:]
	return b, true
}

// refDecodeEscape decodes the validated escape sequence at the start of s.
func refDecodeEscape(s []byte) (rune, int) {
	switch s[1] {
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		u, _ := refHex4(s, 2)
		if u >= 0xd800 && u < 0xdc00 {
			lo, _ := refHex4(s, 8)
			return 0x10000 + (rune(u)-0xd800)<<10 + (rune(lo) - 0xdc00), 12
		}
		return rune(u), 6
	}
	return rune(s[1]), 2 // '"', '\\', '/'
}

// ---- pass 2: write the canonical form of validated input ----

func refSkipWS(src []byte, i int) int {
	for i < len(src) && (src[i] == ' ' || src[i] == '\n' || src[i] == '\r' || src[i] == '\t') {
		i++
	}
	return i
}

func (c *refCanonicalizer) emit(dst []byte, i int) ([]byte, int) {
	src := c.src
	i = refSkipWS(src, i)
	switch src[i] {
	case '"':
		return c.emitString(dst, i)
	case '{':
		return c.emitObject(dst, i)
	case '[':
		dst = append(dst, '[')
		i = refSkipWS(src, i+1)
		if src[i] == ']' {
			return append(dst, ']'), i + 1
		}
		for {
			dst, i = c.emit(dst, i)
			i = refSkipWS(src, i)
			if src[i] == ']' {
				return append(dst, ']'), i + 1
			}
			dst = append(dst, ',')
			i++
		}
	case 't':
		return append(dst, "true"...), i + 4
	case 'f':
		return append(dst, "false"...), i + 5
	case 'n':
		return append(dst, "null"...), i + 4
	default:
		return c.emitNumber(dst, i)
	}
}

func (c *refCanonicalizer) emitObject(dst []byte, i int) ([]byte, int) {
	src := c.src
	if r, found := c.reorderedAt(int32(i)); found {
		return c.emitReordered(dst, r)
	}
	dst = append(dst, '{')
	i = refSkipWS(src, i+1)
	if src[i] == '}' {
		return append(dst, '}'), i + 1
	}
	for {
		dst, i = c.emitString(dst, i)
		dst = append(dst, ':')
		dst, i = c.emit(dst, refSkipWS(src, i)+1)
		i = refSkipWS(src, i)
		if src[i] == '}' {
			return append(dst, '}'), i + 1
		}
		dst = append(dst, ',')
		i = refSkipWS(src, i+1)
	}
}

// emitReordered writes an object whose members are out of order.
func (c *refCanonicalizer) emitReordered(dst []byte, r refReordered) ([]byte, int) {
	src := c.src
	dst = append(dst, '{')
	for n, m := range c.perm[r.first : r.first+r.n] {
		if n > 0 {
			dst = append(dst, ',')
		}
		if m.esc {
			dst, _ = c.emitString(dst, int(m.key))
		} else {
			dst = append(dst, src[m.key:m.end]...)
		}
		dst = append(dst, ':')
		vs := refSkipWS(src, refSkipWS(src, int(m.end))+1)
		switch {
		case m.vend != 0:
			dst = append(dst, src[vs:m.vend]...)
		case m.child != 0:
			dst, _ = c.emitReordered(dst, c.objects[m.child-1])
		default:
			dst, _ = c.emit(dst, vs)
		}
	}
	return append(dst, '}'), int(r.end)
}

// reorderedAt finds the refReordered object starting at offset start.
func (c *refCanonicalizer) reorderedAt(start int32) (refReordered, bool) {
	lo, hi := 0, len(c.byStart)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		switch s := c.objects[c.byStart[mid]].start; {
		case s == start:
			return c.objects[c.byStart[mid]], true
		case s < start:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return refReordered{}, false
}

// refQuoteOrBackslash returns the offset of the first '"' or '\' at or after
// j; validated input always has one.
func refQuoteOrBackslash(src []byte, j int) int {
	for ; j+8 <= len(src); j += 8 {
		v := binary.LittleEndian.Uint64(src[j:])
		q := v ^ (refLsb * '"')
		q = (q - refLsb) &^ q
		bs := v ^ (refLsb * '\\')
		bs = (bs - refLsb) &^ bs
		if m := (q | bs) & refMsb; m != 0 {
			return j + bits.TrailingZeros64(m)>>3 // the lowest mark is exact
		}
	}
	for src[j] != '"' && src[j] != '\\' {
		j++
	}
	return j
}

// emitString writes the validated string at i in canonical form.
func (c *refCanonicalizer) emitString(dst []byte, i int) ([]byte, int) {
	src := c.src
	seg := i // src[seg:j] is validated and still to be copied
	for j := i + 1; ; {
		j = refQuoteOrBackslash(src, j)
		if src[j] == '"' {
			return append(dst, src[seg:j+1]...), j + 1
		}
		dst = append(dst, src[seg:j]...)
		r, size := refDecodeEscape(src[j:])
		dst = refAppendEscapedRune(dst, r)
		j += size
		seg = j
	}
}

// refAppendEscapedRune appends r as it appears inside a canonical JSON string.
func refAppendEscapedRune(dst []byte, r rune) []byte {
	switch {
	case r == '"' || r == '\\':
		return append(dst, '\\', byte(r))
	case r < 0x20:
		if e := refShortEscape(r); e != 0 {
			return append(dst, '\\', e)
		}
		const hexdig = "0123456789abcdef"
		return append(dst, '\\', 'u', '0', '0', hexdig[r>>4], hexdig[r&0xf])
	case r < utf8.RuneSelf:
		return append(dst, byte(r))
	}
	return utf8.AppendRune(dst, r)
}

func (c *refCanonicalizer) emitNumber(dst []byte, i int) ([]byte, int) {
	src := c.src
	j, plain := i, true
	for ; j < len(src); j++ {
		b := src[j]
		if refIsDigit(b) || b == '-' {
			continue
		}
		if b == '.' || b == 'e' || b == 'E' || b == '+' {
			plain = false
			continue
		}
		break
	}
	tok := src[i:j]
	if plain {
		if len(tok) == 2 && tok[0] == '-' && tok[1] == '0' {
			return append(dst, '0'), j
		}
		return append(dst, tok...), j
	}
	neg, v, _ := refIntegralValue(tok)
	if neg && v != 0 {
		dst = append(dst, '-')
	}
	return strconv.AppendUint(dst, v, 10), j
}

// refContentOfInto is ContentOfInto as it was.
func refContentOfInto(dst, body []byte) ([]byte, error) {
	c := refGetCanonicalizer(true)
	defer refPutCanonicalizer(c)
	err := c.scan(body)
	defer c.release()
	if err != nil {
		return nil, err
	}
	if c.edits == 0 {
		return body, nil
	}
	dst, _ = c.emit(slices.Grow(dst[:0], len(body)), 0)
	return dst, nil
}
