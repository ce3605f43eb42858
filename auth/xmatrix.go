package auth

import (
	"crypto/ed25519"
	"errors"
	"strconv"
	"strings"

	"github.com/fedgate/fedgate/internal/servername"
)

// MaxAuthorizationLength bounds one Authorization header value. A real
// X-Matrix header is about 200 bytes; 8 KiB leaves room for unknown
// parameters while keeping the parse cheap.
const MaxAuthorizationLength = 8 << 10

// MaxXMatrixHeaders bounds how many X-Matrix Authorization headers one
// request may carry (several keys signing the same request).
const MaxXMatrixHeaders = 8

// XMatrix is one parsed X-Matrix Authorization header (spec "Request
// Authentication"). Values are immutable once parsed.
type XMatrix struct {
	// Origin is the sending server's name, as written (case-sensitive).
	Origin string
	// Destination is the receiving server's name, or "" when the header
	// has none (servers older than spec v1.3).
	Destination string
	// Key is the id of the key that made Sig, "ed25519:<version>".
	Key KeyID
	// Sig is the 64-byte ed25519 signature.
	Sig []byte
}

// schemeName is the auth scheme, matched case-insensitively on input and
// written exactly like this on output.
const schemeName = "X-Matrix"

// IsXMatrix reports whether an Authorization header value uses the X-Matrix
// scheme (case-insensitively), whether or not it is well-formed.
func IsXMatrix(value string) bool {
	return len(value) >= len(schemeName) && strings.EqualFold(value[:len(schemeName)], schemeName) &&
		(len(value) == len(schemeName) || value[len(schemeName)] == ' ' || value[len(schemeName)] == '\t')
}

// ParseXMatrix parses one Authorization header value with the X-Matrix
// scheme, accepting what the spec's grammar allows and what real servers
// send:
//
//   - the scheme name in any case, followed by one or more spaces;
//   - comma-separated name=value parameters in any order, with spaces and
//     tabs around commas and around '=';
//   - parameter names in any case; unknown parameters are ignored;
//   - quoted values with backslash escapes, or unquoted values: beyond the
//     token characters these may hold any visible ASCII except '"', ',' and
//     '\', so ':' (which the spec asks receivers to accept), IPv6 literals
//     and base64 signatures parse as Synapse would parse them;
//   - "signature" as an alias of "sig" (the spec's prose uses that name).
//
// It refuses, with an *[Error] of kind KindMalformedHeader: values longer
// than [MaxAuthorizationLength], non-ASCII or control characters other than
// tab, a missing origin, key or sig, any parameter given twice (two origins
// would be a security problem), empty values, empty list elements, an
// origin or destination that is not a valid server name, a key id that is
// not "ed25519:<version>", and a sig that is not base64 of 64 bytes.
func ParseXMatrix(header string) (XMatrix, error) {
	if len(header) > MaxAuthorizationLength {
		return XMatrix{}, malformed("header longer than " + strconv.Itoa(MaxAuthorizationLength) + " bytes")
	}
	for i := 0; i < len(header); i++ {
		if b := header[i]; (b < 0x20 && b != '\t') || b >= 0x7f {
			return XMatrix{}, malformed("non-ASCII or control character at byte " + strconv.Itoa(i))
		}
	}
	if !IsXMatrix(header) {
		return XMatrix{}, malformed("not an X-Matrix header")
	}
	h := header
	i := len(schemeName)
	if i >= len(h) || h[i] != ' ' {
		return XMatrix{}, malformed("the scheme must be followed by a space")
	}
	for i < len(h) && h[i] == ' ' {
		i++
	}
	var (
		x    XMatrix
		seen [4]bool // origin, destination, key, sig
		sig  string
	)
	for {
		nameStart := i
		for i < len(h) && isTchar(h[i]) {
			i++
		}
		if i == nameStart {
			if i == len(h) {
				return XMatrix{}, malformed("no parameters")
			}
			return XMatrix{}, malformed("expected a parameter name at byte " + strconv.Itoa(i))
		}
		name := h[nameStart:i]
		i = skipOWS(h, i)
		if i >= len(h) || h[i] != '=' {
			return XMatrix{}, malformed("parameter " + quoteShort(name) + " has no value")
		}
		i = skipOWS(h, i+1)
		var value string
		var err error
		if value, i, err = paramValue(h, i); err != nil {
			return XMatrix{}, err
		}
		if value == "" {
			return XMatrix{}, malformed("parameter " + quoteShort(name) + " has an empty value")
		}
		slot := -1
		switch {
		case strings.EqualFold(name, "origin"):
			slot, x.Origin = 0, value
		case strings.EqualFold(name, "destination"):
			slot, x.Destination = 1, value
		case strings.EqualFold(name, "key"):
			slot, x.Key = 2, KeyID(value)
		case strings.EqualFold(name, "sig"), strings.EqualFold(name, "signature"):
			slot, sig = 3, value
		}
		if slot >= 0 {
			if seen[slot] {
				return XMatrix{}, malformed("parameter " + quoteShort(strings.ToLower(name)) + " given twice")
			}
			seen[slot] = true
		}
		i = skipOWS(h, i)
		if i == len(h) {
			break
		}
		if h[i] != ',' {
			return XMatrix{}, malformed("expected ',' after parameter " + quoteShort(name))
		}
		i = skipOWS(h, i+1)
		if i == len(h) || h[i] == ',' {
			return XMatrix{}, malformed("empty parameter in the list")
		}
	}
	switch {
	case !seen[0]:
		return XMatrix{}, malformed("missing origin")
	case !seen[2]:
		return XMatrix{}, malformed("missing key")
	case !seen[3]:
		return XMatrix{}, malformed("missing sig")
	}
	if !servername.Valid(x.Origin) {
		return XMatrix{}, malformed("origin is not a valid server name")
	}
	if seen[1] && !servername.Valid(x.Destination) {
		return XMatrix{}, malformed("destination is not a valid server name")
	}
	if _, err := ParseKeyID(string(x.Key)); err != nil {
		return XMatrix{}, malformed("key is not an ed25519 key id")
	}
	s, err := DecodeBase64(sig)
	if err != nil || len(s) != ed25519.SignatureSize {
		return XMatrix{}, malformed("sig is not unpadded base64 of 64 bytes")
	}
	x.Sig = s
	return x, nil
}

