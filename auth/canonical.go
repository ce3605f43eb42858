package auth

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

// MaxJSONDepth is the deepest nesting of objects and arrays accepted in JSON
// input. Deeper input is refused rather than recursed into.
const MaxJSONDepth = 256

// maxSafeInteger is 2^53-1, the largest integer canonical JSON allows (and
// the smallest is its negation).
const maxSafeInteger = 1<<53 - 1

// JSONError reports input that is not acceptable JSON: what is wrong and
// the byte offset in the input where it was found.
type JSONError struct {
	// Offset is the zero-based byte offset of the problem in the input.
	Offset int
	// Reason says what is wrong, e.g. "duplicate key \"a\"".
	Reason string
}

func (e *JSONError) Error() string {
	return "json: " + e.Reason + " at byte offset " + strconv.Itoa(e.Offset)
}

func errAt(off int, reason string) *JSONError { return &JSONError{Offset: off, Reason: reason} }

// Canonicalizer turns JSON text into the Matrix spec's canonical JSON
// (appendix "Canonical JSON"): object keys sorted by code point, no
// insignificant whitespace, integers only, the spec's minimal string
// escapes and raw UTF-8 for everything else.
//
// It reads the input once, never building a tree of Go values: while it
// validates, it notes where the input differs from its canonical form
// and, when asked for output, writes the canonical form as it goes
// (copying the canonical stretches between differences in one piece, and
// putting an object's members in order when it closes). It keeps its
// scratch space between calls, so a long-lived Canonicalizer costs no
// allocations per call beyond growing dst. The zero value is ready
// to use (strict). A Canonicalizer is not safe for concurrent use; the
// package-level [Canonicalize] and [IsCanonical] draw one from a pool.
//
// Input is refused with a *[JSONError] for: invalid JSON syntax, invalid
// UTF-8, lone UTF-16 surrogates in \u escapes, duplicate object keys,
// nesting deeper than [MaxJSONDepth], data after the value, numbers that are
// not integral (floats) and integers outside [-(2^53)+1, 2^53-1]. Integral
// numbers written with a fraction or an exponent ("1e10", "1.0E2") become
// plain integers and "-0" becomes "0", as the spec's own example shows.
type Canonicalizer struct {
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
	edits   int      // places seen so far where the output differs from the input
	write   bool     // write the canonical form into out (else only check)
	grown   bool     // out has been grown for the output once
	out     []byte   // dst followed by the canonical form of src[:pend]
	pend    int      // src[pend:i] is canonical as it stands, not yet in out
	members []member // keys of the objects currently open, innermost last
	scratch []byte   // the members of an object being put in order
}

// member is one object member: where its key is in the input, and where
// the member (key, ':' and value) was written in the output.
type member struct {
	prefix    uint64 // first 8 bytes of the decoded key, big-endian, zero-padded
	key       int32  // offset of the key's opening quote
	end       int32  // offset just past its closing quote
	out, oend int    // the member's text is out[out:oend] (when writing)
	esc       bool   // the key contains backslash escapes
}

// Canonicalize appends the canonical form of the JSON text src to dst, in
// one pass over src. On error dst is returned unchanged (its spare
// capacity may have been written) together with a *[JSONError]. Input
// that is already canonical is validated and copied as it is.
func (c *Canonicalizer) Canonicalize(dst, src []byte) ([]byte, error) {
	out, edited, err := c.canonical(dst, src)
	switch {
	case err != nil:
		return dst, err
	case !edited:
		return append(dst, src...), nil
	}
	return out, nil
}

// canonical runs one pass over src writing into dst. edited is false when
// src is canonical as it stands: then nothing was written and out is dst.
func (c *Canonicalizer) canonical(dst, src []byte) (out []byte, edited bool, err error) {
	err = c.scan(src, dst, true)
	out, edited = c.out, c.edits > 0
	c.release()
	return out, edited, err
}

// IsCanonical reports whether src is valid JSON already in canonical form,
// in one pass over it.
func (c *Canonicalizer) IsCanonical(src []byte) bool {
	err := c.scan(src, nil, false)
	c.release()
	return err == nil && c.edits == 0
}

