package auth

import (
	"bytes"
	"crypto/ed25519"
	"strconv"
	"unicode/utf8"
)

// The Signing JSON algorithm (spec appendix "Signing JSON"): the signature
// covers the canonical JSON of the object without its top-level
// "signatures" and "unsigned" members, and is stored at
// signatures[entity][key id]. Everything here works on canonical bytes;
// nothing decodes into map[string]any.

// SignJSON signs the JSON object obj as entity (a server name) with key and
// returns the signed object in canonical JSON: obj's members, its existing
// signatures plus signatures[entity][key.ID] (replacing an earlier
// signature with that key id), and its "unsigned" member untouched. obj is
// not modified. Errors are *[Error] of kind KindBadJSON.
func SignJSON(obj []byte, entity string, key SigningKey) ([]byte, error) {
	canon, err := Canonicalize(nil, obj)
	if err != nil {
		return nil, newError(KindBadJSON, err, "cannot sign: not valid canonical JSON")
	}
	return signCanonical(canon, entity, key)
}

// AddSignature adds our signature to a JSON object that may already carry
// others, as a notary does to the key documents it relays. It is SignJSON
// under the name of its use.
func AddSignature(raw []byte, entity string, key SigningKey) ([]byte, error) {
	return SignJSON(raw, entity, key)
}

func signCanonical(canon []byte, entity string, key SigningKey) ([]byte, error) {
	if len(key.Private) != ed25519.PrivateKeySize {
		return nil, newError(KindBadJSON, nil, "cannot sign: key %s has no private key", key.ID)
	}
	msg, err := stripSigned(nil, canon)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(key.Private, msg)
	return setSignature(canon, entity, string(key.ID), sig)
}

// VerifyJSON checks that the JSON object obj carries a valid signature by
// entity with keyID, made with pub. Unknown members, other signatures and
// "unsigned" are ignored. Errors are *[Error]: KindBadJSON when obj is not
// an acceptable JSON object, KindBadSignature when the signature is absent,
// malformed or wrong.
func VerifyJSON(obj []byte, entity string, keyID KeyID, pub ed25519.PublicKey) error {
	canon, err := Canonicalize(nil, obj)
	if err != nil {
		return newError(KindBadJSON, err, "cannot verify: not valid canonical JSON")
	}
	msg, err := stripSigned(nil, canon)
	if err != nil {
		return err
	}
	sigs, _ := memberValue(canon, "signatures")
	return verifySig(sigs, msg, entity, keyID, pub)
}

// verifySig checks signatures[entity][keyID] (sigs is the canonical
// "signatures" value, nil when absent) over msg.
func verifySig(sigs, msg []byte, entity string, keyID KeyID, pub ed25519.PublicKey) error {
	sig, err := findSignature(sigs, entity, keyID)
	if err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, msg, sig) {
		return newError(KindBadSignature, nil, "signature by %s with %s does not verify", entity, keyID)
	}
	return nil
}

// findSignature returns the decoded signature signatures[entity][keyID].
func findSignature(sigs []byte, entity string, keyID KeyID) ([]byte, error) {
	byEntity, ok := memberValue(sigs, entity)
	if !ok {
		return nil, newError(KindBadSignature, nil, "no signature by %s", entity)
	}
	raw, ok := memberValue(byEntity, string(keyID))
	if !ok {
		return nil, newError(KindBadSignature, nil, "no signature by %s with %s", entity, keyID)
	}
	s, ok := stringValue(raw)
	if !ok {
		return nil, newError(KindBadSignature, nil, "signature by %s with %s is not a string", entity, keyID)
	}
	sig, err := DecodeBase64(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, newError(KindBadSignature, err, "signature by %s with %s is not base64 of %d bytes", entity, keyID, ed25519.SignatureSize)
	}
	return sig, nil
}

// stripSigned appends to dst the canonical object canon without its
// top-level "signatures" and "unsigned" members: the bytes that get signed.
func stripSigned(dst, canon []byte) ([]byte, error) {
	if len(canon) == 0 || canon[0] != '{' {
		return dst, newError(KindBadJSON, nil, "only JSON objects can be signed")
	}
	dst = append(dst, '{')
	first := true
	err := eachMember(canon, func(key, member []byte) bool {
		if string(key) == "signatures" || string(key) == "unsigned" {
			return true
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, member...)
		return true
	})
	return append(dst, '}'), err
}

// setSignature returns canon with signatures[entity][keyID] = sig, all
// other members and signatures kept, in canonical order.
func setSignature(canon []byte, entity, keyID string, sig []byte) ([]byte, error) {
	sigText := make([]byte, 0, 90)
	sigText = append(sigText, '"')
	sigText = AppendBase64(sigText, sig)
	sigText = append(sigText, '"')

	oldSigs, _ := memberValue(canon, "signatures")
	if oldSigs != nil && oldSigs[0] != '{' {
		return nil, newError(KindBadJSON, nil, "cannot sign: \"signatures\" is not an object")
	}
	oldEntity, _ := memberValue(oldSigs, entity)
	if oldEntity != nil && oldEntity[0] != '{' {
		return nil, newError(KindBadJSON, nil, "cannot sign: signatures[%q] is not an object", entity)
	}
	entitySigs, err := setMember(nil, oldEntity, keyID, sigText)
	if err != nil {
		return nil, err
	}
	allSigs, err := setMember(nil, oldSigs, entity, entitySigs)
	if err != nil {
		return nil, err
	}
	return setMember(make([]byte, 0, len(canon)+len(sigText)+len(entity)+len(keyID)+32), canon, "signatures", allSigs)
}

