package converter

import (
	"fmt"
	"math"
	"slices"

	"github.com/x448/float16"

	"github.com/ilmweb/ilmweb/model"
)

// The encoders: float32 rows → the u32 words of docs/FORMAT.md, decoded by model.QuantMatrix.

// errStats accumulates the quantization error of a tensor.
type errStats struct {
	sse, ss float64 // Σ(x − x̂)², Σx²
	maxAbs  float64 // max |x − x̂|
}

func (s *errStats) add(o errStats) {
	s.sse += o.sse
	s.ss += o.ss
	s.maxAbs = max(s.maxAbs, o.maxAbs)
}

// relRMSE is RMSE / RMS of the tensor (0 for an all-zero tensor).
func (s *errStats) relRMSE() float64 {
	if s.ss == 0 {
		return 0
	}
	return math.Sqrt(s.sse / s.ss)
}

// intRange is the signed integer range of a quantized dtype: q4 stores q+8 in a nibble, q8 stores q as int8.
func intRange(dtype string) (qmin, qmax float32) {
	if dtype == model.DTypeQ4 {
		return -8, 7
	}
	return -128, 127
}

// The q4/q8 encoder runs once per group of 32 weights, 275 million times for an 8B model, so it is written
// for speed (docs/BENCHMARKS.md, "convert"): each pass over a group is a short loop of float32 arithmetic
// with no calls, no float min/max (Go's handle NaN and ±0: six instructions each), no float→int→float
// round trips and no branch that random data would make unpredictable (integer selects compile to
// conditional moves, so floats are often compared as bits).

// scaleGrid defines the candidate inverse scales tried for each group besides round-to-nearest (RTN). They
// are qmin·f/m, where m is the group's value of largest magnitude: f = 1 maps m exactly onto qmin (−8 for
// q4), so the asymmetric end of the range is used; f < 1 shrinks the grid and f > 1 stretches it. RTN is
// f ≈ 7/8 (m onto ±7). Which f is best depends mostly on o, the largest value of the other sign, which
// lands on −f·qmin·|o|/|m|: when o is nearly as large as m, stretching clamps o and shrinking wins. So each
// f is the largest that lands m at most mReach below qmin and o at most oReach above qmax: for q4, m onto
// −8 and o onto 7.2 at most (no clamping), and m onto −8.48 and o onto 7.68 at most (o may round to 8 and
// be clamped to 7). Two such adaptive candidates and RTN do as well as RTN and three fixed ones
// (docs/FORMAT.md), at one pass over the group less.
var scaleGrid = [...]struct{ mReach, oReach float32 }{{0, 0.2}, {0.48, 0.68}}

// roundMagic rounds by addition: for a float32 t with |t| < 2²², t + roundMagic is 1.5·2²³ + round(t)
// exactly (ties to even), because the sum's own rounding drops the fraction. So (t + roundMagic) −
// roundMagic is round(t) as a float, and the bits of t + roundMagic are magicBits + round(t): two
// additions, or one and an integer subtraction, instead of math.Round or a float→int conversion.
const (
	roundMagic = 0x1p23 + 0x1p22
	magicBits  = 0x4b400000 // math.Float32bits(roundMagic)
)

// groupSearch chooses the scale of one group at a time (search) and keeps what packing needs to know
// about the group. Reused from group to group, it allocates nothing.
type groupSearch struct {
	qmin, qmax float32
	sxx        float32   // Σx² of the last group searched
	m, o       float32   // its value of largest magnitude, and the extreme of the other sign (or 0)
	big        []float32 // its values that a candidate scale may clamp: the first nb of len(x)...
	nb         int
	thr        float32 // ...which are all those with |x| ≥ thr (+Inf if no candidate clamps)
}

// newGroupSearch returns a groupSearch for dtype using big, of at least a group's length, as scratch.
func newGroupSearch(dtype string, big []float32) *groupSearch {
	s := &groupSearch{big: big}
	s.qmin, s.qmax = intRange(dtype)
	return s
}

