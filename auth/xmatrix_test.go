package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// testSig is base64 of a 64-byte signature (the value does not matter to
// the parser).
const testSig = "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"

func TestParseXMatrix(t *testing.T) {
	t.Parallel()
	full := XMatrix{Origin: "origin.example", Destination: "dest.example", Key: "ed25519:a_1"}
	noDest := XMatrix{Origin: "origin.example", Key: "ed25519:a_1"}
	withPort := XMatrix{Origin: "origin.example:8448", Destination: "[::1]:8448", Key: "ed25519:a_1"}
	tests := []struct {
		name   string
		header string
		want   XMatrix
		kind   Kind // KindNone: must parse
		reason string
	}{
		// Valid variants.
		{"canonical", `X-Matrix origin="origin.example",destination="dest.example",key="ed25519:a_1",sig="` + testSig + `"`, full, KindNone, ""},
		{"no destination", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `"`, noDest, KindNone, ""},
		{"scheme lower case", `x-matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `"`, noDest, KindNone, ""},
		{"scheme upper case", `X-MATRIX origin="origin.example",key="ed25519:a_1",sig="` + testSig + `"`, noDest, KindNone, ""},
		{"several spaces after scheme", `X-Matrix    origin="origin.example",key="ed25519:a_1",sig="` + testSig + `"`, noDest, KindNone, ""},
		{"names in any case", `X-Matrix Origin="origin.example",DESTINATION="dest.example",Key="ed25519:a_1",SIG="` + testSig + `"`, full, KindNone, ""},
		{"any order (Dendrite)", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `",destination="dest.example"`, full, KindNone, ""},
		{"spaces around commas", `X-Matrix origin="origin.example" , destination="dest.example" ,key="ed25519:a_1",  sig="` + testSig + `"`, full, KindNone, ""},
		{"tabs around commas", "X-Matrix origin=\"origin.example\"\t,\tdestination=\"dest.example\",key=\"ed25519:a_1\",sig=\"" + testSig + "\"", full, KindNone, ""},
		{"spaces around =", `X-Matrix origin = "origin.example",destination= "dest.example",key ="ed25519:a_1",sig="` + testSig + `"`, full, KindNone, ""},
		{"unquoted values with colons", `X-Matrix origin=origin.example:8448,destination=[::1]:8448,key=ed25519:a_1,sig=` + testSig, withPort, KindNone, ""},
		{"unquoted token values", `X-Matrix origin=origin.example,key="ed25519:a_1",sig="` + testSig + `"`, noDest, KindNone, ""},
		{"backslash escapes", `X-Matrix origin="origin\.example",destination="dest.exampl\e",key="ed25519:a\_1",sig="` + testSig + `"`, full, KindNone, ""},
		{"signature alias", `X-Matrix origin="origin.example",key="ed25519:a_1",signature="` + testSig + `"`, noDest, KindNone, ""},
		{"padded sig", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `=="`, noDest, KindNone, ""},
		{"unknown parameters ignored", `X-Matrix origin="origin.example",foo="bar, baz",key="ed25519:a_1",x=1,sig="` + testSig + `"`, noDest, KindNone, ""},
		{"unknown parameter twice", `X-Matrix foo=1,origin="origin.example",foo=2,key="ed25519:a_1",sig="` + testSig + `"`, noDest, KindNone, ""},
		{"trailing whitespace", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `"  `, noDest, KindNone, ""},
		{"comma inside quoted unknown", `X-Matrix note="a,b=c",origin="origin.example",key="ed25519:a_1",sig="` + testSig + `"`, noDest, KindNone, ""},

		// Malformed.
		{"other scheme", `Bearer abc`, XMatrix{}, KindMalformedHeader, "not an X-Matrix header"},
		{"scheme glued to params", `X-Matrixorigin="origin.example"`, XMatrix{}, KindMalformedHeader, "not an X-Matrix header"},
		{"tab after scheme", "X-Matrix\torigin=\"origin.example\",key=\"ed25519:a_1\",sig=\"" + testSig + "\"", XMatrix{}, KindMalformedHeader, "followed by a space"},
		{"scheme only", `X-Matrix`, XMatrix{}, KindMalformedHeader, "followed by a space"},
		{"scheme and space only", `X-Matrix `, XMatrix{}, KindMalformedHeader, "no parameters"},
		{"missing origin", `X-Matrix key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "missing origin"},
		{"missing key", `X-Matrix origin="origin.example",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "missing key"},
		{"missing sig", `X-Matrix origin="origin.example",key="ed25519:a_1"`, XMatrix{}, KindMalformedHeader, "missing sig"},
		{"two origins", `X-Matrix origin="origin.example",origin="evil.example",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, `"origin" given twice`},
		{"two origins, different case", `X-Matrix origin="origin.example",ORIGIN="evil.example",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "given twice"},
		{"sig and signature", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `",signature="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "given twice"},
		{"two destinations", `X-Matrix origin="o.example",destination="a.example",destination="b.example",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "given twice"},
		{"empty origin", `X-Matrix origin="",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "empty value"},
		{"empty unquoted value", `X-Matrix origin=,key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "empty value"},
		{"no =", `X-Matrix origin,key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "has no value"},
		{"empty list element", `X-Matrix origin="origin.example",,key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "empty parameter"},
		{"trailing comma", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `",`, XMatrix{}, KindMalformedHeader, "empty parameter"},
		{"leading comma", `X-Matrix ,origin="origin.example",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "expected a parameter name"},
		{"garbage between params", `X-Matrix origin="origin.example" key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "expected ','"},
		{"unterminated quote", `X-Matrix origin="origin.example,key="ed25519:a_1",sig="` + testSig, XMatrix{}, KindMalformedHeader, ""},
		{"unterminated escape", `X-Matrix origin="origin.example\`, XMatrix{}, KindMalformedHeader, "unterminated"},
		{"invalid origin", `X-Matrix origin="origin example",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "origin is not a valid server name"},
		{"origin with bad port", `X-Matrix origin="origin.example:99999",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "origin is not a valid server name"},
		{"invalid destination", `X-Matrix origin="o.example",destination="a/b",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "destination is not a valid server name"},
		{"non-ed25519 key", `X-Matrix origin="origin.example",key="curve25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "key is not an ed25519 key id"},
		{"bad key version", `X-Matrix origin="origin.example",key="ed25519:a-1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "key is not an ed25519 key id"},
		{"sig not base64", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="!!!!"`, XMatrix{}, KindMalformedHeader, "sig is not"},
		{"sig too short", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig[:40] + `"`, XMatrix{}, KindMalformedHeader, "sig is not"},
		{"sig too long", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `AAAA"`, XMatrix{}, KindMalformedHeader, "sig is not"},
		{"non-ASCII", `X-Matrix origin="orïgin.example",key="ed25519:a_1",sig="` + testSig + `"`, XMatrix{}, KindMalformedHeader, "non-ASCII"},
		{"control character", "X-Matrix origin=\"origin.example\"\r\n,key=\"ed25519:a_1\",sig=\"" + testSig + "\"", XMatrix{}, KindMalformedHeader, "control character"},
		{"NUL", "X-Matrix origin=\"origin.example\x00\",key=\"ed25519:a_1\",sig=\"" + testSig + "\"", XMatrix{}, KindMalformedHeader, "control character"},
		{"too long", `X-Matrix origin="origin.example",key="ed25519:a_1",sig="` + testSig + `",pad="` + strings.Repeat("a", MaxAuthorizationLength) + `"`, XMatrix{}, KindMalformedHeader, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseXMatrix(tt.header)
			if tt.kind == KindNone {
				if err != nil {
					t.Fatalf("ParseXMatrix: %v", err)
				}
				if got.Origin != tt.want.Origin || got.Destination != tt.want.Destination || got.Key != tt.want.Key {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
				if EncodeBase64(got.Sig) != testSig {
					t.Fatalf("sig %s", EncodeBase64(got.Sig))
				}
				// What we emit parses back to the same value.
				again, err := ParseXMatrix(got.String())
				if err != nil || again.String() != got.String() {
					t.Fatalf("round trip of %s: %+v, %v", got, again, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Kind != tt.kind || !strings.Contains(e.Msg, tt.reason) {
				t.Fatalf("ParseXMatrix = %+v, %v; want kind %s with %q", got, err, tt.kind, tt.reason)
			}
			if len(e.Msg) > 200 {
				t.Fatalf("message too long for a remote: %d bytes", len(e.Msg))
			}
		})
	}
}

func TestParseAuthorization(t *testing.T) {
	t.Parallel()
	h := func(origin, dest string) string {
		return (XMatrix{Origin: origin, Destination: dest, Key: "ed25519:k", Sig: make([]byte, 64)}).String()
	}
	tests := []struct {
		name   string
		values []string
		n      int
		kind   Kind
	}{
		{"none", nil, 0, KindMissingHeader},
		{"other schemes only", []string{"Bearer x", "Basic y"}, 0, KindMissingHeader},
		{"one", []string{h("a.example", "b.example")}, 1, KindNone},
		{"other schemes ignored", []string{"Bearer x", h("a.example", "b.example")}, 1, KindNone},
		{"two keys", []string{h("a.example", "b.example"), h("a.example", "b.example")}, 2, KindNone},
		{"origins disagree", []string{h("a.example", "b.example"), h("evil.example", "b.example")}, 0, KindMalformedHeader},
		{"destinations disagree", []string{h("a.example", "b.example"), h("a.example", "")}, 0, KindMalformedHeader},
		{"one malformed", []string{h("a.example", "b.example"), "X-Matrix origin=a.example"}, 0, KindMalformedHeader},
		{"too many", slicesRepeat(h("a.example", "b.example"), MaxXMatrixHeaders+1), 0, KindMalformedHeader},
		{"at the limit", slicesRepeat(h("a.example", "b.example"), MaxXMatrixHeaders), MaxXMatrixHeaders, KindNone},
	}
	for _, tt := range tests {
		got, err := ParseAuthorization(tt.values)
		if KindOf(err) != tt.kind || len(got) != tt.n {
			t.Errorf("%s: %d headers, %v (kind %s); want %d, kind %s", tt.name, len(got), err, KindOf(err), tt.n, tt.kind)
		}
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestXMatrixString(t *testing.T) {
	t.Parallel()
	x := XMatrix{Origin: "o.example", Destination: "d.example", Key: "ed25519:1", Sig: bytes.Repeat([]byte{0xff}, 64)}
	want := `X-Matrix origin="o.example",destination="d.example",key="ed25519:1",sig="` + EncodeBase64(x.Sig) + `"`
	if got := x.String(); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	x.Destination = ""
	if got := x.String(); strings.Contains(got, "destination") {
		t.Fatalf("empty destination written: %s", got)
	}
	// Values that cannot be in a header never produce CR or LF.
	x.Origin = "evil\r\nInjected: yes\"\\"
	b, err := x.AppendText(nil)
	if err == nil || bytes.ContainsAny(b, "\r\n") {
		t.Fatalf("AppendText = %q, %v", b, err)
	}
	if s := x.String(); strings.ContainsAny(s, "\r\n") || !strings.Contains(s, `\"\\`) {
		t.Fatalf("String = %q", s)
	}
}

func TestSignVerifyRequest(t *testing.T) {
	t.Parallel()
	key := specKey(t)
	other, err := GenerateSigningKey("other")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"pdus":[], "origin":"a.example", "origin_server_ts": 1}`)
	uri := "/_matrix/federation/v1/send/1?x=%2F%zz;y"
	x, err := SignRequest(key, "PUT", uri, "a.example", "b.example", body)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseXMatrix(x.String())
	if err != nil {
		t.Fatal(err)
	}
	noDest := parsed
	noDest.Destination = ""
	tests := []struct {
		name                 string
		x                    XMatrix
		method, uri, ourName string
		body                 []byte
		pub                  []byte
		kind                 Kind
	}{
		{"valid", parsed, "PUT", uri, "b.example", body, key.Public(), KindNone},
		{"body re-encoded in transit", parsed, "PUT", uri, "b.example", []byte(`{"origin_server_ts":1,"origin":"a.example","pdus":[]}`), key.Public(), KindNone},
		{"no destination in header", noDest, "PUT", uri, "b.example", body, key.Public(), KindNone},
		{"destination is not us", parsed, "PUT", uri, "c.example", body, key.Public(), KindDestinationMismatch},
		{"signed for b, header omits it, we are c", noDest, "PUT", uri, "c.example", body, key.Public(), KindBadSignature},
		{"method changed", parsed, "POST", uri, "b.example", body, key.Public(), KindBadSignature},
		{"uri re-encoded", parsed, "PUT", "/_matrix/federation/v1/send/1?x=/%zz;y", "b.example", body, key.Public(), KindBadSignature},
		{"body value changed", parsed, "PUT", uri, "b.example", []byte(`{"pdus":[],"origin":"a.example","origin_server_ts":2}`), key.Public(), KindBadSignature},
		{"body dropped", parsed, "PUT", uri, "b.example", nil, key.Public(), KindBadSignature},
		{"body not JSON", parsed, "PUT", uri, "b.example", []byte(`{"pdus":`), key.Public(), KindBadBody},
		{"body duplicate key", parsed, "PUT", uri, "b.example", []byte(`{"a":1,"a":2}`), key.Public(), KindBadBody},
		{"wrong key", parsed, "PUT", uri, "b.example", body, other.Public(), KindBadSignature},
		{"no key", parsed, "PUT", uri, "b.example", body, nil, KindUnknownKey},
		{"uri not UTF-8", parsed, "PUT", "/\xff", "b.example", body, key.Public(), KindBadSignature},
	}
	for _, tt := range tests {
		err := VerifyRequest(tt.x, tt.method, tt.uri, tt.ourName, tt.body, tt.pub)
		if KindOf(err) != tt.kind {
			t.Errorf("%s: %v (kind %s), want kind %s", tt.name, err, KindOf(err), tt.kind)
		}
	}
}

func TestRequestLenientContent(t *testing.T) {
	t.Parallel()
	key := specKey(t)
	// An old-room event with an integer beyond 2^53 inside /send content.
	body := []byte(`{"pdus":[{"content":{"n":123456789012345678901234567890}}]}`)
	x, err := SignRequest(key, "PUT", "/_matrix/federation/v1/send/1", "a.example", "b.example", body)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyRequest(x, "PUT", "/_matrix/federation/v1/send/1", "b.example", body, key.Public()); err != nil {
		t.Fatal(err)
	}
	// Floats stay refused.
	if err := VerifyRequest(x, "PUT", "/_matrix/federation/v1/send/1", "b.example", []byte(`{"n":1.5}`), key.Public()); KindOf(err) != KindBadBody {
		t.Fatalf("float body: %v", err)
	}
}

func TestSignRequestRejects(t *testing.T) {
	t.Parallel()
	key := specKey(t)
	for _, tt := range []struct {
		origin, dest string
		body         []byte
		kind         Kind
	}{
		{"a b", "b.example", nil, KindMalformedHeader},
		{"a.example", "b\r\n.example", nil, KindMalformedHeader},
		{"a.example", "b.example", []byte("{"), KindBadBody},
	} {
		if _, err := SignRequest(key, "GET", "/x", tt.origin, tt.dest, tt.body); KindOf(err) != tt.kind {
			t.Errorf("SignRequest(%q, %q, %q): %v, want %s", tt.origin, tt.dest, tt.body, err, tt.kind)
		}
	}
	if _, err := SignRequest(SigningKey{ID: "ed25519:x"}, "GET", "/x", "a.example", "b.example", nil); err == nil {
		t.Error("signed with an empty key")
	}
}

func TestVerifyRequestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race")
	}
	key := specKey(t)
	body := sendBody(t, 2<<10)
	x, err := SignRequest(key, "PUT", "/_matrix/federation/v1/send/1", "a.example", "b.example", body)
	if err != nil {
		t.Fatal(err)
	}
	verify := func() {
		if err := VerifyRequest(x, "PUT", "/_matrix/federation/v1/send/1", "b.example", body, key.Public()); err != nil {
			t.Fatal(err)
		}
	}
	verify()
	if n := testing.AllocsPerRun(100, verify); n > 0 {
		t.Errorf("VerifyRequest allocates %v times per call", n)
	}
}

// TestVerifyRequestContent: verifying pre-canonicalised content gives the
// same answers as verifying the raw body, and altered content fails.
func TestVerifyRequestContent(t *testing.T) {
	key, err := GenerateSigningKey("content_1")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{ "pdus": [], "origin": "origin.example", "big": 12345678901234567890, "origin_server_ts": 1 }`)
	x, err := SignRequest(key, "PUT", "/_matrix/federation/v1/send/1", "origin.example", "dest.example", body)
	if err != nil {
		t.Fatal(err)
	}
	content, err := CanonicalizeContent(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyRequest(x, "PUT", "/_matrix/federation/v1/send/1", "dest.example", body, key.Public()); err != nil {
		t.Fatalf("raw body: %v", err)
	}
	if err := VerifyRequestContent(x, "PUT", "/_matrix/federation/v1/send/1", "dest.example", content, key.Public()); err != nil {
		t.Fatalf("content: %v", err)
	}
	altered := append([]byte(nil), content...)
	altered[len(altered)-2] = '2'
	if err := VerifyRequestContent(x, "PUT", "/_matrix/federation/v1/send/1", "dest.example", altered, key.Public()); KindOf(err) != KindBadSignature {
		t.Fatalf("altered content: %v", err)
	}
	if err := VerifyRequestContent(x, "PUT", "/_matrix/federation/v1/send/1", "dest.example", nil, key.Public()); KindOf(err) != KindBadSignature {
		t.Fatalf("missing content: %v", err)
	}
	if _, err := CanonicalizeContent(nil, []byte(`{"a":1.5}`)); err == nil {
		t.Fatal("float accepted")
	}
}