// setMember appends to dst the canonical object obj (nil means {}) with
// member key set to the canonical value val, keeping code point order.
func setMember(dst, obj []byte, key string, val []byte) ([]byte, error) {
	quoted, err := appendJSONString(nil, key)
	if err != nil {
		return dst, newError(KindBadJSON, err, "invalid key")
	}
	dst = append(dst, '{')
	n, placed := 0, false
	put := func(member ...[]byte) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		for _, p := range member {
			dst = append(dst, p...)
		}
	}
	if obj != nil {
		err = eachMember(obj, func(k, member []byte) bool {
			if !placed {
				switch cmp := compareKeyText(k, key); {
				case cmp == 0:
					put(quoted, []byte{':'}, val)
					placed = true
					return true
				case cmp > 0:
					put(quoted, []byte{':'}, val)
					placed = true
				}
			}
			put(member)
			return true
		})
		if err != nil {
			return dst, err
		}
	}
	if !placed {
		put(quoted, []byte{':'}, val)
	}
	return append(dst, '}'), nil
}

// compareKeyText compares a key as written in canonical JSON (without
// quotes, possibly escaped) with a plain Go string, in code point order.
func compareKeyText(raw []byte, key string) int {
	if bytes.IndexByte(raw, '\\') < 0 {
		return bytes.Compare(raw, []byte(key))
	}
	quoted, _ := appendJSONString(nil, key)
	return compareDecoded(append(raw[:len(raw):len(raw)], '"'), quoted[1:])
}

// eachMember calls fn for every member of the canonical JSON object obj
// with the member's key as written (no quotes, escapes intact) and the whole
// member text `"key":value`. It stops when fn returns false. obj must be
// canonical (it is produced by Canonicalize); a malformed obj yields an
// error, never a panic.
func eachMember(obj []byte, fn func(key, member []byte) bool) error {
	if len(obj) < 2 || obj[0] != '{' {
		return newError(KindBadJSON, nil, "not a JSON object")
	}
	i := 1
	if obj[1] == '}' {
		return nil
	}
	for i < len(obj) {
		start := i
		end, ok := skipCanonical(obj, i)
		if !ok || obj[i] != '"' || end >= len(obj) || obj[end] != ':' {
			return newError(KindBadJSON, nil, "malformed object")
		}
		key := obj[i+1 : end-1]
		if end, ok = skipCanonical(obj, end+1); !ok || end >= len(obj) {
			return newError(KindBadJSON, nil, "malformed object")
		}
		if !fn(key, obj[start:end]) {
			return nil
		}
		switch obj[end] {
		case ',':
			i = end + 1
		case '}':
			return nil
		default:
			return newError(KindBadJSON, nil, "malformed object")
		}
	}
	return newError(KindBadJSON, nil, "malformed object")
}

// eachElement calls fn for every element of the canonical JSON array arr.
func eachElement(arr []byte, fn func(elem []byte) bool) error {
	if len(arr) < 2 || arr[0] != '[' {
		return newError(KindBadJSON, nil, "not a JSON array")
	}
	if arr[1] == ']' {
		return nil
	}
	for i := 1; i < len(arr); {
		end, ok := skipCanonical(arr, i)
		if !ok || end >= len(arr) {
			return newError(KindBadJSON, nil, "malformed array")
		}
		if !fn(arr[i:end]) {
			return nil
		}
		switch arr[end] {
		case ',':
			i = end + 1
		case ']':
			return nil
		default:
			return newError(KindBadJSON, nil, "malformed array")
		}
	}
	return newError(KindBadJSON, nil, "malformed array")
}

// memberValue returns the value of member key in the canonical object obj.
func memberValue(obj []byte, key string) ([]byte, bool) {
	if len(obj) == 0 {
		return nil, false
	}
	var val []byte
	eachMember(obj, func(k, member []byte) bool {
		if cmp := compareKeyText(k, key); cmp >= 0 {
			if cmp == 0 {
				val = member[len(k)+3:]
			}
			return false // keys are sorted: nothing further can match
		}
		return true
	})
	return val, val != nil
}

// skipCanonical returns the offset just past the canonical JSON value that
// starts at i (no whitespace to skip). ok is false if the input ends early.
func skipCanonical(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return len(b), false
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			case '"':
				end, ok := skipCanonical(b, j)
				if !ok {
					return end, false
				}
				j = end - 1
			}
		}
		return len(b), false
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ':' {
			j++
		}
		return j, j > i
	}
}

// stringValue decodes a canonical JSON string value.
func stringValue(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body), true
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); {
		if body[i] != '\\' {
			out = append(out, body[i])
			i++
			continue
		}
		if i+1 >= len(body) || (body[i+1] == 'u' && i+6 > len(body)) {
			return "", false
		}
		r, size := decodeEscape(body[i:])
		if size > len(body)-i {
			return "", false
		}
		out = utf8.AppendRune(out, r)
		i += size
	}
	return string(out), true
}

// intValue decodes a canonical JSON integer value.
func intValue(raw []byte) (int64, bool) {
	v, err := strconv.ParseInt(string(raw), 10, 64)
	return v, err == nil
}
