package auth

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// specVectors mirrors testdata/spec/test-vectors/appendices-test-vectors.json.
type specVectors struct {
	UnpaddedBase64 []struct {
		Input, Output string
	} `json:"unpadded_base64"`
	CanonicalJSON []struct {
		Input, Canonical string
	} `json:"canonical_json"`
	SigningKey struct {
		Seed       string `json:"seed_unpadded_base64"`
		ServerName string `json:"server_name"`
		KeyID      string `json:"key_id"`
		Public     string `json:"public_key_unpadded_base64"`
	} `json:"signing_key"`
	JSONSigning []struct {
		Input    json.RawMessage
		Expected json.RawMessage
	} `json:"json_signing"`
	EventSigning []struct {
		Input    json.RawMessage
		Expected json.RawMessage
	} `json:"event_signing"`
}

type xmatrixVectors struct {
	Requests []struct {
		SignedObject struct {
			Method      string
			URI         string
			Origin      string
			Destination string
			Content     json.RawMessage
		} `json:"signed_object"`
		Canonical     string
		Sig           string
		Authorization string
	}
}

// specDir is the repository's copy of the spec data (tests read only files
// inside the repository).
var specDir = filepath.Join("..", "testdata", "spec", "test-vectors")

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(specDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func loadSpecVectors(t testing.TB) specVectors {
	t.Helper()
	var v specVectors
	loadJSON(t, "appendices-test-vectors.json", &v)
	return v
}

// specKey is the spec's test signing key, "ed25519:1" of server "domain".
func specKey(t testing.TB) SigningKey {
	t.Helper()
	seed, err := DecodeBase64(specSeed)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewSigningKey("ed25519:1", seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSpecVectorsBase64(t *testing.T) {
	t.Parallel()
	for _, v := range loadSpecVectors(t).UnpaddedBase64 {
		if got := EncodeBase64([]byte(v.Input)); got != v.Output {
			t.Errorf("EncodeBase64(%q) = %q, want %q", v.Input, got, v.Output)
		}
		if got, err := DecodeBase64(v.Output); err != nil || string(got) != v.Input {
			t.Errorf("DecodeBase64(%q) = %q, %v", v.Output, got, err)
		}
	}
}

func TestSpecVectorsCanonicalJSON(t *testing.T) {
	t.Parallel()
	vs := loadSpecVectors(t)
	if len(vs.CanonicalJSON) < 10 {
		t.Fatalf("only %d canonical JSON vectors loaded", len(vs.CanonicalJSON))
	}
	for _, v := range vs.CanonicalJSON {
		got, err := Canonicalize(nil, []byte(v.Input))
		if err != nil {
			t.Errorf("Canonicalize(%q): %v", v.Input, err)
			continue
		}
		if string(got) != v.Canonical {
			t.Errorf("Canonicalize(%q)\n got %s\nwant %s", v.Input, got, v.Canonical)
		}
		if !IsCanonical(got) {
			t.Errorf("IsCanonical(%s) = false", got)
		}
		if IsCanonical([]byte(v.Input)) != (v.Input == v.Canonical) {
			t.Errorf("IsCanonical(%q) wrong", v.Input)
		}
	}
}

func TestSpecVectorsJSONSigning(t *testing.T) {
	t.Parallel()
	vs := loadSpecVectors(t)
	key := specKey(t)
	if got := EncodeBase64(key.Public()); got != vs.SigningKey.Public {
		t.Fatalf("public key %s, want %s", got, vs.SigningKey.Public)
	}
	for _, v := range vs.JSONSigning {
		got, err := SignJSON(v.Input, vs.SigningKey.ServerName, key)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Canonicalize(nil, v.Expected)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("SignJSON(%s)\n got %s\nwant %s", v.Input, got, want)
		}
		if err := VerifyJSON(got, "domain", "ed25519:1", key.Public()); err != nil {
			t.Errorf("VerifyJSON(%s): %v", got, err)
		}
	}
}

func TestSpecVectorsEventSigning(t *testing.T) {
	t.Parallel()
	vs := loadSpecVectors(t)
	key := specKey(t)
	for i, v := range vs.EventSigning {
		got := signEventV1(t, v.Input, "domain", key)
		want, err := Canonicalize(nil, v.Expected)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("event %d\n got %s\nwant %s", i, got, want)
		}
		// The event signature is over the redacted event.
		redacted := redactV1(t, got)
		if err := VerifyJSON(redacted, "domain", "ed25519:1", key.Public()); err != nil {
			t.Errorf("event %d: redacted copy does not verify: %v", i, err)
		}
	}
}

func TestDerivedXMatrixVectors(t *testing.T) {
	t.Parallel()
	var vs xmatrixVectors
	loadJSON(t, "derived-xmatrix-vectors.json", &vs)
	key := specKey(t)
	if len(vs.Requests) != 2 {
		t.Fatalf("%d vectors", len(vs.Requests))
	}
	for _, v := range vs.Requests {
		so := v.SignedObject
		x, err := SignRequest(key, so.Method, so.URI, so.Origin, so.Destination, so.Content)
		if err != nil {
			t.Fatal(err)
		}
		if got := EncodeBase64(x.Sig); got != v.Sig {
			t.Errorf("%s %s: sig %s, want %s", so.Method, so.URI, got, v.Sig)
		}
		if got := x.String(); got != v.Authorization {
			t.Errorf("header\n got %s\nwant %s", got, v.Authorization)
		}
		msg, err := requestMessage(nil, so.Method, so.URI, so.Origin, so.Destination, so.Content, bodyRaw)
		if err != nil {
			t.Fatal(err)
		}
		if string(msg) != v.Canonical {
			t.Errorf("signed object\n got %s\nwant %s", msg, v.Canonical)
		}
		parsed, err := ParseXMatrix(v.Authorization)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyRequest(parsed, so.Method, so.URI, so.Destination, so.Content, key.Public()); err != nil {
			t.Errorf("VerifyRequest: %v", err)
		}
		if !ed25519.Verify(key.Public(), []byte(v.Canonical), x.Sig) {
			t.Error("signature does not verify over the vector's canonical text")
		}
		// The prepared key the gateway uses gives the same answers.
		for _, prepare := range []func(ed25519.PublicKey) (*Verifier, error){NewVerifier, NewPrecomputedVerifier} {
			pv, err := prepare(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			content, err := CanonicalizeContent(nil, so.Content)
			if len(so.Content) == 0 {
				content, err = nil, nil
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyRequestWith(parsed, so.Method, so.URI, so.Destination, content, pv); err != nil {
				t.Errorf("VerifyRequestWith (precomputed %v): %v", pv.Precomputed(), err)
			}
			if err := VerifyRequestWith(parsed, so.Method, so.URI+"x", so.Destination, content, pv); KindOf(err) != KindBadSignature {
				t.Errorf("VerifyRequestWith on another target: %v", err)
			}
		}
	}
}
