package auth

import (
	"crypto/ed25519"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fedgate/fedgate/internal/servername"
)

// Limits on remote key documents. Real documents are well under 2 KiB and
// list one to three keys.
const (
	// MaxKeyDocumentSize is the largest key document ParseServerKeys accepts.
	MaxKeyDocumentSize = 64 << 10
	// MaxKeysPerDocument bounds verify_keys plus old_verify_keys entries.
	MaxKeysPerDocument = 32
	// MaxKeyValidity is the cap every server applies to valid_until_ts:
	// keys are used for at most 7 days after they were fetched.
	MaxKeyValidity = 7 * 24 * time.Hour
)

// OldVerifyKey is a retired key, listed in old_verify_keys: it still
// verifies events sent before ExpiredTS, never requests.
type OldVerifyKey struct {
	ID  KeyID
	Key ed25519.PublicKey
	// ExpiredTS is when the key stopped being used, in milliseconds since
	// the Unix epoch (the document's expired_ts).
	ExpiredTS int64
}

// Expired returns ExpiredTS as a time.
func (k OldVerifyKey) Expired() time.Time { return time.UnixMilli(k.ExpiredTS) }

// ServerKeys is a checked key document of a remote server (the body of
// GET /_matrix/key/v2/server, or one entry of a notary's answer). It is
// immutable: share it, do not modify it.
type ServerKeys struct {
	// ServerName is the server the document is for.
	ServerName string
	// VerifyKeys are the current ed25519 keys; every one of them signed the
	// document. Keys of other algorithms are not listed.
	VerifyKeys map[KeyID]ed25519.PublicKey
	// OldVerifyKeys are retired ed25519 keys with their expiry. May be empty.
	OldVerifyKeys map[KeyID]OldVerifyKey
	// ValidUntil is valid_until_ts as published, before any cap.
	ValidUntil time.Time
	// Checked is when the document was fetched and checked (the now given
	// to ParseServerKeys).
	Checked time.Time
	// Raw is the whole document in canonical JSON, signatures included, as
	// a notary serves it onwards.
	Raw []byte
}

// EffectiveValidUntil is the lesser of the published valid_until_ts and
// checkedAt plus [MaxKeyValidity], the spec's rule for how long keys may be
// trusted.
func (k *ServerKeys) EffectiveValidUntil(checkedAt time.Time) time.Time {
	if limit := checkedAt.Add(MaxKeyValidity); limit.Before(k.ValidUntil) {
		return limit
	}
	return k.ValidUntil
}

// RequestKey returns the key id for verifying a request signed at now: it
// must be in verify_keys (old keys never sign requests) and now must not be
// after the document's effective validity, counted from Checked. Errors are
// *[Error] of kind KindUnknownKey.
func (k *ServerKeys) RequestKey(id KeyID, now time.Time) (ed25519.PublicKey, error) {
	pub, ok := k.VerifyKeys[id]
	if !ok {
		if _, old := k.OldVerifyKeys[id]; old {
			return nil, newError(KindUnknownKey, nil, "Key %s of %s is retired and cannot sign requests", id, k.ServerName)
		}
		return nil, newError(KindUnknownKey, nil, "%s does not publish key %s", k.ServerName, id)
	}
	if now.After(k.EffectiveValidUntil(k.Checked)) {
		return nil, newError(KindUnknownKey, nil, "The keys of %s we hold expired", k.ServerName)
	}
	return pub, nil
}

