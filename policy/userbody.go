package policy

import (
	"encoding/json"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

var (
	errNotJSON   = errors.New("body is not valid JSON")
	errNotObject = errors.New("body is not a JSON object")
)

// isUserMapKey reports whether k is a top-level key of user/keys/claim
// (one_time_keys) or user/keys/query (device_keys), whose objects are
// keyed by user ID.
func isUserMapKey(k []byte) bool {
	return string(k) == "device_keys" || string(k) == "one_time_keys"
}

// bodyScan walks the user IDs that key the top-level "device_keys" and
// "one_time_keys" objects of a user/keys request body, in order, every
// occurrence of a repeated key included (JSON decoders disagree on which
// duplicate wins, so all are checked). Values of other types are ignored:
// the homeserver refuses them. It works without callbacks and allocates
// nothing, so the buffers it decodes into stay on the caller's stack.
type bodyScan struct {
	s     jsonScan
	inMap bool // between the braces of a user map
}

// start checks body and positions the scan. It fails with errNotJSON for
// invalid JSON and errNotObject when the body is not an object.
func (b *bodyScan) start(body []byte) error {
	if !json.Valid(body) {
		return errNotJSON
	}
	b.s = jsonScan{b: body}
	b.s.ws()
	if b.s.peek() != '{' {
		return errNotObject
	}
	b.s.i++
	b.s.ws()
	return nil
}

// next decodes the next user ID into buf. ok is false at the end; an ID
// longer than 255 bytes is errIDTooLong.
func (b *bodyScan) next(buf *idBuf) (user []byte, ok bool, err error) {
	s := &b.s
	for s.i < len(s.b) {
		if b.inMap {
			if s.peek() != '"' { // '}' closes the map
				s.i++
				b.inMap = false
				s.comma()
				continue
			}
			user, fits := s.str(buf)
			s.colon()
			s.skip()
			s.comma()
			if !fits {
				return nil, false, errIDTooLong
			}
			return user, true, nil
		}
		if s.peek() != '"' { // '}' closes the body
			return nil, false, nil
		}
		var kbuf idBuf
		key, fits := s.str(&kbuf)
		s.colon()
		if fits && isUserMapKey(key) && s.peek() == '{' {
			s.i++
			s.ws()
			b.inMap = true
			continue
		}
		s.skip()
		s.comma()
	}
	return nil, false, nil
}

// jsonScan walks a document already checked by json.Valid, so it only
// needs to find structure, not to diagnose errors. Every loop advances, so
// even a document that changed after the check cannot make it spin.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// colon steps over the ':' after a key and the blanks around it.
func (s *jsonScan) colon() {
	s.ws()
	if s.peek() == ':' {
		s.i++
	}
	s.ws()
}

// comma steps over blanks and a ',' after a member, and blanks after it.
func (s *jsonScan) comma() {
	s.ws()
	if s.peek() == ',' {
		s.i++
	}
	s.ws()
}

// skip steps over one value.
func (s *jsonScan) skip() {
	switch s.peek() {
	case '"':
		s.skipString()
		return
	case '{', '[':
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
		return
	}
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.skipString()
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				s.i++
				return
			}
		}
		s.i++
	}
}

func (s *jsonScan) skipString() {
	s.i++ // opening quote
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return
		default:
			s.i++
		}
	}
}

// str decodes the string at s.i into buf. fits is false when the decoded
// string is longer than buf; the string is consumed either way. Escapes are
// decoded as encoding/json does, lone surrogates becoming U+FFFD.
func (s *jsonScan) str(buf *idBuf) (v []byte, fits bool) {
	out := buf[:0]
	fits = true
	s.i++ // opening quote
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			s.i++
			return out, fits
		}
		if c != '\\' {
			out, fits = putBytes(out, fits, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			s.i = len(s.b)
			break
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case 'b':
			out, fits = putBytes(out, fits, '\b')
		case 'f':
			out, fits = putBytes(out, fits, '\f')
		case 'n':
			out, fits = putBytes(out, fits, '\n')
		case 'r':
			out, fits = putBytes(out, fits, '\r')
		case 't':
			out, fits = putBytes(out, fits, '\t')
		case 'u':
			r := s.hex4()
			if utf16.IsSurrogate(r) {
				// A valid pair makes one rune; anything else is U+FFFD and
				// a following escape is decoded on its own.
				dec := utf8.RuneError
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					save := s.i
					s.i += 2
					if dec = utf16.DecodeRune(r, s.hex4()); dec == utf8.RuneError {
						s.i = save
					}
				}
				r = dec
			}
			var enc [utf8.UTFMax]byte
			n := utf8.EncodeRune(enc[:], r)
			out, fits = putBytes(out, fits, enc[:n]...)
		default: // '"', '\\', '/'
			out, fits = putBytes(out, fits, e)
		}
	}
	return out, fits
}

// putBytes appends p to out if it fits in out's capacity; once something
// did not fit, nothing more is appended.
func putBytes(out []byte, fits bool, p ...byte) ([]byte, bool) {
	if !fits || len(out)+len(p) > cap(out) {
		return out, false
	}
	return append(out, p...), true
}

// hex4 reads four hex digits at s.i.
func (s *jsonScan) hex4() rune {
	var r rune
	for k := 0; k < 4 && s.i < len(s.b); k++ {
		d, _ := unhex(s.b[s.i])
		r = r<<4 | rune(d)
		s.i++
	}
	return r
}
