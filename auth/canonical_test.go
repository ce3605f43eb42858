package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{`{}`, `{}`},
		{`[]`, `[]`},
		{` { "b" : [ 1 , 2 ] ,` + "\n\t\r" + ` "a" : null } `, `{"a":null,"b":[1,2]}`},
		{`{"b":{"d":1,"c":2},"a":[{"f":1,"e":2}]}`, `{"a":[{"e":2,"f":1}],"b":{"c":2,"d":1}}`},
		{`{"c":{"z":{"y":1,"x":2},"a":3},"b":4,"a":5}`, `{"a":5,"b":4,"c":{"a":3,"z":{"x":2,"y":1}}}`},
		{`"\u00e9\u65E5"`, `"é日"`},
		{`"\ud83d\ude00"`, `"😀"`},
		{`"\u001F\u0000\u000B"`, `"\u001f\u0000\u000b"`},
		{`"\u0008\u0009\u000A\u000C\u000D"`, `"\b\t\n\f\r"`},
		{`"\/\"\\"`, `"/\"\\"`},
		{`"\u0022\u005c"`, `"\"\\"`},
		{`"<>&` + "\u2028\u2029\u007f" + `"`, `"<>&` + "\u2028\u2029\u007f" + `"`},
		{`"\u003c\u2028\u007f"`, `"<` + "\u2028\u007f" + `"`},
		// Astral characters sort after U+FFFF (UTF-16 order would differ).
		{`{"😀":1,"\uffff":2}`, "{\"\uffff\":2,\"😀\":1}"},
		// Keys compare by decoded value, not by their escaped text.
		{`{"#":2,"\n":1}`, `{"\n":1,"#":2}`},
		{`{"\"":1,"!":2}`, `{"!":2,"\"":1}`},
		{`{"\u0062":1,"a":2}`, `{"a":2,"b":1}`},
		// Numbers.
		{`-0`, `0`},
		{`-0.0`, `0`},
		{`0e5`, `0`},
		{`0.000e-99999999999999999999`, `0`},
		{`1.0`, `1`},
		{`1e10`, `10000000000`},
		{`1E+2`, `100`},
		{`1.5e1`, `15`},
		{`150e-1`, `15`},
		{`-1.50E1`, `-15`},
		{`100000000000000000000e-5`, `1000000000000000`},
		{`9007199254740991`, `9007199254740991`},
		{`-9007199254740991`, `-9007199254740991`},
		{`9007199254740991.000`, `9007199254740991`},
		{`[true,false,null,0,-1]`, `[true,false,null,0,-1]`},
		{`{"a":-0,"b":1e10}`, `{"a":0,"b":10000000000}`},
	}
	for _, tt := range tests {
		got, err := Canonicalize([]byte("prefix:"), []byte(tt.in))
		if err != nil {
			t.Errorf("Canonicalize(%s): %v", tt.in, err)
			continue
		}
		if string(got) != "prefix:"+tt.want {
			t.Errorf("Canonicalize(%s)\n got %s\nwant prefix:%s", tt.in, got, tt.want)
		}
		if !IsCanonical([]byte(tt.want)) {
			t.Errorf("IsCanonical(%s) = false", tt.want)
		}
		if IsCanonical([]byte(tt.in)) != (tt.in == tt.want) {
			t.Errorf("IsCanonical(%s) = %v", tt.in, !(tt.in == tt.want))
		}
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		offset int
		reason string
	}{
		{``, 0, "no JSON value"},
		{`   `, 3, "no JSON value"},
		{`{"a":1,"a":2}`, 7, `duplicate key "a"`},
		{`{"b":1,"a":2,"b":3}`, 13, `duplicate key "b"`},
		{`{"a":1,"\u0061":2}`, 7, `duplicate key`},
		{`{"a":{"x":1,"x":1}}`, 12, `duplicate key "x"`},
		{`"\ud800"`, 1, "lone surrogate"},
		{`"\udc00"`, 1, "lone surrogate"},
		{`"\ud800\u0041"`, 1, "lone surrogate"},
		{`"\ud800x"`, 1, "lone surrogate"},
		{`"\x"`, 1, "invalid escape"},
		{`"\u12"`, 1, `invalid \u escape`},
		{`"\u12g4"`, 1, `invalid \u escape`},
		{"\"a\nb\"", 2, "unescaped control character U+000A"},
		{"\"\x00\"", 1, "unescaped control character U+0000"},
		{"\"ab\xff\"", 3, "invalid UTF-8"},
		{"\"\xc0\xaf\"", 1, "invalid UTF-8"},
		{"\"\xed\xa0\x80\"", 1, "invalid UTF-8"},
		{"\"abc", 0, "unterminated string"},
		{`"\`, 1, "unterminated escape"},
		{`1.5`, 0, "not an integer"},
		{`1e-1`, 0, "not an integer"},
		{`0.1`, 0, "not an integer"},
		{`1e-400`, 0, "not an integer"},
		{`9007199254740992`, 0, "out of range"},
		{`-9007199254740992`, 0, "out of range"},
		{`12345678901234567890`, 0, "out of range"},
		{`1e16`, 0, "out of range"},
		{`9.007199254740992e15`, 0, "out of range"},
		{`1e400`, 0, "out of range"},
		{`1e99999999999999999999999`, 0, "out of range"},
		{`01`, 1, "unexpected data after the JSON value"},
		{`[01]`, 2, `unexpected '1'`},
		{`1.`, 0, "no digits after '.'"},
		{`.1`, 0, "unexpected '.'"},
		{`+1`, 0, "unexpected '+'"},
		{`--1`, 0, "invalid number"},
		{`1e`, 0, "no digits in the exponent"},
		{`1e+`, 0, "no digits in the exponent"},
		{`NaN`, 0, "unexpected 'N'"},
		{`Infinity`, 0, "unexpected 'I'"},
		{`tru`, 0, "expected true"},
		{`nul`, 0, "expected null"},
		{`{"a":1,}`, 7, "expected a string key"},
		{`{,}`, 1, "expected a string key"},
		{`{"a" 1}`, 5, "expected ':'"},
		{`{"a":1 "b":2}`, 7, "expected ',' or '}'"},
		{`{a:1}`, 1, "expected a string key"},
		{`[1,]`, 3, "expected a value"},
		{`[1 2]`, 3, "expected ',' or ']'"},
		{`[`, 1, "unexpected end of input"},
		{`{"a":1} x`, 8, "unexpected data after the JSON value"},
		{`{}{}`, 2, "unexpected data after the JSON value"},
		{"\xef\xbb\xbf{}", 0, "unexpected byte 0xef"},
		{strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1), MaxJSONDepth, "nesting deeper than 256"},
		{strings.Repeat(`{"a":`, MaxJSONDepth+1) + "1" + strings.Repeat("}", MaxJSONDepth+1), 5 * MaxJSONDepth, "nesting deeper than 256"},
	}
	for _, tt := range tests {
		dst := []byte("keep")
		got, err := Canonicalize(dst, []byte(tt.in))
		var je *JSONError
		if !errors.As(err, &je) {
			t.Errorf("Canonicalize(%q) = %s, %v; want a *JSONError", tt.in, got, err)
			continue
		}
		if je.Offset != tt.offset || !strings.Contains(je.Reason, tt.reason) {
			t.Errorf("Canonicalize(%q): %v; want %q at %d", tt.in, err, tt.reason, tt.offset)
		}
		if string(got) != "keep" {
			t.Errorf("Canonicalize(%q) changed dst to %q", tt.in, got)
		}
		if IsCanonical([]byte(tt.in)) {
			t.Errorf("IsCanonical(%q) = true", tt.in)
		}
	}
}

func TestCanonicalizeDuplicatesWhileSorting(t *testing.T) {
	t.Parallel()
	// Duplicates that are not neighbours in the input, in objects sorted
	// by insertion sort (small) and by pdqsort (more than 16 keys).
	for _, n := range []int{3, 5, 16, 17, 40} {
		for _, dupAt := range []int{0, n / 2, n - 1} {
			var b strings.Builder
			b.WriteString("{")
			for i := n - 1; i >= 0; i-- {
				fmt.Fprintf(&b, `"k%02d":%d,`, i, i)
			}
			fmt.Fprintf(&b, `"k%02d":0}`, dupAt)
			_, err := Canonicalize(nil, []byte(b.String()))
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf(`duplicate key "k%02d"`, dupAt)) {
				t.Errorf("%d keys, duplicate k%02d: %v", n, dupAt, err)
			}
		}
	}
}

func TestCanonicalizeDepthLimit(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)
	got, err := Canonicalize(nil, []byte(in))
	if err != nil || string(got) != in {
		t.Fatalf("depth %d: %v", MaxJSONDepth, err)
	}
}

func TestCanonicalizeLenient(t *testing.T) {
	t.Parallel()
	c := &Canonicalizer{Lenient: true}
	tests := []struct{ in, want, err string }{
		{in: `{"n":12345678901234567890}`, want: `{"n":12345678901234567890}`},
		{in: `{"n": -9007199254740992 }`, want: `{"n":-9007199254740992}`},
		{in: `{"b":99999999999999999999999999,"a":-0}`, want: `{"a":0,"b":99999999999999999999999999}`},
		{in: `{"n":1e20}`, err: "out of range"},
		{in: `{"n":1.5}`, err: "not an integer"},
		{in: `{"n":123456789012345678901.0}`, err: "out of range"},
		{in: `{"a":1,"a":1}`, err: "duplicate key"},
	}
	for _, tt := range tests {
		got, err := c.Canonicalize(nil, []byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("lenient %s: %s, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("lenient %s = %s, %v; want %s", tt.in, got, err, tt.want)
		}
		if _, err := Canonicalize(nil, []byte(tt.in)); err == nil {
			t.Errorf("strict mode accepted %s", tt.in)
		}
		if !c.IsCanonical([]byte(tt.want)) || IsCanonical([]byte(tt.want)) {
			t.Errorf("IsCanonical(%s): lenient must accept, strict must refuse", tt.want)
		}
	}
}

func TestCanonicalizerReuse(t *testing.T) {
	t.Parallel()
	var c Canonicalizer
	var buf []byte
	for i := 0; i < 3; i++ {
		var err error
		buf, err = c.Canonicalize(buf[:0], []byte(`{"z":{"b":1,"a":2},"y":[{"d":1,"c":2}]}`))
		if err != nil || string(buf) != `{"y":[{"c":2,"d":1}],"z":{"a":2,"b":1}}` {
			t.Fatalf("round %d: %s, %v", i, buf, err)
		}
		if _, err := c.Canonicalize(nil, []byte(`{"a":1,"a":2}`)); err == nil {
			t.Fatal("duplicate accepted")
		}
	}
	if err := c.Validate([]byte(`{"a":1.5}`)); err == nil {
		t.Fatal("Validate accepted a float")
	}
}

func TestMarshal(t *testing.T) {
	t.Parallel()
	type tagged struct {
		B string `json:"b"`
		A int    `json:"a"`
	}
	tests := []struct {
		in   any
		want string
	}{
		{nil, `null`},
		{map[string]any{"b": "<&>", "a": []any{true, false, nil, 1, int64(-2), uint8(3), 4.0}}, `{"a":[true,false,null,1,-2,3,4],"b":"<&>"}`},
		{map[string]any{"日": 1, "本": 2, "😀": 3, "\uffff": 4}, "{\"日\":1,\"本\":2,\"\uffff\":4,\"😀\":3}"},
		{"\u2028\x01\"\\\n/", "\"\u2028\\u0001\\\"\\\\\\n/\""},
		{json.Number("1e2"), `100`},
		{json.RawMessage(`{"b": 1, "a": "\u00e9"}`), `{"a":"é","b":1}`},
		{map[string]string{"x": "y"}, `{"x":"y"}`},
		{map[string]map[string]string{"s": {"k": "v"}}, `{"s":{"k":"v"}}`},
		{[]string{"a", "b"}, `["a","b"]`},
		{tagged{B: "<", A: 1}, `{"a":1,"b":"<"}`},
		{math.Copysign(0, -1), `0`},
		{int64(maxSafeInteger), `9007199254740991`},
	}
	for _, tt := range tests {
		got, err := Marshal(tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("Marshal(%#v) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	for _, bad := range []any{1.5, math.NaN(), math.Inf(1), int64(maxSafeInteger + 1), uint64(1 << 60),
		"\xff", map[string]any{"\xff": 1}, json.Number("1.5"), json.RawMessage(`{"a":1,"a":2}`), cyclic, float64(1 << 60)} {
		if got, err := Marshal(bad); err == nil {
			t.Errorf("Marshal(%#v) = %s, want an error", bad, got)
		}
	}
}

// TestSwarStop: the lowest byte swarStop marks is the first '"', '\' or
// control byte, for every byte value at every position (behind plain
// text and with anything after it) and for random words.
func TestSwarStop(t *testing.T) {
	t.Parallel()
	first := func(v uint64) int {
		for k := range 8 {
			if b := byte(v >> (8 * k)); b == '"' || b == '\\' || b < 0x20 {
				return k
			}
		}
		return 8
	}
	lowest := func(m uint64) int {
		if m == 0 {
			return 8
		}
		return bits.TrailingZeros64(m) >> 3
	}
	check := func(v uint64) {
		if got, want := lowest(swarStop(v)), first(v); got != want {
			t.Fatalf("swarStop(%#016x) marks byte %d first, want %d", v, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for b := range 256 {
		for k := range 8 {
			for _, fill := range []uint64{lsb * 'a', lsb * 0xe9, lsb * 0x21, lsb * 0x23, lsb * 0x20, lsb * 0x80, lsb * 0xff} {
				v := fill&^(0xff<<(8*k)) | uint64(b)<<(8*k)
				check(v)
				check(v&(1<<(8*k+8)-1) | rng.Uint64()<<(8*k+8)) // anything after it
			}
		}
	}
	for range 1 << 20 {
		check(rng.Uint64())
	}
}
