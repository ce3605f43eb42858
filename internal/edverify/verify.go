package edverify

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"hash"
	"math/bits"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Sizes, as in crypto/ed25519.
const (
	PublicKeySize = 32
	SignatureSize = 64
)

// The scalar multiplications cut each 253-bit scalar into chunks of
// chunkBits bits; chunk j multiplies a table point P_j = 2^(chunkBits*j) P.
// All chunks share one doubling per bit position: chunkBits-1 doublings
// instead of 252.
const (
	chunks    = 8
	chunkBits = 256 / chunks
	// widthA is the w-NAF width for a key's table: digits are odd, in
	// [-15, 15], so each chunk holds 8 points.
	widthA = 5
	// widthB is the width for the base point's table, built once: 64
	// points per chunk, fewer additions.
	widthB = 8
	sizeA  = 1 << (widthA - 2)
	sizeB  = 1 << (widthB - 2)
)

// TableBytes is the memory a precomputed key's table takes.
const TableBytes = chunks * sizeA * 3 * 40

// PublicKey is an Ed25519 public key prepared for verification. It is
// immutable and safe for concurrent use.
type PublicKey struct {
	raw   [PublicKeySize]byte
	valid bool               // raw decodes to a curve point
	negA  edwards25519.Point // -A, for keys without a table
	table *[chunks][sizeA]affine
}

var errKeySize = errors.New("edverify: public key is not 32 bytes")

// New decodes pub (32 bytes) without building a table. A key that does
// not decode to a curve point is still returned: it verifies nothing,
// as with crypto/ed25519.
func New(pub []byte) (*PublicKey, error) {
	if len(pub) != PublicKeySize {
		return nil, errKeySize
	}
	k := &PublicKey{}
	copy(k.raw[:], pub)
	var a edwards25519.Point
	if _, err := a.SetBytes(pub); err == nil {
		k.valid = true
		k.negA.Negate(&a)
	}
	return k, nil
}

// Precompute is [New] plus the key's table (about [TableBytes]; building
// it costs about half a verification).
func Precompute(pub []byte) (*PublicKey, error) {
	k, err := New(pub)
	if err != nil || !k.valid {
		return k, err
	}
	c := curveConstants()
	var p extended
	x, y, z, t := k.negA.ExtendedCoordinates()
	p.X.Set(x)
	p.Y.Set(y)
	p.Z.Set(z)
	p.T.Set(t)
	k.table = new([chunks][sizeA]affine)
	for j := range chunks {
		if j > 0 {
			timesTwoTo(&p, chunkBits)
		}
		copy(k.table[j][:], oddMultiples(&p, sizeA, &c.d2))
	}
	return k, nil
}

// Bytes returns the key as given to New.
func (k *PublicKey) Bytes() []byte { return bytes.Clone(k.raw[:]) }

// Precomputed reports whether k has its table.
func (k *PublicKey) Precomputed() bool { return k.table != nil }

// Verify reports whether sig is a valid signature of msg by k, with
// exactly the result crypto/ed25519.Verify gives.
func (k *PublicKey) Verify(msg, sig []byte) bool {
	return k.VerifyParts(sig, msg)
}

// VerifyParts is Verify of the message made of parts, one after the
// other, without joining them: the same answer as Verify of their
// concatenation, for a caller whose message is mostly bytes it already
// holds elsewhere (a request body inside the signed object).
func (k *PublicKey) VerifyParts(sig []byte, parts ...[]byte) bool {
	if len(sig) != SignatureSize || sig[63]&224 != 0 || !k.valid {
		return false
	}
	hs := getHash()
	h := hs.h
	h.Write(sig[:32])
	h.Write(k.raw[:])
	for _, p := range parts {
		h.Write(p)
	}
	var kk, s edwards25519.Scalar
	_, err := kk.SetUniformBytes(h.Sum(hs.digest[:0]))
	putHash(hs)
	if err != nil {
		return false
	}
	if _, err := s.SetCanonicalBytes(sig[32:]); err != nil {
		return false
	}
	// [S]B = R + [k]A  <=>  R = [k](-A) + [S]B
	if k.table == nil {
		var r edwards25519.Point
		r.VarTimeDoubleScalarBaseMult(&kk, &k.negA, &s)
		return bytes.Equal(sig[:32], r.Bytes())
	}
	var r [32]byte
	k.doubleScalarMult(&kk, &s, &r)
	return bytes.Equal(sig[:32], r[:])
}

