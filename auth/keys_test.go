package auth

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The spec's test key (appendices, "Cryptographic test vectors").
const (
	specSeed   = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	specPublic = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
)

func TestParseSynapseKeyFile(t *testing.T) {
	data := "# comment\n\ned25519 1 " + specSeed + "\ned25519 a_b2 " + specSeed + "=\n"
	keys, err := ParseKeyFile([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != "ed25519:1" || keys[1].ID != "ed25519:a_b2" {
		t.Fatalf("keys %+v", keys)
	}
	if got := EncodeBase64(keys[0].Public()); got != specPublic {
		t.Fatalf("public key %s, want %s", got, specPublic)
	}
}

func TestParseDendriteKeyFile(t *testing.T) {
	data := "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: ed25519:1\n\n" + specSeed + "=\n-----END MATRIX PRIVATE KEY-----\n"
	keys, err := ParseKeyFile([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID != "ed25519:1" || EncodeBase64(keys[0].Public()) != specPublic {
		t.Fatalf("keys %+v", keys)
	}
}

func TestParseKeyFileRejects(t *testing.T) {
	tests := map[string]string{
		"empty":          "",
		"only comments":  "# nothing\n",
		"two fields":     "ed25519 " + specSeed + "\n",
		"algorithm":      "rsa 1 " + specSeed + "\n",
		"bad version":    "ed25519 a-b " + specSeed + "\n",
		"bad base64":     "ed25519 1 !!!!\n",
		"short seed":     "ed25519 1 AAAA\n",
		"duplicate":      "ed25519 1 " + specSeed + "\ned25519 1 " + specSeed + "\n",
		"pem wrong type": "-----BEGIN PRIVATE KEY-----\nKey-ID: ed25519:1\n\n" + specSeed + "=\n-----END PRIVATE KEY-----\n",
		"pem no key id":  "-----BEGIN MATRIX PRIVATE KEY-----\n" + specSeed + "=\n-----END MATRIX PRIVATE KEY-----\n",
		"pem trailing":   "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: ed25519:1\n\n" + specSeed + "=\n-----END MATRIX PRIVATE KEY-----\ngarbage\n",
	}
	for name, data := range tests {
		if _, err := ParseKeyFile([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	for _, format := range []string{FormatSynapse, FormatDendrite} {
		t.Run(format, func(t *testing.T) {
			k1, err := GenerateSigningKey("")
			if err != nil {
				t.Fatal(err)
			}
			k2, err := GenerateSigningKey("second_2")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "signing.key")
			if err := WriteKeyFile(path, format, []SigningKey{k1, k2}); err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", st.Mode())
			}
			got, err := LoadKeyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].ID != k1.ID || got[1].ID != "ed25519:second_2" ||
				!bytes.Equal(got[0].Seed(), k1.Seed()) || !bytes.Equal(got[1].Seed(), k2.Seed()) {
				t.Fatalf("round trip changed the keys: %+v", got)
			}
			if err := WriteKeyFile(path, format, []SigningKey{k1}); err == nil {
				t.Fatal("overwrote an existing key file")
			}
		})
	}
}

func TestGenerateSigningKeyVersion(t *testing.T) {
	k, err := GenerateSigningKey("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKeyID(string(k.ID)); err != nil || !strings.HasPrefix(string(k.ID), "ed25519:a_") {
		t.Fatalf("id %q: %v", k.ID, err)
	}
	if _, err := GenerateSigningKey("bad-version"); err == nil {
		t.Fatal("bad version accepted")
	}
}

func TestParseKeyID(t *testing.T) {
	for _, ok := range []string{"ed25519:1", "ed25519:a_XyZ9", "ed25519:policy_server"} {
		if _, err := ParseKeyID(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ed25519:", "ed25519", "curve25519:1", "ed25519:a-b", "ed25519:a:b", "ED25519:1", "ed25519:é"} {
		if _, err := ParseKeyID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestBase64Vectors(t *testing.T) {
	for in, want := range map[string]string{"": "", "f": "Zg", "fo": "Zm8", "foo": "Zm9v", "foob": "Zm9vYg", "fooba": "Zm9vYmE", "foobar": "Zm9vYmFy"} {
		if got := EncodeBase64([]byte(in)); got != want {
			t.Errorf("encode %q = %q, want %q", in, got, want)
		}
		for _, enc := range []string{want, want + strings.Repeat("=", (4-len(want)%4)%4)} {
			got, err := DecodeBase64(enc)
			if err != nil || string(got) != in {
				t.Errorf("decode %q = %q, %v", enc, got, err)
			}
		}
	}
	for _, bad := range []string{"Zg=", "Zg===", "Zm9v=", "=", "Z", "Zm9v!", "Zg==Zg"} {
		if got, err := DecodeBase64(bad); err == nil {
			t.Errorf("decode %q = %q, want an error", bad, got)
		}
	}
}