// BuildKeyDocument builds our key document, the body of
// GET /_matrix/key/v2/server: every key in keys in verify_keys, the old
// keys in old_verify_keys with their expired_ts, valid_until_ts, and a
// signature by every current key (never by a key it does not list). The
// output is canonical JSON. Errors are *[Error] of kind KindBadKeyDocument.
func BuildKeyDocument(serverName string, keys []SigningKey, old []OldVerifyKey, validUntil time.Time) ([]byte, error) {
	bad := func(format string, args ...any) ([]byte, error) {
		return nil, newError(KindBadKeyDocument, nil, "building key document: "+format, args...)
	}
	if !servername.Valid(serverName) {
		return bad("%s is not a valid server name", quoteShort(serverName))
	}
	if len(keys) == 0 {
		return bad("no signing keys")
	}
	if ms := validUntil.UnixMilli(); ms <= 0 || ms > maxSafeInteger {
		return bad("valid_until_ts %v is out of range", validUntil)
	}
	if len(keys)+len(old) > MaxKeysPerDocument {
		return bad("%d keys, more than %d", len(keys)+len(old), MaxKeysPerDocument)
	}
	seen := map[KeyID]bool{}
	verify := map[string]any{}
	for _, k := range keys {
		if _, err := ParseKeyID(string(k.ID)); err != nil {
			return bad("%v", err)
		}
		if len(k.Private) != ed25519.PrivateKeySize {
			return bad("key %s has no private key", k.ID)
		}
		if seen[k.ID] {
			return bad("key %s listed twice", k.ID)
		}
		seen[k.ID] = true
		verify[string(k.ID)] = map[string]any{"key": EncodeBase64(k.Public())}
	}
	oldKeys := map[string]any{}
	for _, k := range old {
		if _, err := ParseKeyID(string(k.ID)); err != nil {
			return bad("%v", err)
		}
		if len(k.Key) != ed25519.PublicKeySize {
			return bad("old key %s is %d bytes, want %d", k.ID, len(k.Key), ed25519.PublicKeySize)
		}
		if seen[k.ID] {
			return bad("key %s listed twice", k.ID)
		}
		seen[k.ID] = true
		oldKeys[string(k.ID)] = map[string]any{"key": EncodeBase64(k.Key), "expired_ts": k.ExpiredTS}
	}
	doc := map[string]any{
		"server_name":     serverName,
		"valid_until_ts":  validUntil.UnixMilli(),
		"verify_keys":     verify,
		"old_verify_keys": oldKeys,
	}
	unsigned, err := Marshal(doc)
	if err != nil {
		return bad("%v", err)
	}
	sigs := map[string]string{}
	for _, k := range keys {
		sigs[string(k.ID)] = EncodeBase64(ed25519.Sign(k.Private, unsigned))
	}
	doc["signatures"] = map[string]map[string]string{serverName: sigs}
	return Marshal(doc)
}

// ParseServerKeys checks a remote key document for expectedServer and
// returns it parsed. It requires: at most [MaxKeyDocumentSize] bytes of
// valid (strict) JSON, server_name equal to expectedServer, a
// valid_until_ts, at most [MaxKeysPerDocument] keys, at least one ed25519
// verify key, and a valid self-signature by every ed25519 key in
// verify_keys. Signatures by keys it does not list are ignored, as are keys
// of other algorithms. It does not judge validity in time: an expired
// document is returned (notaries serve them for old events); see
// [ServerKeys.RequestKey]. now is recorded as Checked. Errors are *[Error]
// of kind KindBadKeyDocument or KindBadSignature, with messages safe to
// send on.
func ParseServerKeys(raw []byte, expectedServer string, now time.Time) (*ServerKeys, error) {
	if len(raw) > MaxKeyDocumentSize {
		return nil, badDoc(expectedServer, nil, "larger than %d bytes", MaxKeyDocumentSize)
	}
	canon, err := Canonicalize(nil, raw)
	if err != nil {
		return nil, badDoc(expectedServer, err, "not valid JSON: %s", err.Error())
	}
	return parseCanonicalKeys(canon, expectedServer, now)
}

func badDoc(server string, cause error, format string, args ...any) *Error {
	return newError(KindBadKeyDocument, cause, "Key document of %s: %s", quoteShort(server), fmt.Sprintf(format, args...))
}

