package edverify

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/edwards25519"
)

// same checks that both kinds of prepared key give crypto/ed25519's
// answer for (pub, msg, sig), and returns it.
func same(t testing.TB, pub, msg, sig []byte) bool {
	t.Helper()
	want := ed25519.Verify(pub, msg, sig)
	for _, prepare := range []func([]byte) (*PublicKey, error){New, Precompute} {
		k, err := prepare(pub)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.Verify(msg, sig); got != want {
			t.Fatalf("pub %x msg %x sig %x: got %v, crypto/ed25519 says %v (table %v)", pub, msg, sig, got, want, k.Precomputed())
		}
		// The message in parts: cut in three (some parts empty when it
		// is short), and as no parts at all when it is empty.
		a, b := len(msg)/3, 2*len(msg)/3
		if got := k.VerifyParts(sig, msg[:a], nil, msg[a:b], msg[b:]); got != want {
			t.Fatalf("pub %x msg %x sig %x: VerifyParts got %v, crypto/ed25519 says %v", pub, msg, sig, got, want)
		}
		if len(msg) == 0 && k.VerifyParts(sig) != want {
			t.Fatalf("pub %x sig %x: VerifyParts without parts disagrees", pub, sig)
		}
	}
	return want
}

func TestCurveConstant(t *testing.T) {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	d := new(big.Int).Mul(big.NewInt(-121665), new(big.Int).ModInverse(big.NewInt(121666), p))
	d2 := new(big.Int).Mod(new(big.Int).Lsh(d, 1), p)
	got := curveConstants().d2.Bytes() // little-endian
	want := make([]byte, 32)
	d2.FillBytes(want)
	for i, j := 0, 31; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	if hex.EncodeToString(got) != hex.EncodeToString(want) {
		t.Fatalf("2d = %x, want %x", got, want)
	}
}

func TestNonAdjacentForm(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	for i := range 3000 {
		var buf [64]byte
		for k := range buf {
			buf[k] = byte(rng.Uint32())
		}
		var s edwards25519.Scalar
		s.SetUniformBytes(buf[:])
		b := s.Bytes()
		if i == 0 {
			b = make([]byte, 32) // zero
		}
		if i == 1 { // L - 1, the largest scalar
			lm1 := new(big.Int).Sub(l, big.NewInt(1))
			b = leBytes(lm1)
		}
		for _, w := range []uint{widthA, widthB} {
			var naf [256]int8
			top := nonAdjacentForm(&naf, b, w)
			sum := new(big.Int)
			last := 1 << 20
			for pos := 255; pos >= 0; pos-- {
				d := int64(naf[pos])
				if d == 0 {
					if pos == top {
						t.Fatalf("top %d holds no digit", top)
					}
					continue
				}
				if pos > top || d%2 == 0 || d >= 1<<(w-1) || d <= -(1<<(w-1)) {
					t.Fatalf("bad digit %d at %d (top %d)", d, pos, top)
				}
				if last-pos < int(w) {
					t.Fatalf("digits at %d and %d closer than %d", last, pos, w)
				}
				last = pos
				sum.Add(sum, new(big.Int).Lsh(big.NewInt(d), uint(pos)))
			}
			if sum.Cmp(new(big.Int).SetBytes(reverse(b))) != 0 {
				t.Fatalf("NAF of %x sums to %v", b, sum)
			}
		}
	}
}