// search returns the f16 scale (as float32) minimising Σ(x − q·d)² over a set of candidates for one
// group x (len(x) a multiple of 8), with q = clamp(round(x/d), qmin, qmax).
//
// Each candidate is a set of integers q, refitted by least squares: d = f16(Σxq / Σq²). The candidates are
// the integers of round-to-nearest, q = round(x / f16(absmax/qmax)), and for each grid entry those of
// q = round(x·qmin·f/m), f adapted to the group (see scaleGrid). Each candidate's error is measured with d
// already rounded to f16, from Σxq and Σq² alone: Σ(x − q·d)² = Σx² − 2d·Σxq + d²·Σq².
//
// Never worse than round-to-nearest (RTN): for fixed q the error is a parabola in d with its minimum at the
// least-squares d*, so f16(d*), the f16 value nearest d*, is at least as good as any other f16 scale,
// RTN's f16(absmax/qmax) included; rounding x/d to the nearest integer afterwards (packQ4) can only lower
// the error further. (Up to float32 rounding in the sums, which can tip a near-tie either way.)
func (s *groupSearch) search(x []float32) (d float32, err error) {
	qmin, qmax := s.qmin, s.qmax
	// Σx², the largest value and the smallest one, compared as bits: an integer max compiles to a
	// conditional move, while a float max (or a branch on random data) is several times slower. As int32,
	// non-negative floats order like their bit patterns and come before negative ones; as uint32, negative
	// floats come after positive ones, ordered by magnitude.
	var p0, p1 int32  // the largest positive value, or +0
	var n0, n1 uint32 // the most negative value if there is one
	var s0, s1 float32
	for i := 0; i < len(x); i += 8 {
		c := (*[8]float32)(x[i:]) // one bounds check per 8 values
		s0 += (c[0]*c[0] + c[2]*c[2]) + (c[4]*c[4] + c[6]*c[6])
		s1 += (c[1]*c[1] + c[3]*c[3]) + (c[5]*c[5] + c[7]*c[7])
		b0, b1, b2, b3 := math.Float32bits(c[0]), math.Float32bits(c[1]), math.Float32bits(c[2]), math.Float32bits(c[3])
		b4, b5, b6, b7 := math.Float32bits(c[4]), math.Float32bits(c[5]), math.Float32bits(c[6]), math.Float32bits(c[7])
		p0 = max(p0, int32(b0), int32(b2), int32(b4), int32(b6))
		p1 = max(p1, int32(b1), int32(b3), int32(b5), int32(b7))
		n0 = max(n0, b0, b2, b4, b6)
		n1 = max(n1, b1, b3, b5, b7)
	}
	pos, neg := math.Float32frombits(uint32(max(p0, p1))), -math.Float32frombits(max(n0, n1)&^(1<<31))
	if max(n0, n1) < 1<<31 {
		neg = 0 // no negative value
	}
	// m has the largest magnitude, o is the extreme of the other sign (or 0). Chosen as bits: a branch on
	// the sign of the largest weight would be mispredicted half the time.
	mb, ob := math.Float32bits(pos), math.Float32bits(neg)
	if ob&^(1<<31) > mb {
		mb, ob = ob, mb
	}
	m, o := math.Float32frombits(mb), math.Float32frombits(ob)
	amax := abs32(m)
	s.sxx, s.m, s.o, s.nb, s.thr = s0+s1, m, o, 0, float32(math.Inf(1))
	if amax > 65504*qmax {
		return 0, fmt.Errorf("value %g is too large for an f16 scale", m)
	}
	if amax < 0x1p-25 { // below half the smallest f16: every q is 0 whatever the scale
		return 0, nil
	}

	// The candidates' inverse scales, round-to-nearest first. If absmax/qmax underflows f16, RTN is all
	// zeros (d = 0 is tried anyway): the smallest f16 scale is tried instead of an infinite 1/d.
	var ids [1 + len(scaleGrid)]float32
	dRTN, ok := f16RoundNormal(amax / qmax)
	if !ok {
		dRTN = f16Round(amax / qmax)
	}
	ids[0] = minPos(1/dRTN, 0x1p24)
	// The grid's qmin·f/m = −sign(m)·min((|qmin| + mReach)/|m|, (qmax + oReach)/|o|); 1/|o| is +Inf
	// without values of the other sign.
	ia, io := 1/amax, 1/abs32(o)
	sign := math.Float32frombits(math.Float32bits(-1) ^ mb&(1<<31)) // −sign(m)
	for i, g := range scaleGrid {
		ids[1+i] = sign * minPos((g.mReach-qmin)*ia, (qmax+g.oReach)*io)
	}

	// A candidate clamps some values iff it maps m or o outside [qmin − ½, qmax + ½). Only values close to
	// m in magnitude can be clamped: those with |x|·|id| ≥ qmax + ½. The passes over the whole group leave
	// q unclamped (saving two compares and conditional moves per value and candidate), and these few
	// values are corrected afterwards. The pass for round-to-nearest, which never clamps (unless its scale
	// is a subnormal f16), collects them. The margins of 0.01 absorb float32 rounding in x·id.
	var clamps [len(ids)]bool
	var maxID float32
	for i, id := range ids {
		clamps[i] = s.clamps(m*id, o*id)
		maxID = maxPos(maxID, abs32(id))
	}
	var sxq, sqq [len(ids)]float32
	if slices.Contains(clamps[:], true) {
		s.thr = (qmax + 0.49) / maxID
		sxq[0], sqq[0], s.nb = sumsCollect(x, ids[0], s.big[:len(x)], math.Float32bits(s.thr))
	} else {
		sxq[0], sqq[0] = sums(x, ids[0])
	}
	for i := 1; i < len(ids); i++ {
		sxq[i], sqq[i] = sums(x, ids[i])
	}
	lo, hi := int32(qmin), int32(qmax)
	for i, id := range ids {
		if !clamps[i] {
			continue
		}
		var dsxq float32
		var dsqq int32
		for _, v := range s.big[:s.nb] { // swap each big value's unclamped q for the clamped one
			q := int32(math.Float32bits(v*id+roundMagic)) - magicBits
			c := min(max(q, lo), hi)
			dsxq += v * float32(c-q)
			dsqq += (c - q) * (c + q)
		}
		sxq[i] += dsxq
		sqq[i] += float32(dsqq)
	}

	// The refitted candidates against the best so far, starting from d = 0 (all zeros, error Σx²), in a
	// loop of their own so that the divisions of different candidates overlap. Errors are compared
	// without the common Σx², as integers (orderedBits) so that keeping the best is a conditional move:
	// which candidate wins is random, a branch would be mispredicted often.
	best, bestD := int32(0), uint32(0)
	for i := range ids {
		if sqq[i] == 0 { // every q is 0, and so is Σxq: make d 0 rather than NaN
			sqq[i] = 1
		}
		d, ok := f16RoundNormal(sxq[i] / sqq[i])
		if !ok {
			d = f16Round(sxq[i] / sqq[i])
		}
		if e := orderedBits(d * (d*sqq[i] - 2*sxq[i])); e < best {
			best, bestD = e, math.Float32bits(d)
		}
	}
	return math.Float32frombits(bestD), nil
}