// doubleScalarMult writes the encoding of [kk](-A) + [s]B.
func (k *PublicKey) doubleScalarMult(kk, s *edwards25519.Scalar, out *[32]byte) {
	c := curveConstants()
	var nafK, nafS [256]int8
	top := max(nonAdjacentForm(&nafK, kk.Bytes(), widthA), nonAdjacentForm(&nafS, s.Bytes(), widthB))
	// The highest position with a digit in any chunk.
	high := -1
	for i := top; i >= 0 && high < chunkBits-1; i-- {
		if nafK[i] != 0 || nafS[i] != 0 {
			high = max(high, i%chunkBits)
		}
	}
	var acc extended
	var proj projective
	var sum completed
	proj.setIdentity()
	acc.setIdentity()
	for pos := high; pos >= 0; pos-- {
		sum.double(&proj)
		for j := range chunks {
			if d := nafK[j*chunkBits+pos]; d != 0 {
				acc.fromCompleted(&sum)
				if d > 0 {
					sum.addAffine(&acc, &k.table[j][d/2])
				} else {
					sum.subAffine(&acc, &k.table[j][-d/2])
				}
			}
			if d := nafS[j*chunkBits+pos]; d != 0 {
				acc.fromCompleted(&sum)
				if d > 0 {
					sum.addAffine(&acc, &c.base[j][d/2])
				} else {
					sum.subAffine(&acc, &c.base[j][-d/2])
				}
			}
		}
		proj.fromCompleted(&sum)
	}
	proj.encode(out)
}

// nonAdjacentForm writes the width-w NAF of the little-endian scalar s
// (below 2^255) into naf: sum naf[i] 2^i equals s, every non-zero digit
// is odd and below 2^(w-1) in absolute value, and any w consecutive
// digits hold at most one non-zero. It returns the highest position
// written (-1 for zero).
func nonAdjacentForm(naf *[256]int8, s []byte, w uint) int {
	var x [5]uint64 // s, with room for the carry of a negative digit
	for i := range 4 {
		x[i] = binary.LittleEndian.Uint64(s[8*i:])
	}
	width := uint64(1) << w
	top := -1
	for pos := 0; pos < 256; {
		word, bit := pos/64, uint(pos%64)
		window := x[word] >> bit
		if bit > 0 {
			window |= x[word+1] << (64 - bit)
		}
		if window == 0 {
			pos += 64 - int(bit)
			continue
		}
		if tz := bits.TrailingZeros64(window); tz > 0 {
			pos += tz
			continue
		}
		window &= width - 1
		digit := int64(window)
		if window >= width/2 {
			digit -= int64(width)
		}
		naf[pos] = int8(digit)
		top = pos
		// Subtracting the digit clears the window's w bits; a negative
		// digit also carries one into the bit above them.
		clearBits(&x, pos, w)
		if digit < 0 {
			addBit(&x, pos+int(w))
		}
		pos += int(w)
	}
	return top
}

// clearBits clears bits [pos, pos+w) of x (w < 64).
func clearBits(x *[5]uint64, pos int, w uint) {
	word, bit := pos/64, uint(pos%64)
	mask := uint64(1)<<w - 1
	x[word] &^= mask << bit
	if bit+w > 64 {
		x[word+1] &^= mask >> (64 - bit)
	}
}

// addBit adds 2^pos to x.
func addBit(x *[5]uint64, pos int) {
	word := pos / 64
	var carry uint64
	x[word], carry = bits.Add64(x[word], 1<<uint(pos%64), 0)
	for word++; carry != 0 && word < len(x); word++ {
		x[word], carry = bits.Add64(x[word], 0, carry)
	}
}

// constants are the curve's 2d and the base point's table, computed once
// per process and never modified.
type constants struct {
	d2   field.Element
	base [chunks][sizeB]affine
}

var curveConstants = sync.OnceValue(func() *constants {
	c := &constants{}
	// d = -121665/121666
	var num, den field.Element
	num.Mult32(new(field.Element).One(), 121665)
	num.Negate(&num)
	den.Mult32(new(field.Element).One(), 121666)
	den.Invert(&den)
	c.d2.Multiply(&num, &den)
	c.d2.Add(&c.d2, &c.d2)
	var p extended
	x, y, z, t := edwards25519.NewGeneratorPoint().ExtendedCoordinates()
	p.X.Set(x)
	p.Y.Set(y)
	p.Z.Set(z)
	p.T.Set(t)
	for j := range chunks {
		if j > 0 {
			timesTwoTo(&p, chunkBits)
		}
		copy(c.base[j][:], oddMultiples(&p, sizeB, &c.d2))
	}
	return c
})

// hashState is a SHA-512 state and room for its sum: a digest on the
// stack would escape through the hash.Hash interface, one allocation per
// verification.
type hashState struct {
	h      hash.Hash
	digest [sha512.Size]byte
}

// hashes recycles SHA-512 states: crypto/sha512.New allocates.
var hashes = sync.Pool{New: func() any { return &hashState{h: sha512.New()} }}

func getHash() *hashState { return hashes.Get().(*hashState) }

func putHash(hs *hashState) {
	hs.h.Reset()
	hashes.Put(hs)
}