// Validate checks src as Canonicalize would, without producing output.
func (c *Canonicalizer) Validate(src []byte) error {
	err := c.scan(src, nil, false)
	c.release()
	return err
}

// release drops the references to the caller's input and output.
func (c *Canonicalizer) release() { c.src, c.out = nil, nil }

// canonPool holds strict Canonicalizers for the package-level functions.
var canonPool = sync.Pool{New: func() any { return new(Canonicalizer) }}

// maxPooledScratch (keys of the open objects) and maxPooledScratchBytes
// (the members of an object being put in order) bound the scratch a pooled
// Canonicalizer may keep, so one huge input does not pin memory forever.
const (
	maxPooledScratch      = 1 << 14
	maxPooledScratchBytes = 256 << 10
)

func getCanonicalizer(lenient bool) *Canonicalizer {
	c := canonPool.Get().(*Canonicalizer)
	c.Lenient = lenient
	return c
}

func putCanonicalizer(c *Canonicalizer) {
	if cap(c.members) > maxPooledScratch || cap(c.scratch) > maxPooledScratchBytes {
		*c = Canonicalizer{}
	}
	c.release()
	canonPool.Put(c)
}

// Canonicalize appends the canonical JSON form of src to dst (strict mode;
// see [Canonicalizer] for the rules). On error dst is returned unchanged
// with a *[JSONError]. It is safe for concurrent use.
func Canonicalize(dst, src []byte) ([]byte, error) {
	c := getCanonicalizer(false)
	dst, err := c.Canonicalize(dst, src)
	putCanonicalizer(c)
	return dst, err
}

// canonicalizeLenient is Canonicalize with [Canonicalizer.Lenient] set, for
// X-Matrix request content only.
func canonicalizeLenient(dst, src []byte) ([]byte, error) {
	c := getCanonicalizer(true)
	dst, err := c.Canonicalize(dst, src)
	putCanonicalizer(c)
	return dst, err
}

// IsCanonical reports whether src is valid JSON in canonical form (strict
// mode). It is safe for concurrent use.
func IsCanonical(src []byte) bool {
	c := getCanonicalizer(false)
	ok := c.IsCanonical(src)
	putCanonicalizer(c)
	return ok
}

// ---- one pass: validate, note differences, write the canonical form ----

func (c *Canonicalizer) scan(src, dst []byte, write bool) error {
	c.src, c.edits, c.write, c.grown, c.out, c.pend = src, 0, write, false, dst, 0
	c.members = c.members[:0]
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
	if c.edits > 0 && write {
		c.flush(len(src))
	}
	return nil
}

// flush copies the canonical stretch src[pend:i] to the output. Every
// place where the output differs from the input flushes up to it, writes
// its canonical form and moves pend past it.
func (c *Canonicalizer) flush(i int) {
	if !c.grown {
		c.out = slices.Grow(c.out, len(c.src))
		c.grown = true
	}
	c.out = append(c.out, c.src[c.pend:i]...)
	c.pend = i
}

// outAt is the offset in the output at which the input at i (not yet
// flushed) is written.
func (c *Canonicalizer) outAt(i int) int { return len(c.out) + i - c.pend }

// ws skips JSON whitespace; any whitespace makes the input non-canonical.
// Canonical input has none, so the check for it is small enough to inline.
func (c *Canonicalizer) ws(i int) int {
	if i < len(c.src) && c.src[i] > ' ' {
		return i
	}
	return c.skipBlanks(i)
}

func (c *Canonicalizer) skipBlanks(i int) int {
	src := c.src
	j := i
	for j < len(src) {
		if b := src[j]; b > ' ' || (b != ' ' && b != '\n' && b != '\r' && b != '\t') {
			break
		}
		j++
	}
	if j != i {
		c.edits++
		if c.write {
			c.flush(i)
			c.pend = j
		}
	}
	return j
}