// clamps reports whether t1 or t2 lies outside [qmin − ½, qmax + ½), less a margin of 0.01 for rounding
// errors: whether a candidate mapping the group's extremes there clamps values. It compares bits rather
// than branching, as the answer is random: |2t − qmax − qmin| ≥ qmax − qmin + 0.98.
func (s *groupSearch) clamps(t1, t2 float32) bool {
	lim := math.Float32bits(s.qmax - s.qmin + 0.98)
	a1 := math.Float32bits(2*t1-s.qmax-s.qmin) &^ (1 << 31)
	a2 := math.Float32bits(2*t2-s.qmax-s.qmin) &^ (1 << 31)
	return max(a1, a2) >= lim
}

// minPos and maxPos are min and max for non-negative floats (+Inf included), compared as bits: Go's min
// and max handle NaN and ±0, at six instructions for a float.
func minPos(a, b float32) float32 {
	return math.Float32frombits(min(math.Float32bits(a), math.Float32bits(b)))
}

func maxPos(a, b float32) float32 {
	return math.Float32frombits(max(math.Float32bits(a), math.Float32bits(b)))
}

// orderedBits maps a float32 to an int32 with the same order (for non-NaN values): negative floats order
// backwards as bit patterns, so their magnitude bits are flipped.
func orderedBits(v float32) int32 {
	b := int32(math.Float32bits(v))
	return b ^ int32(uint32(b>>31)>>1)
}

