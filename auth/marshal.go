package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Marshal encodes a Go value as canonical JSON, for building documents such
// as our key document. It handles these types directly: nil, bool, string,
// json.Number and json.RawMessage (both canonicalised), all integer types,
// float64 and float32 holding an integer, map[string]any,
// map[string]string, map[string]map[string]string, []any and []string.
// Any other value is encoded with encoding/json first and then
// canonicalised, so structs with json tags work (but encoding/json replaces
// invalid UTF-8 instead of refusing it).
//
// Integers must lie in [-(2^53)+1, 2^53-1]; non-integral floats, NaN and
// infinities, invalid UTF-8 in strings and nesting deeper than
// [MaxJSONDepth] are errors. It is safe for concurrent use.
func Marshal(v any) ([]byte, error) {
	return appendValue(nil, v, 0)
}

var errTooDeep = errors.New("nesting deeper than " + strconv.Itoa(MaxJSONDepth) + " levels")

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > MaxJSONDepth {
		return dst, errTooDeep
	}
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		if v {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case string:
		return appendJSONString(dst, v)
	case json.Number:
		return Canonicalize(dst, []byte(v))
	case json.RawMessage:
		return Canonicalize(dst, v)
	case int:
		return appendInt(dst, int64(v))
	case int8:
		return appendInt(dst, int64(v))
	case int16:
		return appendInt(dst, int64(v))
	case int32:
		return appendInt(dst, int64(v))
	case int64:
		return appendInt(dst, v)
	case uint:
		return appendUint(dst, uint64(v))
	case uint8:
		return appendUint(dst, uint64(v))
	case uint16:
		return appendUint(dst, uint64(v))
	case uint32:
		return appendUint(dst, uint64(v))
	case uint64:
		return appendUint(dst, v)
	case float64:
		return appendFloat(dst, v)
	case float32:
		return appendFloat(dst, float64(v))
	case map[string]any:
		return appendMap(dst, v, depth)
	case map[string]string:
		return appendMap(dst, v, depth)
	case map[string]map[string]string:
		return appendMap(dst, v, depth)
	case []any:
		return appendSlice(dst, v, depth)
	case []string:
		return appendSlice(dst, v, depth)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("encoding %T: %w", v, err)
	}
	return Canonicalize(dst, raw)
}

func appendMap[V any](dst []byte, m map[string]V, depth int) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // byte order of UTF-8 is code point order
	dst = append(dst, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendJSONString(dst, k); err != nil {
			return dst, err
		}
		dst = append(dst, ':')
		if dst, err = appendValue(dst, m[k], depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendSlice[V any](dst []byte, s []V, depth int) ([]byte, error) {
	dst = append(dst, '[')
	var err error
	for i, v := range s {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendValue(dst, v, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

func appendInt(dst []byte, v int64) ([]byte, error) {
	if v > maxSafeInteger || v < -maxSafeInteger {
		return dst, fmt.Errorf("integer %d out of range [-(2^53)+1, 2^53-1]", v)
	}
	return strconv.AppendInt(dst, v, 10), nil
}

func appendUint(dst []byte, v uint64) ([]byte, error) {
	if v > maxSafeInteger {
		return dst, fmt.Errorf("integer %d out of range [-(2^53)+1, 2^53-1]", v)
	}
	return strconv.AppendUint(dst, v, 10), nil
}

func appendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return dst, fmt.Errorf("number %v is not an integer (canonical JSON has no floats)", f)
	}
	if f > maxSafeInteger || f < -maxSafeInteger {
		return dst, fmt.Errorf("integer %v out of range [-(2^53)+1, 2^53-1]", f)
	}
	return strconv.AppendInt(dst, int64(f), 10), nil // int64(-0.0) is 0
}

// appendJSONString appends s as a canonical JSON string. Invalid UTF-8 is
// an error (encoding/json would silently replace it).
func appendJSONString(dst []byte, s string) ([]byte, error) {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if strPlain[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedRune(dst, rune(b))
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return dst, fmt.Errorf("string has invalid UTF-8 at byte %d", i)
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), nil
}
