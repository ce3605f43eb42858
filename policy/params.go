package policy

import (
	"errors"
	"strings"
	"unsafe"
)

// maxIDLength is the longest room or user ID the spec allows (255 bytes,
// sigil and server name included).
const maxIDLength = 255

// idBuf holds one decoded room or user ID on the caller's stack.
type idBuf [maxIDLength]byte

var (
	errBadEscape = errors.New("malformed percent-escape")
	errIDTooLong = errors.New("longer than 255 bytes")
)

// unescape percent-decodes s into buf and returns the decoded bytes, which
// alias buf. With plusSpace, '+' decodes to a space (query strings). It
// fails on malformed escapes and on results longer than [maxIDLength].
func unescape(buf *idBuf, s string, plusSpace bool) ([]byte, error) {
	out := buf[:0]
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return nil, errBadEscape
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return nil, errBadEscape
			}
			c = hi<<4 | lo
			i += 2
		case c == '+' && plusSpace:
			c = ' '
		}
		if len(out) == maxIDLength {
			return nil, errIDTooLong
		}
		out = append(out, c)
	}
	return out, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// queryScan walks the values of one key in a raw query string. Pairs are
// separated by '&' only (';' is part of a value, as in Go since 1.17 and
// Python since 3.9.2), and keys are compared after decoding, so
// "user%5Fid" counts as "user_id". It works without callbacks so that the
// buffers it decodes into can stay on the caller's stack.
type queryScan struct {
	rest string
	key  string
}

// next decodes the next value of the key into buf. ok is false when there
// are no more; a value with a malformed escape or longer than 255 bytes is
// an error.
func (q *queryScan) next(buf *idBuf) (v []byte, ok bool, err error) {
	for q.rest != "" {
		var pair string
		pair, q.rest, _ = strings.Cut(q.rest, "&")
		k, raw, _ := strings.Cut(pair, "=")
		if k != q.key {
			if strings.IndexByte(k, '%') < 0 && strings.IndexByte(k, '+') < 0 {
				continue
			}
			var kbuf idBuf
			dk, err := unescape(&kbuf, k, true)
			if err != nil || string(dk) != q.key {
				continue
			}
		}
		v, err := unescape(buf, raw, true)
		if err != nil {
			return nil, false, err
		}
		return v, true, nil
	}
	return nil, false, nil
}

var (
	errUserNotOwned = errors.New("user belongs to another server")
	errNotUserID    = errors.New("not a user ID")
)

// checkOwner checks that user belongs to owner (compared ignoring ASCII
// case; an empty owner owns nobody). On failure it copies user into
// culprit, for the message, and returns its length with errNotUserID or
// errUserNotOwned.
func checkOwner(user []byte, owner string, culprit *idBuf) (int, error) {
	server, ok := userServer(user)
	if ok && owner != "" && equalFold(server, owner) {
		return 0, nil
	}
	n := copy(culprit[:], user)
	if !ok {
		return n, errNotUserID
	}
	return n, errUserNotOwned
}

// userServer returns the server-name part of a user ID "@localpart:server".
// It fails when id is not shaped like a user ID.
func userServer(id []byte) ([]byte, bool) {
	if len(id) < 4 || id[0] != '@' {
		return nil, false
	}
	for i := 1; i < len(id); i++ {
		if id[i] == ':' {
			if i == 1 || i == len(id)-1 {
				return nil, false
			}
			return id[i+1:], true
		}
	}
	return nil, false
}

// roomWithoutPort returns the room ID without the port of its server
// part ("!a:example.org:8448" -> "!a:example.org") and whether there was
// one. Room IDs without a server part (room version 12) have no port.
func roomWithoutPort(id string) (string, bool) {
	colon := strings.IndexByte(id, ':')
	if colon < 0 {
		return id, false
	}
	server := id[colon+1:]
	if strings.HasPrefix(server, "[") {
		end := strings.IndexByte(server, ']')
		if end < 0 || end == len(server)-1 || server[end+1] != ':' {
			return id, false
		}
		return id[:colon+1+end+1], true
	}
	if p := strings.LastIndexByte(server, ':'); p >= 0 {
		return id[:colon+1+p], true
	}
	return id, false
}

// quoteID returns an ID for a Matrix error message: at most maxIDLength
// bytes, copied so that it does not alias a request buffer.
func quoteID[T ~string | ~[]byte](id T) string {
	if len(id) > maxIDLength {
		id = id[:maxIDLength]
	}
	return strings.Clone(string(id))
}

// view returns b as a string without copying it. The string aliases b: it
// must not be kept past the call that made it, and b must not change while
// it is in use. It lets IDs decoded into stack buffers be matched with
// functions that take strings and keep nothing (glob.Match), without an
// allocation per request. Anything stored, such as a Decision message, goes
// through [quoteID], which copies.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