// unexpected describes the byte at i (or the end of input) and what was
// wanted instead.
func (c *Canonicalizer) unexpected(i int, want string) *JSONError {
	if i >= len(c.src) {
		return errAt(i, "unexpected end of input, expected "+want)
	}
	b := c.src[i]
	if b >= 0x20 && b < 0x7f {
		return errAt(i, fmt.Sprintf("unexpected %q, expected %s", b, want))
	}
	return errAt(i, fmt.Sprintf("unexpected byte 0x%02x, expected %s", b, want))
}

func (c *Canonicalizer) value(i, depth int) (int, error) {
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
		if b == '-' || isDigit(b) {
			return c.number(i)
		}
		return i, c.unexpected(i, "a value")
	}
}

func (c *Canonicalizer) literal(i int, lit string) (int, error) {
	if !bytes.HasPrefix(c.src[i:], []byte(lit)) {
		return i, errAt(i, "invalid literal, expected "+lit)
	}
	return i + len(lit), nil
}

func (c *Canonicalizer) object(start, depth int) (int, error) {
	if depth > MaxJSONDepth {
		return start, errAt(start, "nesting deeper than "+strconv.Itoa(MaxJSONDepth)+" levels")
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
		m := member{key: int32(i), out: c.outAt(i)}
		var j int
		if i+17 <= len(src) {
			// Most keys are short and plain ("body", "type"): when the
			// closing quote is among the next sixteen bytes with nothing
			// before it to look at, those bytes are the key and the
			// first eight, masked, its sort prefix; str is not needed.
			v := binary.LittleEndian.Uint64(src[i+1 : i+9])
			if stop := swarStop(v); stop != 0 {
				if k := bits.TrailingZeros64(stop) >> 3; v&((stop&-stop)-1)&msb == 0 && src[i+1+k] == '"' {
					j = i + 2 + k
					m.prefix = bits.ReverseBytes64(v) & (^uint64(0) << (64 - 8*k))
				}
			} else if v&msb == 0 {
				w := binary.LittleEndian.Uint64(src[i+9 : i+17])
				if stop := swarStop(w); stop != 0 && w&((stop&-stop)-1)&msb == 0 {
					if k := bits.TrailingZeros64(stop) >> 3; src[i+9+k] == '"' {
						j = i + 10 + k
						m.prefix = bits.ReverseBytes64(v)
					}
				}
			}
		}
		if j == 0 {
			var err error
			if j, m.esc, err = c.str(i); err != nil {
				return j, err
			}
			if n := j - i - 2; !m.esc && i+9 <= len(src) {
				m.prefix = binary.BigEndian.Uint64(src[i+1:i+9]) & (^uint64(0) << (64 - 8*min(n, 8)))
			} else {
				m.prefix = keyPrefix(src, i, j, m.esc)
			}
		}
		m.end = int32(j)
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
		var err error
		if i = c.ws(i + 1); i < len(src) && src[i] == '"' {
			i, _, err = c.str(i) // most values are strings: no dispatch
		} else {
			i, err = c.value(i, depth)
		}
		if err != nil {
			return i, err
		}
		m.oend = c.outAt(i)
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
		lo, hi := ms[0].out, ms[len(ms)-1].oend // in input order
		if k := c.sortMembers(ms); k > 0 {
			later := ms[k]
			if ms[k-1].key > later.key {
				later = ms[k-1]
			}
			return int(later.key), c.duplicate(later)
		}
		if c.write {
			c.flush(i)
			c.putInOrder(ms, lo, hi)
		}
	}
	c.members = c.members[:base]
	return i, nil
}

func (c *Canonicalizer) duplicate(m member) *JSONError {
	key := c.src[m.key+1 : m.end-1]
	if len(key) > 64 {
		return errAt(int(m.key), fmt.Sprintf("duplicate key %q...", key[:64]))
	}
	return errAt(int(m.key), fmt.Sprintf("duplicate key %q", key))
}