func parseCanonicalKeys(canon []byte, expectedServer string, now time.Time) (*ServerKeys, error) {
	if canon[0] != '{' {
		return nil, badDoc(expectedServer, nil, "not a JSON object")
	}
	var f struct {
		serverName, verifyKeys, oldKeys, validUntil, signatures []byte
	}
	eachMember(canon, func(key, member []byte) bool {
		val := member[len(key)+3:]
		switch string(key) {
		case "server_name":
			f.serverName = val
		case "verify_keys":
			f.verifyKeys = val
		case "old_verify_keys":
			f.oldKeys = val
		case "valid_until_ts":
			f.validUntil = val
		case "signatures":
			f.signatures = val
		}
		return true
	})
	name, ok := stringValue(f.serverName)
	if !ok {
		return nil, badDoc(expectedServer, nil, "server_name missing or not a string")
	}
	if name != expectedServer {
		return nil, badDoc(expectedServer, nil, "server_name is %s", quoteShort(name))
	}
	if f.validUntil == nil {
		return nil, badDoc(name, nil, "valid_until_ts missing")
	}
	validUntil, ok := intValue(f.validUntil)
	if !ok || validUntil < 0 {
		return nil, badDoc(name, nil, "valid_until_ts is not a non-negative integer")
	}
	k := &ServerKeys{
		ServerName:    name,
		VerifyKeys:    map[KeyID]ed25519.PublicKey{},
		OldVerifyKeys: map[KeyID]OldVerifyKey{},
		ValidUntil:    time.UnixMilli(validUntil),
		Checked:       now,
		Raw:           canon,
	}
	count := 0
	if f.verifyKeys == nil || f.verifyKeys[0] != '{' {
		return nil, badDoc(name, nil, "verify_keys missing or not an object")
	}
	var bad *Error
	eachMember(f.verifyKeys, func(rawID, member []byte) bool {
		if count++; count > MaxKeysPerDocument {
			bad = badDoc(name, nil, "more than %d keys", MaxKeysPerDocument)
			return false
		}
		id, pub, _, err := parseKeyEntry(rawID, member[len(rawID)+3:], false)
		if err != "" {
			bad = badDoc(name, nil, "verify_keys: %s", err)
			return false
		}
		if id != "" {
			k.VerifyKeys[id] = pub
		}
		return true
	})
	if bad != nil {
		return nil, bad
	}
	if f.oldKeys != nil {
		if f.oldKeys[0] != '{' {
			return nil, badDoc(name, nil, "old_verify_keys is not an object")
		}
		eachMember(f.oldKeys, func(rawID, member []byte) bool {
			if count++; count > MaxKeysPerDocument {
				bad = badDoc(name, nil, "more than %d keys", MaxKeysPerDocument)
				return false
			}
			id, pub, expired, err := parseKeyEntry(rawID, member[len(rawID)+3:], true)
			if err != "" {
				bad = badDoc(name, nil, "old_verify_keys: %s", err)
				return false
			}
			if id != "" {
				k.OldVerifyKeys[id] = OldVerifyKey{ID: id, Key: pub, ExpiredTS: expired}
			}
			return true
		})
		if bad != nil {
			return nil, bad
		}
	}
	if len(k.VerifyKeys) == 0 {
		return nil, badDoc(name, nil, "no ed25519 key in verify_keys")
	}
	if f.signatures == nil || f.signatures[0] != '{' {
		return nil, badDoc(name, nil, "signatures missing or not an object")
	}
	msg, err := stripSigned(make([]byte, 0, len(canon)), canon)
	if err != nil {
		return nil, badDoc(name, err, "malformed")
	}
	for _, id := range slices.Sorted(maps.Keys(k.VerifyKeys)) {
		if err := verifySig(f.signatures, msg, name, id, k.VerifyKeys[id]); err != nil {
			return nil, newError(KindBadSignature, err, "Key document of %s: not self-signed by its key %s", quoteShort(name), id)
		}
	}
	return k, nil
}

// stringEquals reports whether the canonical JSON value raw is the string s.
func stringEquals(raw []byte, s string) bool {
	v, ok := stringValue(raw)
	return ok && v == s
}

