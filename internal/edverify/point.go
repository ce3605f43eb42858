package edverify

import (
	"filippo.io/edwards25519/field"
)

// Points of the twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2 in the
// coordinate systems of Hisil, Wong, Carter and Dawson, "Twisted Edwards
// Curves Revisited" (2008). With a = -1 a square and d not a square mod
// p, their unified addition is complete: it is correct for every pair of
// points, the identity and small-order points included.

// extended is (X:Y:Z:T) with x = X/Z, y = Y/Z, x*y = T/Z.
type extended struct{ X, Y, Z, T field.Element }

// projective is (X:Y:Z), extended without T: enough to double.
type projective struct{ X, Y, Z field.Element }

// completed is ((X:Z), (Y:T)): x = X/Z, y = Y/T. Doubling and addition
// produce it; turning it into another form costs 3 or 4 multiplications.
type completed struct{ X, Y, Z, T field.Element }

// cached is a point ready to be added: (Y+X, Y-X, Z, 2d*T).
type cached struct{ YplusX, YminusX, Z, T2d field.Element }

// affine is a cached point with Z = 1: (y+x, y-x, 2d*x*y). Tables hold
// this form: an addition then costs one multiplication less.
type affine struct{ YplusX, YminusX, XY2d field.Element }

func (v *extended) setIdentity() {
	v.X.Zero()
	v.Y.One()
	v.Z.One()
	v.T.Zero()
}

func (v *projective) setIdentity() {
	v.X.Zero()
	v.Y.One()
	v.Z.One()
}

func (v *extended) fromCompleted(p *completed) {
	v.X.Multiply(&p.X, &p.T)
	v.Y.Multiply(&p.Y, &p.Z)
	v.Z.Multiply(&p.Z, &p.T)
	v.T.Multiply(&p.X, &p.Y)
}

func (v *projective) fromCompleted(p *completed) {
	v.X.Multiply(&p.X, &p.T)
	v.Y.Multiply(&p.Y, &p.Z)
	v.Z.Multiply(&p.Z, &p.T)
}

func (v *projective) fromExtended(p *extended) {
	v.X.Set(&p.X)
	v.Y.Set(&p.Y)
	v.Z.Set(&p.Z)
}

func (v *cached) fromExtended(p *extended, d2 *field.Element) {
	v.YplusX.Add(&p.Y, &p.X)
	v.YminusX.Subtract(&p.Y, &p.X)
	v.Z.Set(&p.Z)
	v.T2d.Multiply(&p.T, d2)
}

// double sets v = 2p ("dbl-2008-hwcd" with a = -1): 4 squarings.
func (v *completed) double(p *projective) {
	var xx, yy, zz2, sum field.Element
	xx.Square(&p.X)
	yy.Square(&p.Y)
	zz2.Square(&p.Z)
	zz2.Add(&zz2, &zz2)
	sum.Add(&p.X, &p.Y)
	sum.Square(&sum)
	v.Y.Add(&yy, &xx)        // y^2 + x^2
	v.Z.Subtract(&yy, &xx)   // y^2 - x^2
	v.X.Subtract(&sum, &v.Y) // 2xy
	v.T.Subtract(&zz2, &v.Z) // 2z^2 - (y^2 - x^2)
}

// add sets v = p + q for a cached q ("add-2008-hwcd-3" with k = 2d).
func (v *completed) add(p *extended, q *cached) {
	var sum, diff, pp, mm, tt, zz field.Element
	sum.Add(&p.Y, &p.X)
	diff.Subtract(&p.Y, &p.X)
	pp.Multiply(&sum, &q.YplusX)
	mm.Multiply(&diff, &q.YminusX)
	tt.Multiply(&p.T, &q.T2d)
	zz.Multiply(&p.Z, &q.Z)
	zz.Add(&zz, &zz)
	v.X.Subtract(&pp, &mm)
	v.Y.Add(&pp, &mm)
	v.Z.Add(&zz, &tt)
	v.T.Subtract(&zz, &tt)
}