// putInOrder rewrites the members of an object just written out to
// out[lo:hi] (in input order, without blanks: member, ',', member, ...)
// in the order of ms, which holds them sorted. The object keeps its size,
// so the offsets its enclosing objects noted stay true.
func (c *Canonicalizer) putInOrder(ms []member, lo, hi int) {
	c.scratch = append(c.scratch[:0], c.out[lo:hi]...)
	w := lo
	for k, m := range ms {
		if k > 0 {
			c.out[w] = ','
			w++
		}
		w += copy(c.out[w:], c.scratch[m.out-lo:m.oend-lo])
	}
}

func (c *Canonicalizer) array(start, depth int) (int, error) {
	if depth > MaxJSONDepth {
		return start, errAt(start, "nesting deeper than "+strconv.Itoa(MaxJSONDepth)+" levels")
	}
	src := c.src
	i := c.ws(start + 1)
	if i < len(src) && src[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i < len(src) && src[i] == '"' {
			i, _, err = c.str(i)
		} else {
			i, err = c.value(i, depth)
		}
		if err != nil {
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

// strPlain[b] reports whether byte b stands for itself inside a JSON string
// and may appear raw in canonical JSON: printable ASCII and DEL, other than
// '"' and '\'.
var strPlain = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// swarStop marks the bytes of v (eight input bytes, little-endian) that
// end a run of string text: '"', '\' and bytes below 0x20. The result has
// the top bit of such bytes set; borrows may also mark bytes after the
// first marked one, never before it, so the lowest mark is exact. Bytes
// of 0x80 and above are never marked: runs are checked for UTF-8 whole.
//
// Flipping bit 1 of every byte turns '"' (0x22) into 0x20 and leaves the
// bytes below 0x20 below it while moving ' ' and '!' up, so one
// less-than test finds both.
func swarStop(v uint64) uint64 {
	x := v ^ (lsb * 0x02)
	quoteOrCtl := (x - lsb*0x21) &^ x
	bs := v ^ (lsb * '\\')
	bs = (bs - lsb) &^ bs
	return (quoteOrCtl | bs) & msb
}

// str validates the string starting at the quote at start and returns the
// offset just past its closing quote and whether it contains escapes.
// Text between escapes is found eight bytes at a time and checked for
// UTF-8 in one call when it has a byte of 0x80 or above.
func (c *Canonicalizer) str(start int) (int, bool, error) {
	src := c.src
	n := len(src)
	j := start + 1
	esc := false
	for {
		run := j
		var hi uint64   // bytes of the run ORed together, for their top bits
		for j+16 <= n { // sixteen bytes a round, one bounds check
			w := src[j : j+16 : j+16]
			v, u := binary.LittleEndian.Uint64(w), binary.LittleEndian.Uint64(w[8:])
			m, l := swarStop(v), swarStop(u)
			if m|l != 0 {
				if m == 0 {
					hi |= v
					j += 8
					v, m = u, l
				}
				hi |= v & ((m & -m) - 1) // the bytes before the first stop
				j += bits.TrailingZeros64(m) >> 3
				goto stop
			}
			hi |= v | u
			j += 16
		}
		if j+8 <= n {
			v := binary.LittleEndian.Uint64(src[j : j+8])
			if m := swarStop(v); m != 0 {
				hi |= v & ((m & -m) - 1)
				j += bits.TrailingZeros64(m) >> 3
				goto stop
			}
			hi |= v
			j += 8
		}
		for j < n {
			b := src[j]
			if b == '"' || b == '\\' || b < 0x20 {
				break
			}
			hi |= uint64(b)
			j++
		}
	stop:
		if hi&msb != 0 && !utf8.Valid(src[run:j]) {
			return j, esc, c.invalidUTF8(run)
		}
		if j >= n {
			return j, esc, errAt(start, "unterminated string")
		}
		switch b := src[j]; {
		case b == '"':
			return j + 1, esc, nil
		case b == '\\':
			esc = true
			var err error
			if j, err = c.escapes(j); err != nil {
				return j, esc, err
			}
		default:
			return j, esc, errAt(j, fmt.Sprintf("unescaped control character U+%04X in a string", b))
		}
	}
}

// escapes validates the escape sequences in a row at j (\uXXXX\uXXXX...
// needs no text run between them), writes the canonical form of those
// that are not canonical, and returns the offset after them.
func (c *Canonicalizer) escapes(j int) (int, error) {
	src := c.src
	for {
		// Most escapes outside canonical JSON are \uXXXX of a character
		// outside the surrogates (Python's ensure_ascii for everything
		// from U+0080, Go's for <, > and &): decoded and written here,
		// the rest by escape.
		if j+6 <= len(src) && src[j+1] == 'u' {
			h := src[j+2 : j+6 : j+6] // hex4, inlined
			a, b, x, y := hexVal[h[0]], hexVal[h[1]], hexVal[h[2]], hexVal[h[3]]
			u := uint16(a)<<12 | uint16(b)<<8 | uint16(x)<<4 | uint16(y)
			if (a|b|x|y)&0x10 == 0 && (u < 0xd800 || u >= 0xe000) {
				if u >= 0x20 || shortEscape(rune(u)) != 0 || !lowerHex00(src[j+2:j+6], u) {
					c.edits++
					if c.write {
						c.flush(j)
						switch {
						case u >= 0x800:
							c.out = append(c.out, 0xe0|byte(u>>12), 0x80|byte(u>>6)&0x3f, 0x80|byte(u)&0x3f)
						case u >= 0x80:
							c.out = append(c.out, 0xc0|byte(u>>6), 0x80|byte(u)&0x3f)
						default:
							c.out = appendEscapedRune(c.out, rune(u))
						}
						c.pend = j + 6
					}
				}
				if j += 6; j >= len(src) || src[j] != '\\' {
					return j, nil
				}
				continue
			}
		}
		k, r, err := c.escape(j)
		if err != nil {
			return k, err
		}
		if r >= 0 {
			c.edits++
			if c.write {
				c.flush(j)
				c.out = appendEscapedRune(c.out, r)
				c.pend = k
			}
		}
		if k >= len(src) || src[k] != '\\' {
			return k, nil
		}
		j = k
	}
}

// invalidUTF8 reports the first invalid UTF-8 sequence at or after i.
func (c *Canonicalizer) invalidUTF8(i int) *JSONError {
	src := c.src
	for i < len(src) && src[i] < utf8.RuneSelf {
		i++
	}
	for i < len(src) {
		if src[i] < utf8.RuneSelf {
			i++
			continue
		}
		size := utf8Seq(src[i:])
		if size == 0 {
			break
		}
		i += size
	}
	return errAt(i, "invalid UTF-8 in a string")
}

// utf8Seq returns the length of the valid multi-byte UTF-8 sequence at the
// start of s (whose first byte is >= 0x80), or 0 if it is invalid: a stray
// continuation byte, an overlong form, a surrogate or a value above U+10FFFF.
func utf8Seq(s []byte) int {
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

// escape validates the escape sequence at the backslash at j, decoding it
// once: it returns the offset after it and, when the sequence is not how
// canonical JSON writes that character, the character (else -1).
func (c *Canonicalizer) escape(j int) (int, rune, error) {
	src := c.src
	if j+1 >= len(src) {
		return j, -1, errAt(j, "unterminated escape sequence")
	}
	switch src[j+1] {
	case '"', '\\', 'b', 'f', 'n', 'r', 't':
		return j + 2, -1, nil
	case '/':
		return j + 2, '/', nil
	case 'u':
		u, ok := hex4(src, j+2)
		if !ok {
			return j, -1, errAt(j, "invalid \\u escape")
		}
		switch {
		case u >= 0xd800 && u < 0xdc00:
			if j+12 > len(src) || src[j+6] != '\\' || src[j+7] != 'u' {
				return j, -1, errAt(j, fmt.Sprintf("lone surrogate \\u%04x", u))
			}
			lo, ok := hex4(src, j+8)
			if !ok || lo < 0xdc00 || lo >= 0xe000 {
				return j, -1, errAt(j, fmt.Sprintf("lone surrogate \\u%04x", u))
			}
			return j + 12, 0x10000 + (rune(u)-0xd800)<<10 + (rune(lo) - 0xdc00), nil
		case u >= 0xdc00 && u < 0xe000:
			return j, -1, errAt(j, fmt.Sprintf("lone surrogate \\u%04x", u))
		case u < 0x20 && shortEscape(rune(u)) == 0 && lowerHex00(src[j+2:j+6], u):
			return j + 6, -1, nil
		}
		return j + 6, rune(u), nil
	default:
		return j, -1, errAt(j, "invalid escape sequence")
	}
}

// lowerHex00 reports whether the four hex digits h of u (< 0x20) are
// written as canonical JSON writes them: "00" and lower case.
func lowerHex00(h []byte, u uint16) bool {
	const hexdig = "0123456789abcdef"
	return h[0] == '0' && h[1] == '0' && h[2] == hexdig[u>>4] && h[3] == hexdig[u&0xf]
}

// hex4 decodes the four hex digits at src[i:i+4].
func hex4(src []byte, i int) (uint16, bool) {
	if i+4 > len(src) {
		return 0, false
	}
	h := src[i : i+4 : i+4]
	a, b, c, d := hexVal[h[0]], hexVal[h[1]], hexVal[h[2]], hexVal[h[3]]
	if (a|b|c|d)&0x10 != 0 {
		return 0, false
	}
	return uint16(a)<<12 | uint16(b)<<8 | uint16(c)<<4 | uint16(d), true
}

// hexVal maps hex digits to their value and every other byte to 0x10.
var hexVal = func() (t [256]byte) {
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

// shortEscape returns the letter of the two-character escape canonical JSON
// uses for r, or 0.
func shortEscape(r rune) byte {
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

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// number validates the number at start and checks it is an integer in range.
func (c *Canonicalizer) number(start int) (int, error) {
	src := c.src
	n := len(src)
	i := start
	if src[i] == '-' {
		i++
	}
	if i >= n || !isDigit(src[i]) {
		return i, errAt(start, "invalid number")
	}
	intStart := i
	if src[i] == '0' {
		i++
	} else {
		for i < n && isDigit(src[i]) {
			i++
		}
	}
	intEnd := i
	plain := true
	if i < n && src[i] == '.' {
		plain = false
		i++
		d := i
		for i < n && isDigit(src[i]) {
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
		for i < n && isDigit(src[i]) {
			i++
		}
		if i == d {
			return i, errAt(start, "invalid number: no digits in the exponent")
		}
	}
	if plain {
		digits := src[intStart:intEnd]
		if len(digits) == 1 && digits[0] == '0' {
			if intStart != start { // -0
				c.edits++
				if c.write {
					c.flush(start)
					c.out = append(c.out, '0')
					c.pend = i
				}
			}
			return i, nil
		}
		if !c.Lenient && !safeDigits(digits) {
			return i, errAt(start, "integer out of range [-(2^53)+1, 2^53-1]")
		}
		return i, nil
	}
	c.edits++
	neg, v, reason := integralValue(src[start:i])
	if reason != "" {
		return i, errAt(start, reason)
	}
	if c.write {
		c.flush(start)
		if neg && v != 0 {
			c.out = append(c.out, '-')
		}
		c.out = strconv.AppendUint(c.out, v, 10)
		c.pend = i
	}
	return i, nil
}

// safeDigits reports whether the decimal digits (no leading zeros) are at
// most 2^53-1.
func safeDigits(d []byte) bool {
	const limit = "9007199254740991"
	if len(d) != len(limit) {
		return len(d) < len(limit)
	}
	return string(d) <= limit
}

// integralValue evaluates a valid JSON number token that has a fraction or
// an exponent. It returns the magnitude when the value is an integer within
// the safe range, or a reason why it is not.
func integralValue(tok []byte) (neg bool, v uint64, reason string) {
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
	if v > maxSafeInteger {
		return neg, 0, "integer out of range [-(2^53)+1, 2^53-1]"
	}
	return neg, v, ""
}

// keyPrefix returns the first eight bytes of a validated key's decoded
// value as a big-endian number, zero-padded. The key's quotes are at
// src[i] and src[j-1]. Comparing prefixes orders keys
// correctly whenever the prefixes differ: a zero pad only ever compares
// against a real byte when one key is a proper prefix of the other, and a
// key containing U+0000 only makes two prefixes equal, never wrongly
// ordered.
func keyPrefix(src []byte, i, j int, esc bool) uint64 {
	body := src[i+1 : j]
	if !esc {
		n := len(body) - 1 // without the closing quote
		if i+9 <= len(src) {
			// Load eight bytes (of the key and what follows it, when
			// it is shorter) and keep the key's: no loop.
			return binary.BigEndian.Uint64(src[i+1:]) & (^uint64(0) << (64 - 8*min(n, 8)))
		}
		var p uint64
		for i, b := range body[:n] {
			p |= uint64(b) << (56 - 8*i)
		}
		return p
	}
	r := keyReader{s: body}
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
func (c *Canonicalizer) sortMembers(ms []member) int {
	if len(ms) > 16 {
		slices.SortFunc(ms, c.cmpMembers)
		for k := 1; k < len(ms); k++ {
			if c.cmpMembers(ms[k-1], ms[k]) == 0 {
				return k
			}
		}
		return 0
	}
	// A leading run of strictly falling prefixes (members in reverse
	// order: insertion sort's worst case) is reversed instead: its keys
	// are distinct, so neither order nor duplicates change.
	r := 1
	for r < len(ms) && ms[r].prefix < ms[r-1].prefix {
		r++
	}
	slices.Reverse(ms[:r])
	dup := -1
	for i := r; i < len(ms); i++ {
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
func (c *Canonicalizer) cmpMembers(a, b member) int {
	if a.prefix != b.prefix {
		if a.prefix < b.prefix {
			return -1
		}
		return 1
	}
	if !a.esc && !b.esc {
		return bytes.Compare(c.src[a.key+1:a.end-1], c.src[b.key+1:b.end-1])
	}
	return compareDecoded(c.src[a.key+1:a.end], c.src[b.key+1:b.end])
}

// compareDecoded compares two validated JSON string bodies (after the
// opening quote, up to and including the closing quote) by their decoded
// UTF-8 bytes, which is code point order.
func compareDecoded(a, b []byte) int {
	ra, rb := keyReader{s: a}, keyReader{s: b}
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

// keyReader yields the decoded UTF-8 bytes of a validated JSON string.
type keyReader struct {
	s      []byte
	buf    [utf8.UTFMax]byte
	bi, bn int
}

func (r *keyReader) next() (byte, bool) {
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
		rn, size := decodeEscape(r.s)
		r.s = r.s[size:]
		r.bn = utf8.EncodeRune(r.buf[:], rn)
		r.bi = 1
		return r.buf[0], true
	}
	r.s = r.s[1:]
	return b, true
}

// decodeEscape decodes the validated escape sequence at the start of s.
func decodeEscape(s []byte) (rune, int) {
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
		u, _ := hex4(s, 2)
		if u >= 0xd800 && u < 0xdc00 {
			lo, _ := hex4(s, 8)
			return 0x10000 + (rune(u)-0xd800)<<10 + (rune(lo) - 0xdc00), 12
		}
		return rune(u), 6
	}
	return rune(s[1]), 2 // '"', '\\', '/'
}

// appendEscapedRune appends r as it appears inside a canonical JSON string.
func appendEscapedRune(dst []byte, r rune) []byte {
	switch {
	case r == '"' || r == '\\':
		return append(dst, '\\', byte(r))
	case r < 0x20:
		if e := shortEscape(r); e != 0 {
			return append(dst, '\\', e)
		}
		const hexdig = "0123456789abcdef"
		return append(dst, '\\', 'u', '0', '0', hexdig[r>>4], hexdig[r&0xf])
	case r < utf8.RuneSelf:
		return append(dst, byte(r))
	}
	return utf8.AppendRune(dst, r)
}
