package signedlist_test

import (
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// FuzzVerify feeds arbitrary bytes to the signed-list path: JWS parsing
// (go-jose), the x5c chain, signature and payload checks. It must never
// panic, and anything it accepts must be a list signed by the trusted
// signer's chain.
func FuzzVerify(f *testing.F) {
	p := newPKI(f)
	good := p.es.Sign(f, []byte(list1))
	f.Add([]byte(good))
	f.Add([]byte(p.ed.Sign(f, []byte(`{"version": 7, "allow": ["*.a.example", "re:^b[0-9]+$"], "deny": []}`))))
	f.Add([]byte(fedtest.UnsignedJWS(f, map[string]any{"alg": "none", "x5c": chainB64(p.es)}, []byte(list1), nil)))
	f.Add([]byte(fedtest.UnsignedJWS(f, map[string]any{"alg": "ES256", "x5c": []string{"AAAA"}, "crit": []string{"exp"}}, []byte(list1), make([]byte, 64))))
	f.Add([]byte(good[:len(good)/2]))
	f.Add([]byte("e30.e30.e30"))
	f.Add([]byte(list1))
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := p.verifier.Verify(data, now)
		if err != nil {
			return
		}
		if v.Signer == nil || v.List.Version < 0 || (v.Alg != "ES256" && v.Alg != "EdDSA") {
			t.Fatalf("accepted %q as %+v", data, v)
		}
	})
}