func leBytes(x *big.Int) []byte {
	b := make([]byte, 32)
	x.FillBytes(b)
	return reverse(b)
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

// TestRFC8032Vectors: the test vectors of RFC 8032 section 7.1.
func TestRFC8032Vectors(t *testing.T) {
	vectors := []struct{ pub, msg, sig string }{
		{"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
		{"fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
			"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
	}
	for _, v := range vectors {
		pub, _ := hex.DecodeString(v.pub)
		msg, _ := hex.DecodeString(v.msg)
		sig, _ := hex.DecodeString(v.sig)
		if !same(t, pub, msg, sig) {
			t.Fatalf("RFC 8032 vector %s refused", v.pub)
		}
		sig[0] ^= 1
		if same(t, pub, msg, sig) {
			t.Fatal("tampered vector accepted")
		}
	}
}

// TestSpecXMatrixVectors: the signatures of the X-Matrix vectors derived
// from the Matrix spec's test key (testdata/spec).
func TestSpecXMatrixVectors(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "spec", "test-vectors", "derived-xmatrix-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		SigningKey struct {
			Seed string `json:"seed_unpadded_base64"`
		} `json:"signing_key"`
		Requests []struct {
			Canonical string `json:"canonical"`
			Sig       string `json:"sig"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	seed, err := base64.RawStdEncoding.DecodeString(v.SigningKey.Seed)
	if err != nil {
		t.Fatal(err)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	if len(v.Requests) == 0 {
		t.Fatal("no vectors")
	}
	for _, r := range v.Requests {
		sig, err := base64.RawStdEncoding.DecodeString(r.Sig)
		if err != nil {
			t.Fatal(err)
		}
		if !same(t, pub, []byte(r.Canonical), sig) {
			t.Fatalf("vector %s refused", r.Canonical)
		}
		if same(t, pub, []byte(r.Canonical+" "), sig) {
			t.Fatal("changed message accepted")
		}
	}
}

// TestRandomSignatures: valid signatures of random keys and messages
// verify, and any one-bit change to the message, the signature or the key
// gives crypto/ed25519's answer.
func TestRandomSignatures(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	n := 400
	if testing.Short() {
		n = 50
	}
	for i := range n {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		msg := make([]byte, rng.IntN(300))
		rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		if !same(t, pub, msg, sig) {
			t.Fatal("valid signature refused")
		}
		bit := rng.IntN(8 * 64)
		bad := append([]byte(nil), sig...)
		bad[bit/8] ^= 1 << (bit % 8)
		same(t, pub, msg, bad)
		if len(msg) > 0 {
			m := append([]byte(nil), msg...)
			m[rng.IntN(len(m))] ^= 1
			same(t, pub, m, sig)
		}
		p := append([]byte(nil), pub...)
		p[i%32] ^= 1 << (i % 8)
		same(t, p, msg, sig)
	}
}

// smallOrder returns the encodings of the eight points of order dividing
// 8, canonical and non-canonical (y + p where that fits, and the sign bit
// set on x = 0).
func smallOrder(t testing.TB) [][]byte {
	// A point of order 8 ("Taming the many EdDSAs", Chalkias et al.).
	t8, _ := hex.DecodeString("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	var p8 edwards25519.Point
	if _, err := p8.SetBytes(t8); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	q := edwards25519.NewIdentityPoint()
	for range 8 {
		enc := q.Bytes()
		out = append(out, enc)
		// y below 19 has a second encoding y + p below 2^255.
		y := new(big.Int).SetBytes(reverse(append(enc[:31:31], enc[31]&0x7f)))
		if y.Cmp(big.NewInt(19)) < 0 {
			p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
			nc := leBytes(new(big.Int).Add(y, p))
			nc[31] |= enc[31] & 0x80
			out = append(out, nc)
		}
		// x = 0 with the sign bit set ("-0").
		if enc[31]&0x80 == 0 {
			var x edwards25519.Point
			neg := append([]byte(nil), enc...)
			neg[31] |= 0x80
			if _, err := x.SetBytes(neg); err == nil && x.Equal(q) == 1 {
				out = append(out, neg)
			}
		}
		q.Add(q, &p8)
	}
	if q.Equal(edwards25519.NewIdentityPoint()) != 1 {
		t.Fatal("the order-8 point is not of order 8")
	}
	return out
}

// TestSmallOrderAndNonCanonical: small-order keys and R values, their
// non-canonical encodings, S = 0 and S >= L, and the top bits of S: the
// cases where Ed25519 implementations disagree, each answered as
// crypto/ed25519 answers. Accepting cases are among them (a small-order
// key with S = 0 and the right small-order R).
func TestSmallOrderAndNonCanonical(t *testing.T) {
	points := smallOrder(t)
	accepted, refused := 0, 0
	msgs := [][]byte{nil, []byte("a"), []byte(`{"method":"GET"}`), make([]byte, 1000)}
	for _, a := range points {
		for _, r := range points {
			for _, msg := range msgs {
				sig := make([]byte, 64)
				copy(sig, r) // S = 0
				if same(t, a, msg, sig) {
					accepted++
				} else {
					refused++
				}
				sig[32] = 1 // S = 1
				same(t, a, msg, sig)
			}
		}
	}
	if accepted == 0 || refused == 0 {
		t.Fatalf("accepted %d, refused %d: both kinds must be exercised", accepted, refused)
	}

	// S >= L and S with its top bits set, on an otherwise valid signature.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte("message")
	sig := ed25519.Sign(priv, msg)
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	s := new(big.Int).SetBytes(reverse(sig[32:]))
	for _, s2 := range []*big.Int{new(big.Int).Add(s, l), l, new(big.Int).Add(l, big.NewInt(1)), new(big.Int).Lsh(big.NewInt(1), 253)} {
		bad := append(sig[:32:32], leBytes(s2)...)
		if same(t, pub, msg, bad) {
			t.Fatalf("S = %v accepted", s2)
		}
	}
	for _, top := range []byte{0x20, 0x40, 0x80} {
		bad := append([]byte(nil), sig...)
		bad[63] |= top
		same(t, pub, msg, bad)
	}
	// Keys that are not on the curve, and non-canonical encodings of
	// valid keys.
	for _, enc := range []string{
		"0200000000000000000000000000000000000000000000000000000000000000",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	} {
		k, _ := hex.DecodeString(enc)
		same(t, k, msg, sig)
	}
}

// TestMixedOrderKeys: a key with a small-order component, with signatures
// whose R carries (or lacks) the matching component. The cofactored and
// cofactorless equations disagree on these; only the cofactorless one,
// crypto/ed25519's, may decide.
func TestMixedOrderKeys(t *testing.T) {
	points := smallOrder(t)
	rng := mrand.New(mrand.NewPCG(5, 6))
	var decided [2]int
	for i := range 200 {
		var seed [64]byte
		for k := range seed {
			seed[k] = byte(rng.Uint32())
		}
		var a, r edwards25519.Scalar
		a.SetUniformBytes(seed[:])
		seed[0]++
		r.SetUniformBytes(seed[:])
		var tp, tr edwards25519.Point
		tp.SetBytes(points[i%len(points)])
		tr.SetBytes(points[(i/len(points))%len(points)])
		var A, R edwards25519.Point
		A.ScalarBaseMult(&a)
		A.Add(&A, &tp)
		R.ScalarBaseMult(&r)
		if i%2 == 0 {
			R.Add(&R, &tr)
		}
		pub, rb := A.Bytes(), R.Bytes()
		msg := []byte{byte(i), byte(i >> 8)}
		h := sha512.New()
		h.Write(rb)
		h.Write(pub)
		h.Write(msg)
		var k, s edwards25519.Scalar
		k.SetUniformBytes(h.Sum(nil))
		s.MultiplyAdd(&k, &a, &r) // S = k*a + r
		sig := append(rb, s.Bytes()...)
		if same(t, pub, msg, sig) {
			decided[1]++
		} else {
			decided[0]++
		}
	}
	if decided[0] == 0 || decided[1] == 0 {
		t.Fatalf("accepted %d, refused %d: both kinds must be exercised", decided[1], decided[0])
	}
}

func TestNewRefusesWrongLength(t *testing.T) {
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("%d bytes accepted", n)
		}
		if _, err := Precompute(make([]byte, n)); err == nil {
			t.Errorf("%d bytes accepted", n)
		}
	}
}