// sums returns Σx·q and Σq² for q = round(x·id), unclamped; len(x) is a multiple of 8. This is the
// innermost loop, run for each candidate: 7 float operations per value. Two pairs of accumulators keep
// the additions' latency off the critical path without running out of registers (fusing candidates into
// one loop measured slower for that reason).
func sums(x []float32, id float32) (sxq, sqq float32) {
	var a0, a1, b0, b1 float32
	for i := 0; i < len(x); i += 8 {
		c := (*[8]float32)(x[i:]) // one bounds check per 8 values
		q0 := (c[0]*id + roundMagic) - roundMagic
		q1 := (c[1]*id + roundMagic) - roundMagic
		q2 := (c[2]*id + roundMagic) - roundMagic
		q3 := (c[3]*id + roundMagic) - roundMagic
		a0 += c[0]*q0 + c[2]*q2
		a1 += c[1]*q1 + c[3]*q3
		b0 += q0*q0 + q2*q2
		b1 += q1*q1 + q3*q3
		q4 := (c[4]*id + roundMagic) - roundMagic
		q5 := (c[5]*id + roundMagic) - roundMagic
		q6 := (c[6]*id + roundMagic) - roundMagic
		q7 := (c[7]*id + roundMagic) - roundMagic
		a0 += c[4]*q4 + c[6]*q6
		a1 += c[5]*q5 + c[7]*q7
		b0 += q4*q4 + q6*q6
		b1 += q5*q5 + q7*q7
	}
	return a0 + a1, b0 + b1
}

// sumsCollect is sums that also copies the values with |x| ≥ thr (given as float32 bits) to the start of
// big, which has len(x) values, and returns their number. The copy is unconditional and the count a
// conditional increment: which values are big is random.
func sumsCollect(x []float32, id float32, big []float32, thr uint32) (sxq, sqq float32, nb int) {
	var a0, a1, b0, b1 float32
	for i := 0; i < len(x); i += 2 {
		v0, v1 := x[i], x[i+1]
		q0 := (v0*id + roundMagic) - roundMagic
		q1 := (v1*id + roundMagic) - roundMagic
		a0 += v0 * q0
		a1 += v1 * q1
		b0 += q0 * q0
		b1 += q1 * q1
		big[nb] = v0
		if math.Float32bits(v0)&^(1<<31) >= thr {
			nb++
		}
		big[nb] = v1
		if math.Float32bits(v1)&^(1<<31) >= thr {
			nb++
		}
	}
	return a0 + a1, b0 + b1, nb
}

// packQ4 rounds each value of x (8·len(words) of them) to the nearest level q·d, q in −8…7, stores q+8 in
// the nibbles of words (value i in bits 4i…4i+3 of word i/8, docs/FORMAT.md), and returns Σ(x − q·d)² and,
// if exactMax, max|x − q·d| as float32 bits (else 0). id is 1/d, or 0 if d is.
func packQ4(x []float32, words []uint32, d, id float32, exactMax bool) (sse float32, mx uint32) {
	var levels [16]float32 // each nibble's decoded value
	for r := range levels {
		levels[r] = q4Levels[r] * d
	}
	for w := range words {
		c := (*[8]float32)(x[8*w:])
		r0, r1, r2, r3 := q4Index(c[0], id), q4Index(c[1], id), q4Index(c[2], id), q4Index(c[3], id)
		r4, r5, r6, r7 := q4Index(c[4], id), q4Index(c[5], id), q4Index(c[6], id), q4Index(c[7], id)
		words[w] = r0 | r1<<4 | r2<<8 | r3<<12 | r4<<16 | r5<<20 | r6<<24 | r7<<28
		e0, e1, e2, e3 := c[0]-levels[r0&15], c[1]-levels[r1&15], c[2]-levels[r2&15], c[3]-levels[r3&15]
		e4, e5, e6, e7 := c[4]-levels[r4&15], c[5]-levels[r5&15], c[6]-levels[r6&15], c[7]-levels[r7&15]
		sse += ((e0*e0 + e1*e1) + (e2*e2 + e3*e3)) + ((e4*e4 + e5*e5) + (e6*e6 + e7*e7))
		if exactMax {
			const abs = 1<<31 - 1
			b0, b1, b2, b3 := math.Float32bits(e0)&abs, math.Float32bits(e1)&abs, math.Float32bits(e2)&abs, math.Float32bits(e3)&abs
			b4, b5, b6, b7 := math.Float32bits(e4)&abs, math.Float32bits(e5)&abs, math.Float32bits(e6)&abs, math.Float32bits(e7)&abs
			mx = max(mx, b0, b1, b2, b3, b4, b5, b6, b7)
		}
	}
	return sse, mx
}

