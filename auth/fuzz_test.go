package auth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for every parser of remote input: request bodies (canonical
// JSON), the X-Matrix header and key documents / notary answers. Seed
// corpora live in testdata/fuzz/<FuzzName>/ beside the f.Add seeds.

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"b":"2","a":"1"}`, `{"a":-0,"b":1e10}`, `{"a":"\u65E5"}`, `{"本":2,"日":1}`,
		` { "a" : [ 1 , 2.0 , -0.0e3 ] } `, `"\ud83d\ude00\u0000\u001F\/"`, `{"a":1,"a":2}`, `{"\u0061":1,"a":2}`,
		`"\ud800"`, `9007199254740992`, `12345678901234567890`, `1.5`, `1e400`, `[[[[[[[[]]]]]]]]`,
		`{"\n":1,"#":2,"😀":3,"\uffff":4}`, "\"\xff\"", `{"pdus":[{"content":{"body":"<b>hi</b> & \u2028"}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonicalize(nil, in)
		lenient, lerr := canonicalizeLenient(nil, in)
		if err != nil {
			var je *JSONError
			if !errors.As(err, &je) || je.Offset < 0 || je.Offset > len(in) {
				t.Fatalf("error %v has no offset within the input", err)
			}
			if IsCanonical(in) {
				t.Fatalf("IsCanonical accepts what Canonicalize refuses: %v", err)
			}
			if lerr == nil {
				checkCanonicalOutput(t, &Canonicalizer{Lenient: true}, in, lenient)
			}
			return
		}
		if lerr != nil || !bytes.Equal(out, lenient) {
			t.Fatalf("lenient mode disagrees on strict input: %q, %v", lenient, lerr)
		}
		checkCanonicalOutput(t, &Canonicalizer{}, in, out)
		// encoding/json (with UseNumber) reads the same value from both.
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		if a, b := decodeAny(t, in), decodeAny(t, out); !sameJSON(a, b) {
			t.Fatalf("value changed:\n in %q\nout %q", in, out)
		}
	})
}

// checkCanonicalOutput checks what c produced from in: canonical, and
// canonicalising it again changes nothing.
func checkCanonicalOutput(t *testing.T, c *Canonicalizer, in, out []byte) {
	t.Helper()
	if !c.IsCanonical(out) {
		t.Fatalf("output is not canonical: %q", out)
	}
	again, err := c.Canonicalize(nil, out)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("not idempotent: %q -> %q, %v", out, again, err)
	}
	if c.IsCanonical(in) != bytes.Equal(in, out) {
		t.Fatalf("IsCanonical(%q) wrong", in)
	}
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("encoding/json cannot read %q: %v", b, err)
	}
	return v
}

// sameJSON compares decoded JSON values, numbers by exact value.
func sameJSON(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, v := range a {
			if w, ok := bm[k]; !ok || !sameJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !sameJSON(a[i], bs[i]) {
				return false
			}
		}
		return true
	case json.Number:
		bn, ok := b.(json.Number)
		if !ok {
			return false
		}
		x, ok1 := ratOf(string(a))
		y, ok2 := ratOf(string(bn))
		return ok1 && ok2 && x.Cmp(y) == 0
	default:
		return a == b
	}
}

// ratOf is the exact value of a JSON number. A zero mantissa is zero
// whatever the exponent (big.Rat refuses exponents beyond int range).
func ratOf(n string) (*big.Rat, bool) {
	mantissa, _, _ := strings.Cut(strings.ToLower(n), "e")
	if strings.Trim(mantissa, "-0.") == "" {
		return new(big.Rat), true
	}
	return new(big.Rat).SetString(n)
}

