package auth

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"
)

var testNow = time.UnixMilli(1_700_000_000_000).UTC()

func mustKey(t testing.TB, version string) SigningKey {
	t.Helper()
	k, err := GenerateSigningKey(version)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signedDoc signs an arbitrary document object with keys as entity.
func signedDoc(t testing.TB, doc map[string]any, entity string, keys ...SigningKey) []byte {
	t.Helper()
	raw := mustMarshal(t, doc)
	for _, k := range keys {
		var err error
		if raw, err = SignJSON(raw, entity, k); err != nil {
			t.Fatal(err)
		}
	}
	return raw
}

func verifyKeysOf(keys ...SigningKey) map[string]any {
	m := map[string]any{}
	for _, k := range keys {
		m[string(k.ID)] = map[string]any{"key": EncodeBase64(k.Public())}
	}
	return m
}

func TestBuildKeyDocument(t *testing.T) {
	t.Parallel()
	k1, k2 := mustKey(t, "a"), mustKey(t, "b")
	retired := mustKey(t, "old")
	validUntil := testNow.Add(24 * time.Hour)
	raw, err := BuildKeyDocument("gw.example.org", []SigningKey{k1, k2},
		[]OldVerifyKey{{ID: retired.ID, Key: retired.Public(), ExpiredTS: 1_600_000_000_000}}, validUntil)
	if err != nil {
		t.Fatal(err)
	}
	if !IsCanonical(raw) {
		t.Fatalf("not canonical: %s", raw)
	}
	for _, k := range []SigningKey{k1, k2} {
		if err := VerifyJSON(raw, "gw.example.org", k.ID, k.Public()); err != nil {
			t.Errorf("not signed by %s: %v", k.ID, err)
		}
	}
	if err := VerifyJSON(raw, "gw.example.org", retired.ID, retired.Public()); err == nil {
		t.Error("signed by the retired key")
	}
	keys, err := ParseServerKeys(raw, "gw.example.org", testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.VerifyKeys) != 2 || !keys.VerifyKeys[k1.ID].Equal(k1.Public()) || !keys.VerifyKeys[k2.ID].Equal(k2.Public()) {
		t.Errorf("verify keys %v", keys.VerifyKeys)
	}
	if o := keys.OldVerifyKeys[retired.ID]; !o.Key.Equal(retired.Public()) || o.ExpiredTS != 1_600_000_000_000 || o.ID != retired.ID {
		t.Errorf("old keys %v", keys.OldVerifyKeys)
	}
	if !keys.ValidUntil.Equal(validUntil) || !keys.Checked.Equal(testNow) || string(keys.Raw) != string(raw) {
		t.Errorf("valid until %v, checked %v", keys.ValidUntil, keys.Checked)
	}
	// No old keys: the member is still present, as Synapse writes it.
	raw, err = BuildKeyDocument("gw.example.org", []SigningKey{k1}, nil, validUntil)
	if err != nil || !strings.Contains(string(raw), `"old_verify_keys":{}`) {
		t.Errorf("%s, %v", raw, err)
	}
}

func TestBuildKeyDocumentRejects(t *testing.T) {
	t.Parallel()
	k := mustKey(t, "a")
	many := make([]SigningKey, MaxKeysPerDocument+1)
	for i := range many {
		many[i] = mustKey(t, fmt.Sprintf("k%d", i))
	}
	tests := map[string]struct {
		name string
		keys []SigningKey
		old  []OldVerifyKey
	}{
		"zero valid until":    {"gw.example", []SigningKey{k}, nil},
		"bad server name":     {"gw example", []SigningKey{k}, nil},
		"no keys":             {"gw.example", nil, nil},
		"duplicate key":       {"gw.example", []SigningKey{k, k}, nil},
		"old also current":    {"gw.example", []SigningKey{k}, []OldVerifyKey{{ID: k.ID, Key: k.Public()}}},
		"old key wrong size":  {"gw.example", []SigningKey{k}, []OldVerifyKey{{ID: "ed25519:o", Key: make([]byte, 31)}}},
		"old key bad id":      {"gw.example", []SigningKey{k}, []OldVerifyKey{{ID: "rsa:o", Key: k.Public()}}},
		"public only":         {"gw.example", []SigningKey{{ID: "ed25519:x"}}, nil},
		"bad key id":          {"gw.example", []SigningKey{{ID: "ed25519:", Private: k.Private}}, nil},
		"more than 32 keys":   {"gw.example", many, nil},
		"empty server name":   {"", []SigningKey{k}, nil},
		"server name too odd": {"a..b", []SigningKey{k}, nil},
	}
	for name, tt := range tests {
		validUntil := testNow
		if name == "zero valid until" {
			validUntil = time.Time{}
		}
		if _, err := BuildKeyDocument(tt.name, tt.keys, tt.old, validUntil); KindOf(err) != KindBadKeyDocument {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseServerKeysRejects(t *testing.T) {
	t.Parallel()
	k, other := mustKey(t, "a"), mustKey(t, "b")
	base := func() map[string]any {
		return map[string]any{"server_name": "o.example", "valid_until_ts": testNow.UnixMilli(), "verify_keys": verifyKeysOf(k)}
	}
	with := func(key string, v any) map[string]any {
		d := base()
		if v == nil {
			delete(d, key)
		} else {
			d[key] = v
		}
		return d
	}
	tooMany := map[string]any{}
	for i := 0; i <= MaxKeysPerDocument; i++ {
		tooMany[fmt.Sprintf("ed25519:k%d", i)] = map[string]any{"key": EncodeBase64(k.Public())}
	}
	good := signedDoc(t, base(), "o.example", k)
	tests := []struct {
		name string
		raw  []byte
		kind Kind
		msg  string
	}{
		{"too large", []byte(`{"pad":"` + strings.Repeat("a", MaxKeyDocumentSize) + `"}`), KindBadKeyDocument, "larger than"},
		{"not JSON", []byte(`{"server_name":`), KindBadKeyDocument, "not valid JSON"},
		{"duplicate keys", []byte(`{"server_name":"o.example","server_name":"x"}`), KindBadKeyDocument, "duplicate key"},
		{"not an object", []byte(`["o.example"]`), KindBadKeyDocument, "not a JSON object"},
		{"other server", signedDoc(t, with("server_name", "evil.example"), "evil.example", k), KindBadKeyDocument, "server_name is"},
		{"server name case", signedDoc(t, with("server_name", "O.example"), "O.example", k), KindBadKeyDocument, "server_name is"},
		{"no server name", signedDoc(t, with("server_name", nil), "o.example", k), KindBadKeyDocument, "server_name missing"},
		{"no valid_until_ts", signedDoc(t, with("valid_until_ts", nil), "o.example", k), KindBadKeyDocument, "valid_until_ts missing"},
		{"valid_until_ts string", signedDoc(t, with("valid_until_ts", "1"), "o.example", k), KindBadKeyDocument, "valid_until_ts"},
		{"valid_until_ts negative", signedDoc(t, with("valid_until_ts", -1), "o.example", k), KindBadKeyDocument, "valid_until_ts"},
		{"no verify_keys", signedDoc(t, with("verify_keys", nil), "o.example", k), KindBadKeyDocument, "verify_keys missing"},
		{"verify_keys a list", signedDoc(t, with("verify_keys", []any{}), "o.example", k), KindBadKeyDocument, "verify_keys missing"},
		{"only other algorithms", signedDoc(t, with("verify_keys", map[string]any{"curve25519:x": map[string]any{"key": "AAAA"}}), "o.example", k), KindBadKeyDocument, "no ed25519 key"},
		{"bad key id", signedDoc(t, with("verify_keys", map[string]any{"ed25519:a-b": map[string]any{"key": EncodeBase64(k.Public())}}), "o.example", k), KindBadKeyDocument, "invalid key id"},
		{"key not base64", signedDoc(t, with("verify_keys", map[string]any{string(k.ID): map[string]any{"key": "!!"}}), "o.example", k), KindBadKeyDocument, "not base64"},
		{"key too short", signedDoc(t, with("verify_keys", map[string]any{string(k.ID): map[string]any{"key": "AAAA"}}), "o.example", k), KindBadKeyDocument, "32-byte"},
		{"key missing", signedDoc(t, with("verify_keys", map[string]any{string(k.ID): map[string]any{}}), "o.example", k), KindBadKeyDocument, "has no key"},
		{"key entry not object", signedDoc(t, with("verify_keys", map[string]any{string(k.ID): "x"}), "o.example", k), KindBadKeyDocument, "not an object"},
		{"too many keys", signedDoc(t, with("verify_keys", tooMany), "o.example", k), KindBadKeyDocument, "more than 32 keys"},
		{"old key without expired_ts", signedDoc(t, with("old_verify_keys", map[string]any{"ed25519:o": map[string]any{"key": EncodeBase64(k.Public())}}), "o.example", k), KindBadKeyDocument, "expired_ts"},
		{"old keys a list", signedDoc(t, with("old_verify_keys", []any{}), "o.example", k), KindBadKeyDocument, "old_verify_keys is not an object"},
		{"unsigned", mustMarshal(t, base()), KindBadKeyDocument, "signatures missing"},
		{"signed by another server", signedDoc(t, base(), "x.example", k), KindBadSignature, "not self-signed"},
		{"signed only by an unlisted key", signedDoc(t, base(), "o.example", other), KindBadSignature, "not self-signed"},
		{"listed key did not sign", signedDoc(t, with("verify_keys", verifyKeysOf(k, other)), "o.example", k), KindBadSignature, "not self-signed by its key ed25519:b"},
		{"tampered after signing", []byte(strings.Replace(string(good), `"valid_until_ts":1700000000000`, `"valid_until_ts":1800000000000`, 1)), KindBadSignature, "not self-signed"},
		{"bad signature encoding", []byte(strings.Replace(string(good), `"ed25519:a":"`, `"ed25519:a":"!`, 1)), KindBadSignature, "not self-signed"},
	}
	for _, tt := range tests {
		_, err := ParseServerKeys(tt.raw, "o.example", testNow)
		var e *Error
		if KindOf(err) != tt.kind || !asError(err, &e) || !strings.Contains(e.Msg, tt.msg) {
			t.Errorf("%s: %v (kind %s); want kind %s with %q", tt.name, err, KindOf(err), tt.kind, tt.msg)
		}
	}
	// What is tolerated: extra members, signatures by unlisted keys and by
	// other servers, keys of other algorithms, an unsigned section.
	doc := base()
	doc["verify_keys"].(map[string]any)["curve25519:x"] = map[string]any{"key": "AAAA"}
	doc["unsigned"] = map[string]any{"x": 1}
	doc["future_field"] = []any{1, 2}
	raw := signedDoc(t, doc, "o.example", k, other)
	raw = signedDoc(t, decodeObject(t, raw), "notary.example", other)
	keys, err := ParseServerKeys(raw, "o.example", testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.VerifyKeys) != 1 {
		t.Fatalf("verify keys %v", keys.VerifyKeys)
	}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	*target = e
	return ok
}

func TestServerKeysValidity(t *testing.T) {
	t.Parallel()
	k, old := mustKey(t, "a"), mustKey(t, "old")
	for _, tt := range []struct {
		name       string
		validUntil time.Time
		want       time.Time
	}{
		{"short", testNow.Add(time.Hour), testNow.Add(time.Hour)},
		{"capped at 7 days", testNow.Add(30 * 24 * time.Hour), testNow.Add(MaxKeyValidity)},
		{"already expired", testNow.Add(-time.Hour), testNow.Add(-time.Hour)},
	} {
		raw, err := BuildKeyDocument("o.example", []SigningKey{k}, []OldVerifyKey{{ID: old.ID, Key: old.Public(), ExpiredTS: 1}}, tt.validUntil)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := ParseServerKeys(raw, "o.example", testNow)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys.EffectiveValidUntil(testNow); !got.Equal(tt.want) {
			t.Errorf("%s: effective validity %v, want %v", tt.name, got, tt.want)
		}
		_, err = keys.RequestKey(k.ID, testNow)
		if expired := tt.want.Before(testNow); (err != nil) != expired || (expired && KindOf(err) != KindUnknownKey) {
			t.Errorf("%s: RequestKey: %v", tt.name, err)
		}
		if _, err := keys.RequestKey(old.ID, testNow); KindOf(err) != KindUnknownKey || !strings.Contains(err.Error(), "retired") {
			t.Errorf("%s: old key usable for requests: %v", tt.name, err)
		}
		if _, err := keys.RequestKey("ed25519:nope", testNow); KindOf(err) != KindUnknownKey {
			t.Errorf("%s: unknown key: %v", tt.name, err)
		}
	}
}

func TestNotarySignatures(t *testing.T) {
	t.Parallel()
	origin, notary, unpinned := mustKey(t, "o"), mustKey(t, "n"), mustKey(t, "u")
	pinned := map[KeyID]ed25519.PublicKey{notary.ID: notary.Public()}
	doc, err := BuildKeyDocument("o.example", []SigningKey{origin}, nil, testNow.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckNotarySignature(doc, "notary.example", pinned); KindOf(err) != KindBadSignature {
		t.Errorf("unsigned by the notary: %v", err)
	}
	relayed, err := AddSignature(doc, "notary.example", notary)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckNotarySignature(relayed, "notary.example", pinned); err != nil {
		t.Errorf("notary-signed: %v", err)
	}
	if _, err := ParseServerKeys(relayed, "o.example", testNow); err != nil {
		t.Errorf("the origin's signature did not survive: %v", err)
	}
	// A second notary signature keeps the first.
	twice, err := AddSignature(relayed, "other.example", unpinned)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckNotarySignature(twice, "notary.example", pinned); err != nil {
		t.Errorf("second signature broke the first: %v", err)
	}
	byUnpinned, err := AddSignature(doc, "notary.example", unpinned)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckNotarySignature(byUnpinned, "notary.example", pinned); KindOf(err) != KindBadSignature {
		t.Errorf("signed with an unpinned key: %v", err)
	}
	forged := strings.Replace(string(relayed), `"ed25519:n":"`, `"ed25519:n":"A`, 1)
	if err := CheckNotarySignature([]byte(forged), "notary.example", pinned); KindOf(err) != KindBadSignature {
		t.Errorf("forged signature: %v", err)
	}
}

func TestParseNotaryResponse(t *testing.T) {
	t.Parallel()
	origin, notary, evil := mustKey(t, "o"), mustKey(t, "n"), mustKey(t, "e")
	pinned := map[KeyID]ed25519.PublicKey{notary.ID: notary.Public()}
	build := func(server string, key SigningKey, validUntil time.Time, notaryKey SigningKey) []byte {
		doc, err := BuildKeyDocument(server, []SigningKey{key}, nil, validUntil)
		if err != nil {
			t.Fatal(err)
		}
		if doc, err = AddSignature(doc, "notary.example", notaryKey); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	older := build("o.example", origin, testNow.Add(time.Hour), notary)
	newer := build("o.example", origin, testNow.Add(2*time.Hour), notary)
	otherServer := build("x.example", evil, testNow.Add(time.Hour), notary)
	unvouched := build("o.example", evil, testNow.Add(3*time.Hour), evil)
	resp := func(docs ...[]byte) []byte {
		return []byte(`{"server_keys":[` + strings.Join(func() []string {
			s := make([]string, len(docs))
			for i, d := range docs {
				s[i] = string(d)
			}
			return s
		}(), ",") + `]}`)
	}
	got, err := ParseNotaryResponse(resp(otherServer, older, unvouched, newer, []byte(`5`), []byte(`{"server_name":5}`)), "notary.example", pinned, "o.example", testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].ValidUntil.Equal(testNow.Add(2*time.Hour)) || !got[1].ValidUntil.Equal(testNow.Add(time.Hour)) {
		t.Fatalf("got %d documents", len(got))
	}
	for _, tt := range []struct {
		name string
		raw  []byte
		kind Kind
	}{
		{"empty list", resp(), KindBadKeyDocument},
		{"only other servers", resp(otherServer), KindBadKeyDocument},
		{"not vouched by the notary", resp(unvouched), KindBadSignature},
		{"no list", []byte(`{"server_keys":{}}`), KindBadKeyDocument},
		{"not JSON", []byte(`{`), KindBadKeyDocument},
	} {
		if _, err := ParseNotaryResponse(tt.raw, "notary.example", pinned, "o.example", testNow); KindOf(err) != tt.kind {
			t.Errorf("%s: %v, want kind %s", tt.name, err, tt.kind)
		}
	}
}