// q4Levels is each nibble's q.
var q4Levels = [16]float32{-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7}

// q4Index returns clamp(round(v·id), −8, 7) + 8. Clamping is rare (a value near the group's largest, in
// a quarter of the groups), so it is a branch: well predicted, and cheaper than two conditional moves.
func q4Index(v, id float32) uint32 {
	r := math.Float32bits(v*id+(roundMagic+8)) - magicBits
	if r > 15 { // also catches r < 0, as unsigned
		r = uint32(min(max(int32(r), 0), 15))
	}
	return r
}

// maxErrQ4 returns max|v − q·d| (as float32 bits) over the values vs, each packed as by packQ4.
func maxErrQ4(vs []float32, d, id float32) uint32 {
	var mx uint32
	for _, v := range vs {
		mx = max(mx, math.Float32bits(v-(float32(q4Index(v, id))-8)*d)&^(1<<31))
	}
	return mx
}

// packQ8 is packQ4 for q8 (q in −128…127 stored as int8, 4 to a word), written plainly: q8 is the
// exception (-quant q8, -lm-head q8). Its error maximum is always taken.
func packQ8(x []float32, words []uint32, d float32) (sse float32, mx uint32) {
	var id float32
	if d != 0 {
		id = 1 / d
	}
	for w := range words {
		c := (*[4]float32)(x[4*w:])
		var word uint32
		for k, v := range c {
			q := min(max(int32(math.Float32bits(v*id+roundMagic))-magicBits, -128), 127)
			word |= uint32(uint8(q)) << (8 * k & 31)
			e := v - float32(q)*d
			sse += e * e
			mx = max(mx, math.Float32bits(e)&^(1<<31))
		}
		words[w] = word
	}
	return sse, mx
}

// f16Bits returns the bits of v, an f16 value held as a float32.
func f16Bits(v float32) uint16 {
	if h, ok := f16BitsNormal(v); ok {
		return h
	}
	return float16.Fromfloat32(v).Bits() // subnormal, zero
}

