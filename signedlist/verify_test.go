package signedlist_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/signedlist"
)

const list1 = `{"version": 1, "allow": ["*.partner.example"], "deny": ["evil.example"]}`

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	direct := p.root.Signer(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)
	for name, s := range map[string]*fedtest.ListSigner{"ES256": p.es, "EdDSA": p.ed, "signed by the root": direct} {
		t.Run(name, func(t *testing.T) {
			v, err := p.verifier.Verify([]byte(s.Sign(t, []byte(list1))+"\n"), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if v.List.Version != 1 || len(v.List.Allow) != 1 || v.List.Deny[0] != "evil.example" || v.Alg != string(s.Alg) {
				t.Fatalf("verified %+v", v)
			}
			if !v.NotAfter.Equal(s.Chain[0].NotAfter) {
				t.Errorf("NotAfter %v, want the signer's %v", v.NotAfter, s.Chain[0].NotAfter)
			}
		})
	}
}

// TestVerifyRefusesForgeries: each way a list can be forged or misused is
// refused with the matching error.
func TestVerifyRefusesForgeries(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	now := time.Now()
	good := p.es.Sign(t, []byte(list1))
	parts := strings.Split(good, ".")
	otherRoot := p.other.Signer(t, now.Add(-time.Hour), now.Add(time.Hour), false)
	expired := p.inter.Signer(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), false)
	notYet := p.inter.Signer(t, now.Add(time.Hour), now.Add(48*time.Hour), true)
	evilPayload := []byte(`{"version": 9, "allow": ["*"], "deny": []}`)
	tampered := parts[0] + "." + fedtestB64(evilPayload) + "." + parts[2]
	// The good header (with its chain) over another payload, signed by a
	// key the chain does not certify.
	stranger := p.other.Signer(t, now.Add(-time.Hour), now.Add(time.Hour), false)
	resigned := strings.Split(stranger.Sign(t, evilPayload), ".")
	swapped := parts[0] + "." + resigned[1] + "." + resigned[2]
	tests := []struct {
		name string
		jws  string
		want error
	}{
		{"bad signature (payload changed)", tampered, signedlist.ErrBadSignature},
		{"bad signature (another key)", swapped, signedlist.ErrBadSignature},
		{"chain to another root", otherRoot.Sign(t, []byte(list1)), signedlist.ErrUntrusted},
		{"expired signer", expired.Sign(t, []byte(list1)), signedlist.ErrUntrusted},
		{"signer not yet valid", notYet.Sign(t, []byte(list1)), signedlist.ErrUntrusted},
		{"alg none", fedtest.UnsignedJWS(t, map[string]any{"alg": "none", "x5c": chainB64(p.es)}, []byte(list1), nil), signedlist.ErrMalformed},
		{"alg HS256", fedtest.UnsignedJWS(t, map[string]any{"alg": "HS256", "x5c": chainB64(p.es)}, []byte(list1), []byte("mac")), signedlist.ErrMalformed},
		{"alg RS256", fedtest.UnsignedJWS(t, map[string]any{"alg": "RS256", "x5c": chainB64(p.es)}, []byte(list1), []byte("sig")), signedlist.ErrMalformed},
		{"EdDSA header over an ECDSA signer", fedtest.UnsignedJWS(t, map[string]any{"alg": "EdDSA", "x5c": chainB64(p.es)}, []byte(list1), make([]byte, 64)), signedlist.ErrBadSignature},
		{"no x5c", fedtest.UnsignedJWS(t, map[string]any{"alg": "ES256"}, []byte(list1), make([]byte, 64)), signedlist.ErrMalformed},
		{"unsigned JSON", list1, signedlist.ErrMalformed},
		{"JSON serialization", `{"payload":"e30","protected":"eyJhbGciOiJFUzI1NiJ9","signature":"AA"}`, signedlist.ErrMalformed},
		{"garbage", "a.b.c", signedlist.ErrMalformed},
		{"empty", "", signedlist.ErrMalformed},
		{"bad payload", p.es.Sign(t, []byte(`{"version": 1, "deny": ["a b"]}`)), signedlist.ErrBadPayload},
		{"payload without version", p.es.Sign(t, []byte(`{"deny": []}`)), signedlist.ErrBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := p.verifier.Verify([]byte(tt.jws), now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %+v, %v; want %v", v, err, tt.want)
			}
		})
	}
	if _, err := p.verifier.Verify([]byte(good), now.Add(24*time.Hour)); !errors.Is(err, signedlist.ErrUntrusted) {
		t.Errorf("verified at a time after the signer expired: %v", err)
	}
}

func TestNewVerifier(t *testing.T) {
	t.Parallel()
	for _, pem := range []string{"", "junk", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := signedlist.NewVerifier([]byte(pem)); err == nil {
			t.Errorf("NewVerifier(%q) accepted", pem)
		}
	}
	p := newPKI(t)
	v, err := signedlist.NewVerifier(append(p.root.CertPEM(), p.other.CertPEM()...))
	if err != nil || v.Roots() != 2 {
		t.Fatalf("%v %v", v, err)
	}
}
