package edverify

import (
	"crypto/ed25519"
	"crypto/sha512"
	"testing"

	"filippo.io/edwards25519"
)

// FuzzVerify is a differential test against crypto/ed25519.Verify. The
// inputs steer towards the cases that matter: a signature made by the key
// and then altered (bits flipped, S pushed past the group order, top bits
// set), keys and R values with small-order components (where cofactored
// and cofactorless verification part ways), non-canonical encodings, and
// raw bytes used as key and signature as they come.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("seed"), []byte("message"), byte(0), []byte{})
	f.Add([]byte("seed"), []byte(`{"destination":"gw.test","method":"GET"}`), byte(1), []byte{3, 7})
	f.Add([]byte("key"), []byte{}, byte(2), []byte{5, 1})
	f.Add([]byte("key"), []byte("x"), byte(3), []byte{2})
	f.Add([]byte("raw"), []byte("m"), byte(4), make([]byte, 96))
	f.Add([]byte("mixed"), []byte("m"), byte(5), []byte{6, 3})
	f.Add([]byte("top"), []byte("m"), byte(6), []byte{0xe0})
	points := smallOrder(f)
	f.Fuzz(func(t *testing.T, seed, msg []byte, mode byte, tweak []byte) {
		s := sha512.Sum512(seed)
		priv := ed25519.NewKeyFromSeed(s[:32])
		pub := priv.Public().(ed25519.PublicKey)
		sig := ed25519.Sign(priv, msg)
		at := func(i int) int {
			if len(tweak) <= i {
				return 0
			}
			return int(tweak[i])
		}
		switch mode % 7 {
		case 1: // flip bits of the signature
			for i := range tweak {
				sig[(i*37+int(tweak[i]))%64] ^= 1 << (tweak[i] % 8)
			}
		case 2: // a small-order key, R a small-order point, S small
			pub = append([]byte(nil), points[at(0)%len(points)]...)
			copy(sig, points[at(1)%len(points)])
			clear(sig[32:])
			sig[32] = byte(at(2))
		case 3: // S + L (and more) instead of S: non-canonical
			var l = [32]byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 31: 0x10}
			for k := 0; k <= at(0)%8; k++ {
				var carry uint16
				for i := range 32 {
					v := uint16(sig[32+i]) + uint16(l[i]) + carry
					sig[32+i], carry = byte(v), v>>8
				}
			}
		case 4: // raw bytes as key and signature
			if len(tweak) >= 96 {
				pub = append([]byte(nil), tweak[:32]...)
				sig = append([]byte(nil), tweak[32:96]...)
			}
		case 5: // a mixed-order key and R: sign with A + T, R + T'
			var a, r edwards25519.Scalar
			a.SetUniformBytes(append(s[:], 1)[1:])
			r.SetUniformBytes(append(s[:], 2)[1:])
			var tp, tr, A, R edwards25519.Point
			tp.SetBytes(points[at(0)%len(points)])
			tr.SetBytes(points[at(1)%len(points)])
			A.ScalarBaseMult(&a)
			A.Add(&A, &tp)
			R.ScalarBaseMult(&r)
			R.Add(&R, &tr)
			pub, sig = A.Bytes(), R.Bytes()
			h := sha512.New()
			h.Write(sig)
			h.Write(pub)
			h.Write(msg)
			var k, S edwards25519.Scalar
			k.SetUniformBytes(h.Sum(nil))
			S.MultiplyAdd(&k, &a, &r)
			sig = append(sig, S.Bytes()...)
		case 6: // the top bits of S
			sig[63] |= byte(at(0)) & 0xe0
		}
		same(t, pub, msg, sig)
	})
}