// f16BitsNormal is f16Bits for normal f16 values (ok false otherwise), short enough to be inlined.
func f16BitsNormal(v float32) (h uint16, ok bool) {
	b := math.Float32bits(v)
	exp := b >> 23 & 0xff
	return uint16(b>>16&0x8000 | (exp-127+15)<<10 | b>>13&0x3ff), exp-(127-14) <= 29
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// f16Round rounds v to the nearest f16 (ties to even) and widens it back.
func f16Round(v float32) float32 {
	if r, ok := f16RoundNormal(v); ok {
		return r
	}
	return float16.Fromfloat32(v).Float32() // subnormal, overflow, zero
}

// f16RoundNormal is f16Round for results in f16's normal range (ok false otherwise): it rounds the float32
// mantissa to 10 bits in place. Scales are rounded 5 times per group, so this is hot, and it is short
// enough to be inlined.
func f16RoundNormal(v float32) (r float32, ok bool) {
	b := math.Float32bits(v)
	if b>>23&0xff-(127-14) > 29 { // exponent outside f16's normal range (unsigned: below wraps around)
		return 0, false
	}
	b += 0xfff + (b >> 13 & 1) // ties to even; a carry into the exponent is right
	b &^= 0x1fff
	return math.Float32frombits(b), b&^(1<<31) <= 0x477fe000 // |r| ≤ 65504, the largest f16
}

// encodeRows encodes rows of x ([n, cols], float32, finite) as dtype into data ([n, cols/valuesPerWord])
// and, for q4 and q8, scales ([n, ceil(cols/group/2)]), adding the quantization error to st.
func encodeRows(dtype string, group int, x []float32, cols int, data, scales []uint32, st *errStats) error {
	n := len(x) / cols
	var e errStats
	switch dtype {
	case model.DTypeQ4, model.DTypeQ8:
		var buf [64]float32 // scratch for the search, on the stack for groups up to 64
		big := buf[:]
		if group > len(buf) {
			big = make([]float32, group)
		}
		s := newGroupSearch(dtype, big)
		sw := (cols/group + 1) / 2
		vpw := model.ValuesPerWord(dtype)
		for r := 0; r < n; r++ {
			row := x[r*cols : (r+1)*cols]
			rowData := data[r*cols/vpw : (r+1)*cols/vpw]
			rowScales := scales[r*sw : (r+1)*sw]
			clear(rowScales)
			for g := 0; g < cols/group; g++ {
				xs := row[g*group : (g+1)*group]
				d, err := s.search(xs)
				if err != nil {
					return err
				}
				h, ok := f16BitsNormal(d)
				if !ok {
					h = f16Bits(d)
				}
				rowScales[g/2] |= uint32(h) << (16 * (g % 2))
				words := rowData[g*group/vpw : (g+1)*group/vpw]
				var sse float32 // in float32 over one group, then added in float64
				var mx uint32   // max |error| as bits
				if dtype == model.DTypeQ4 {
					// A value rounded to its nearest level is off by at most |d|/2 (plus float32
					// rounding); only a clamped one can be off by more. So the group's largest error
					// needs taking only if |d|/2 exceeds the largest seen so far, or if values are
					// clamped and they are not all among the big ones (which the search collects only
					// when a candidate clamps, and the refit can make 1/d exceed every candidate's).
					var id float32
					if d != 0 {
						id = 1 / d
					}
					clamped := s.clamps(s.m*id, s.o*id)
					bigKnown := s.thr < (s.qmax+0.495)*abs32(d)
					if d == 0 || (clamped && !bigKnown) || float64(abs32(d))*(0.5+0x1p-10) > max(e.maxAbs, st.maxAbs) {
						sse, mx = packQ4(xs, words, d, id, true)
					} else {
						sse, _ = packQ4(xs, words, d, id, false)
						if clamped {
							mx = maxErrQ4(s.big[:s.nb], d, id)
						}
					}
				} else {
					sse, mx = packQ8(xs, words, d)
				}
				e.sse += float64(sse)
				e.ss += float64(s.sxx)
				e.maxAbs = max(e.maxAbs, float64(math.Float32frombits(mx)))
			}
		}
	case model.DTypeF16:
		for i := 0; i < len(x); i += 2 {
			lo, hi := float16.Fromfloat32(x[i]), float16.Fromfloat32(x[i+1])
			if lo.IsInf(0) || hi.IsInf(0) {
				return fmt.Errorf("value %g is outside the f16 range", max(abs32(x[i]), abs32(x[i+1])))
			}
			data[i/2] = uint32(lo.Bits()) | uint32(hi.Bits())<<16
			e.addValue(x[i], lo.Float32())
			e.addValue(x[i+1], hi.Float32())
		}
	case model.DTypeF32:
		for i, v := range x {
			data[i] = math.Float32bits(v)
			e.ss += float64(v) * float64(v)
		}
	default:
		return fmt.Errorf("unknown dtype %q", dtype)
	}
	st.add(e)
	return nil
}

func (s *errStats) addValue(v, got float32) {
	d := float64(v) - float64(got)
	s.sse += d * d
	s.ss += float64(v) * float64(v)
	s.maxAbs = max(s.maxAbs, math.Abs(d))
}