// paramValue reads a quoted or unquoted parameter value starting at i.
func paramValue(h string, i int) (string, int, error) {
	if i < len(h) && h[i] == '"' {
		i++
		start := i
		var unescaped []byte // nil until the first backslash
		for i < len(h) {
			switch b := h[i]; b {
			case '"':
				if unescaped != nil {
					return string(unescaped), i + 1, nil
				}
				return h[start:i], i + 1, nil
			case '\\':
				if i+1 >= len(h) {
					return "", i, malformed("unterminated quoted value")
				}
				if unescaped == nil {
					unescaped = append(make([]byte, 0, len(h)-start), h[start:i]...)
				}
				unescaped = append(unescaped, h[i+1])
				i += 2
			default:
				if unescaped != nil {
					unescaped = append(unescaped, b)
				}
				i++
			}
		}
		return "", i, malformed("unterminated quoted value")
	}
	start := i
	for i < len(h) && h[i] > ' ' && h[i] < 0x7f && h[i] != '"' && h[i] != ',' && h[i] != '\\' {
		i++
	}
	return h[start:i], i, nil
}

// isTchar reports whether b is an RFC 9110 token character.
func isTchar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func skipOWS(h string, i int) int {
	for i < len(h) && (h[i] == ' ' || h[i] == '\t') {
		i++
	}
	return i
}

func quoteShort(s string) string {
	if len(s) > 32 {
		return strconv.Quote(s[:32]) + "..."
	}
	return strconv.Quote(s)
}

func malformed(why string) *Error {
	return &Error{Kind: KindMalformedHeader, Msg: "Malformed X-Matrix Authorization header: " + why}
}

// ParseAuthorization parses every Authorization header value of a request
// (http.Header.Values("Authorization")) that uses the X-Matrix scheme;
// values with other schemes are ignored. With none it returns an *[Error]
// of kind KindMissingHeader. Any malformed X-Matrix value, more than
// [MaxXMatrixHeaders] of them, or values that disagree on origin or
// destination yield KindMalformedHeader. Every returned XMatrix has the
// same Origin and Destination.
func ParseAuthorization(values []string) ([]XMatrix, error) {
	var out []XMatrix
	for _, v := range values {
		if !IsXMatrix(v) {
			continue
		}
		if len(out) == MaxXMatrixHeaders {
			return nil, malformed("more than " + strconv.Itoa(MaxXMatrixHeaders) + " X-Matrix headers")
		}
		x, err := ParseXMatrix(v)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && (x.Origin != out[0].Origin || x.Destination != out[0].Destination) {
			return nil, malformed("X-Matrix headers disagree on origin or destination")
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		return nil, &Error{Kind: KindMissingHeader, Msg: "Missing X-Matrix Authorization header"}
	}
	return out, nil
}

// errHeaderChar reports a value that cannot be written into a header.
var errHeaderChar = errors.New("X-Matrix value contains a character that cannot appear in a header")

// AppendText appends the header value in the one form every implementation
// parses: X-Matrix origin="…",destination="…",key="…",sig="…", with the
// destination omitted only when empty. It fails if a value holds a control
// or non-ASCII character. It implements encoding.TextAppender.
func (x XMatrix) AppendText(b []byte) ([]byte, error) {
	b = append(b, schemeName+` origin=`...)
	b, ok := appendQuoted(b, x.Origin)
	if x.Destination != "" {
		b = append(b, `,destination=`...)
		var ok2 bool
		b, ok2 = appendQuoted(b, x.Destination)
		ok = ok && ok2
	}
	b = append(b, `,key=`...)
	b, ok3 := appendQuoted(b, string(x.Key))
	b = append(b, `,sig="`...)
	b = AppendBase64(b, x.Sig)
	b = append(b, '"')
	if !ok || !ok3 {
		return b, errHeaderChar
	}
	return b, nil
}

// String returns the header value as AppendText writes it. Characters that
// cannot appear in a header are replaced by '?', so the result is always
// safe to put in a header (and will fail verification if that happened).
func (x XMatrix) String() string {
	b, _ := x.AppendText(make([]byte, 0, 64+len(x.Origin)+len(x.Destination)+len(x.Key)+88))
	return string(b)
}

// appendQuoted appends s as an RFC 9110 quoted-string; bytes that a
// quoted-string cannot carry become '?' and ok is false.
func appendQuoted(b []byte, s string) ([]byte, bool) {
	ok := true
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case (c < 0x20 && c != '\t') || c >= 0x7f:
			b = append(b, '?')
			ok = false
		default:
			b = append(b, c)
		}
	}
	return append(b, '"'), ok
}