// parseKeyEntry reads one verify_keys or old_verify_keys entry. A key id of
// another algorithm yields id "" and no error.
func parseKeyEntry(rawID, val []byte, old bool) (KeyID, ed25519.PublicKey, int64, string) {
	idText, ok := stringValue(append(append([]byte{'"'}, rawID...), '"'))
	if !ok {
		return "", nil, 0, "malformed key id"
	}
	if !strings.HasPrefix(idText, KeyAlgorithm+":") {
		return "", nil, 0, ""
	}
	id, err := ParseKeyID(idText)
	if err != nil {
		return "", nil, 0, "invalid key id " + quoteShort(idText)
	}
	if len(val) == 0 || val[0] != '{' {
		return "", nil, 0, string(id) + " is not an object"
	}
	keyText, _ := memberValue(val, "key")
	b64, ok := stringValue(keyText)
	if !ok {
		return "", nil, 0, string(id) + " has no key"
	}
	pub, err := DecodeBase64(b64)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return "", nil, 0, string(id) + " is not base64 of a 32-byte ed25519 key"
	}
	var expired int64
	if old {
		ts, _ := memberValue(val, "expired_ts")
		if expired, ok = intValue(ts); !ok {
			return "", nil, 0, string(id) + " has no integer expired_ts"
		}
	}
	return id, ed25519.PublicKey(pub), expired, ""
}

// CheckNotarySignature checks that the key document raw (as relayed by a
// notary) carries a valid signature by notary with at least one of the
// notary's pinned keys. Signatures with other key ids are ignored; a
// signature with a pinned key id that does not verify is an error. Errors
// are *[Error] of kind KindBadSignature or KindBadKeyDocument.
func CheckNotarySignature(raw []byte, notary string, keys map[KeyID]ed25519.PublicKey) error {
	canon, err := Canonicalize(nil, raw)
	if err != nil {
		return newError(KindBadKeyDocument, err, "Notary answer from %s is not valid JSON", quoteShort(notary))
	}
	return checkNotaryCanonical(canon, notary, keys)
}

func checkNotaryCanonical(canon []byte, notary string, keys map[KeyID]ed25519.PublicKey) error {
	msg, err := stripSigned(make([]byte, 0, len(canon)), canon)
	if err != nil {
		return err
	}
	sigs, _ := memberValue(canon, "signatures")
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		if _, err := findSignature(sigs, notary, id); err != nil {
			continue // not signed with this pinned key
		}
		if err := verifySig(sigs, msg, notary, id, keys[id]); err != nil {
			return err
		}
		return nil
	}
	return newError(KindBadSignature, nil, "Key document is not signed by notary %s with a trusted key", quoteShort(notary))
}

// ParseNotaryResponse reads a notary's answer to a key query
// ({"server_keys": [...]}, the body of POST or GET /_matrix/key/v2/query)
// and returns the documents for server that carry both the notary's
// signature by one of notaryKeys and server's own self-signatures, newest
// valid_until_ts first. Documents for other servers are ignored. With none
// acceptable it returns an *[Error] saying why the last one failed.
func ParseNotaryResponse(raw []byte, notary string, notaryKeys map[KeyID]ed25519.PublicKey, server string, now time.Time) ([]*ServerKeys, error) {
	canon, err := Canonicalize(nil, raw)
	if err != nil {
		return nil, newError(KindBadKeyDocument, err, "Notary answer from %s is not valid JSON", quoteShort(notary))
	}
	list, ok := memberValue(canon, "server_keys")
	if !ok || list[0] != '[' {
		return nil, newError(KindBadKeyDocument, nil, "Notary answer from %s has no server_keys list", quoteShort(notary))
	}
	var out []*ServerKeys
	var last error = newError(KindBadKeyDocument, nil, "Notary %s has no keys for %s", quoteShort(notary), quoteShort(server))
	eachElement(list, func(doc []byte) bool {
		if len(doc) == 0 || doc[0] != '{' {
			return true
		}
		if name, _ := memberValue(doc, "server_name"); !stringEquals(name, server) {
			return true // another server's keys, or no name at all
		}
		if len(doc) > MaxKeyDocumentSize {
			last = badDoc(server, nil, "larger than %d bytes", MaxKeyDocumentSize)
			return true
		}
		if err := checkNotaryCanonical(doc, notary, notaryKeys); err != nil {
			last = err
			return true
		}
		k, err := parseCanonicalKeys(slices.Clone(doc), server, now)
		if err != nil {
			last = err
			return true
		}
		out = append(out, k)
		return len(out) < MaxKeysPerDocument
	})
	if len(out) == 0 {
		return nil, last
	}
	slices.SortStableFunc(out, func(a, b *ServerKeys) int { return b.ValidUntil.Compare(a.ValidUntil) })
	return out, nil
}