// addAffine sets v = p + q for an affine q (q's Z is 1).
func (v *completed) addAffine(p *extended, q *affine) {
	var sum, diff, pp, mm, tt, z2 field.Element
	sum.Add(&p.Y, &p.X)
	diff.Subtract(&p.Y, &p.X)
	pp.Multiply(&sum, &q.YplusX)
	mm.Multiply(&diff, &q.YminusX)
	tt.Multiply(&p.T, &q.XY2d)
	z2.Add(&p.Z, &p.Z)
	v.X.Subtract(&pp, &mm)
	v.Y.Add(&pp, &mm)
	v.Z.Add(&z2, &tt)
	v.T.Subtract(&z2, &tt)
}

// subAffine sets v = p - q for an affine q. Negating (x, y) gives
// (-x, y): y+x and y-x swap places and x*y changes sign.
func (v *completed) subAffine(p *extended, q *affine) {
	var sum, diff, pp, mm, tt, z2 field.Element
	sum.Add(&p.Y, &p.X)
	diff.Subtract(&p.Y, &p.X)
	pp.Multiply(&sum, &q.YminusX)
	mm.Multiply(&diff, &q.YplusX)
	tt.Multiply(&p.T, &q.XY2d)
	z2.Add(&p.Z, &p.Z)
	v.X.Subtract(&pp, &mm)
	v.Y.Add(&pp, &mm)
	v.Z.Subtract(&z2, &tt)
	v.T.Add(&z2, &tt)
}

// encode writes the canonical encoding of p (RFC 8032 section 5.1.2): y
// fully reduced, little-endian, with the sign of x in the top bit.
func (p *projective) encode(out *[32]byte) {
	var zInv, x, y field.Element
	zInv.Invert(&p.Z)
	x.Multiply(&p.X, &zInv)
	y.Multiply(&p.Y, &zInv)
	copy(out[:], y.Bytes())
	out[31] |= byte(x.IsNegative() << 7)
}

// oddMultiples returns P, 3P, 5P, ..., (2n-1)P in affine form.
func oddMultiples(p *extended, n int, d2 *field.Element) []affine {
	pts := make([]extended, n)
	pts[0] = *p
	var twoP extended
	var proj projective
	var c completed
	proj.fromExtended(p)
	c.double(&proj)
	twoP.fromCompleted(&c)
	var twoPc cached
	twoPc.fromExtended(&twoP, d2)
	for i := 1; i < n; i++ {
		c.add(&pts[i-1], &twoPc)
		pts[i].fromCompleted(&c)
	}
	return toAffine(pts, d2)
}

// toAffine normalises points with one inversion for all (Montgomery's
// trick). Z is never zero for a point on the curve.
func toAffine(pts []extended, d2 *field.Element) []affine {
	prefix := make([]field.Element, len(pts))
	var acc field.Element
	acc.One()
	for i := range pts {
		prefix[i].Set(&acc)
		acc.Multiply(&acc, &pts[i].Z)
	}
	var inv field.Element
	inv.Invert(&acc) // 1 / (Z0 * Z1 * ... )
	out := make([]affine, len(pts))
	for i := len(pts) - 1; i >= 0; i-- {
		var zInv, x, y, xy field.Element
		zInv.Multiply(&inv, &prefix[i]) // 1 / Zi
		inv.Multiply(&inv, &pts[i].Z)   // 1 / (Z0 ... Zi-1)
		x.Multiply(&pts[i].X, &zInv)
		y.Multiply(&pts[i].Y, &zInv)
		xy.Multiply(&x, &y)
		out[i].YplusX.Add(&y, &x)
		out[i].YminusX.Subtract(&y, &x)
		out[i].XY2d.Multiply(&xy, d2)
	}
	return out
}

// timesTwoTo sets p = 2^n p.
func timesTwoTo(p *extended, n int) {
	var proj projective
	var c completed
	proj.fromExtended(p)
	for i := 0; i < n; i++ {
		c.double(&proj)
		if i == n-1 {
			p.fromCompleted(&c)
		} else {
			proj.fromCompleted(&c)
		}
	}
}