func FuzzParseXMatrix(f *testing.F) {
	for _, s := range []string{
		`X-Matrix origin="origin.example",destination="dest.example",key="ed25519:a_1",sig="` + testSig + `"`,
		`x-matrix  Origin=origin.example:8448 , KEY = ed25519:a_1,signature=` + testSig,
		`X-Matrix origin="o\.example",key="ed25519:1",sig="` + testSig + `",destination="[::1]:8448"`,
		`X-Matrix origin="a",origin="b",key="ed25519:1",sig="` + testSig + `"`,
		`X-Matrix origin="a.example",key="ed25519:1",sig="` + testSig + `",`,
		`X-Matrix foo="a,b\"c",origin=a.example,key=ed25519:1,sig=` + testSig + `==`,
		`Bearer x`, `X-Matrix`, `X-Matrix `, "X-Matrix origin=\"\x00\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		x, err := ParseXMatrix(header)
		if _, aerr := ParseAuthorization([]string{header, "Bearer y", header}); (aerr == nil) != (err == nil) && IsXMatrix(header) {
			t.Fatalf("ParseAuthorization disagrees: %v vs %v", aerr, err)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindMalformedHeader || len(e.Msg) > 200 {
				t.Fatalf("error %v", err)
			}
			return
		}
		text, aerr := x.AppendText(nil)
		if aerr != nil {
			t.Fatalf("parsed value cannot be written back: %v", aerr)
		}
		y, err := ParseXMatrix(string(text))
		if err != nil || y.Origin != x.Origin || y.Destination != x.Destination || y.Key != x.Key || !bytes.Equal(y.Sig, x.Sig) {
			t.Fatalf("round trip of %q: %+v, %v", text, y, err)
		}
		if y.String() != string(text) {
			t.Fatalf("String %q, AppendText %q", y.String(), text)
		}
	})
}

// fuzzKeys are fixed keys so the committed seed corpus stays valid.
func fuzzKeys(tb testing.TB) (origin, notary SigningKey) {
	tb.Helper()
	o, err := NewSigningKey("ed25519:o", bytes.Repeat([]byte{1}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	n, err := NewSigningKey("ed25519:n", bytes.Repeat([]byte{2}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return o, n
}

// fuzzKeySeeds are key documents and notary answers signed with fuzzKeys.
func fuzzKeySeeds(tb testing.TB) [][]byte {
	tb.Helper()
	o, n := fuzzKeys(tb)
	doc, err := BuildKeyDocument("o.example", []SigningKey{o}, []OldVerifyKey{{ID: "ed25519:old", Key: n.Public(), ExpiredTS: 1}}, testNow.Add(time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	relayed, err := AddSignature(doc, "n.example", n)
	if err != nil {
		tb.Fatal(err)
	}
	return [][]byte{
		doc,
		[]byte(`{"server_keys":[` + string(relayed) + `]}`),
		[]byte(`{"server_keys":[` + string(doc) + `,{"server_name":"o.example"},5]}`),
		[]byte(strings.Replace(string(doc), `"valid_until_ts":`, ` "valid_until_ts" : `, 1)),
		[]byte(`{"server_name":"o.example","verify_keys":{"ed25519:x":{"key":"AAAA"}},"valid_until_ts":1,"signatures":{}}`),
		[]byte(`{"server_name":"o.example","verify_keys":{},"old_verify_keys":{"ed25519:o":{}},"signatures":5}`),
	}
}

func FuzzParseServerKeys(f *testing.F) {
	for _, s := range fuzzKeySeeds(f) {
		f.Add(s)
	}
	o, n := fuzzKeys(f)
	notaryKeys := map[KeyID]ed25519.PublicKey{n.ID: n.Public()}
	f.Fuzz(func(t *testing.T, raw []byte) {
		k, err := ParseServerKeys(raw, "o.example", testNow)
		if err != nil {
			if kind := KindOf(err); kind != KindBadKeyDocument && kind != KindBadSignature {
				t.Fatalf("error kind %s: %v", kind, err)
			}
		} else {
			if len(k.VerifyKeys) == 0 || len(k.VerifyKeys)+len(k.OldVerifyKeys) > MaxKeysPerDocument {
				t.Fatalf("accepted %d verify keys", len(k.VerifyKeys))
			}
			again, err := ParseServerKeys(k.Raw, "o.example", testNow)
			if err != nil || len(again.VerifyKeys) != len(k.VerifyKeys) || !again.ValidUntil.Equal(k.ValidUntil) {
				t.Fatalf("Raw does not parse back: %v", err)
			}
			if pub, ok := k.VerifyKeys[o.ID]; ok && !pub.Equal(o.Public()) {
				t.Fatalf("accepted a document self-signed by a different key for %s", o.ID)
			}
		}
		docs, err := ParseNotaryResponse(raw, "n.example", notaryKeys, "o.example", testNow)
		if err == nil {
			for _, d := range docs {
				if CheckNotarySignature(d.Raw, "n.example", notaryKeys) != nil {
					t.Fatal("accepted a document the notary did not sign")
				}
			}
		}
	})
}
