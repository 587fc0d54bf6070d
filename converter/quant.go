package converter

import (
	"fmt"
	"math"

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

// scaleGrid holds the candidate inverse scales tried for each group, as multiples of −|qmin|/m where m is
// the group's value of largest magnitude: 1 maps m exactly onto qmin (−8 for q4), so the asymmetric end of
// the range is used; the others stretch or shrink the grid by 5% and 10%. On Gaussian data these five keep
// 99% of the gain of a 17-point grid over ±10% at under a third of its cost (docs/FORMAT.md).
var scaleGrid = []float32{0.90, 0.95, 1, 1.05, 1.10}

// searchScale returns the f16 scale (as float32) minimising Σ(x − q·d)² over a set of candidates for one
// group, with q = clamp(round(x/d), qmin, qmax). Candidates: plain round-to-nearest with d = absmax/qmax,
// and for each grid factor f the integers q = round(x·(−|qmin|·f/m)) refitted by least squares
// (d = Σxq/Σq²). Each candidate's error is measured with d already rounded to f16, and rounding x/d to
// the nearest integer afterwards can only lower it, so the result is never worse than round-to-nearest
// (up to the float32 rounding of those errors, which can tip a near-tie either way).
func searchScale(x []float32, qmin, qmax float32) (d, sxx float32, err error) {
	// |v| compared as bits (non-negative floats order like their bit patterns): integer max compiles to a
	// conditional move, while float max and a branch on random data are both several times slower.
	var abits uint32
	im := 0
	for i, v := range x {
		sxx += v * v
		if a := math.Float32bits(v) &^ (1 << 31); a > abits {
			abits, im = a, i
		}
	}
	amax, m := math.Float32frombits(abits), x[im] // m: the value of largest magnitude, with its sign
	if amax == 0 {
		return 0, 0, nil
	}
	if amax/qmax > 65504 {
		return 0, 0, fmt.Errorf("value %g is too large for an f16 scale", m)
	}
	bestD, best := f16Round(amax/qmax), sxx // round-to-nearest absmax (all zeros if the scale underflows)
	if bestD != 0 {
		sxq, sqq := sums(x, 1/bestD, qmin, qmax)
		best = sxx - 2*bestD*sxq + bestD*bestD*sqq // Σ(x − q·d)² expanded
	}
	for _, f := range scaleGrid {
		id := -(-qmin * f) / m
		sxq, sqq := sums(x, id, qmin, qmax)
		d := f16Round(sxq / sqq)
		if e := sxx - 2*d*sxq + d*d*sqq; e < best {
			best, bestD = e, d
		}
	}
	return bestD, sxx, nil
}

// sums returns Σx·q and Σq² for q = clamp(round(x·id), qmin, qmax). Two lanes and an integer Σq² measured
// fastest (the Go compiler spills registers with more lanes).
func sums(x []float32, id, qmin, qmax float32) (sxq, sqq float32) {
	off, hi, lo := 0.5-qmin, int32(qmax-qmin), int32(qmin)
	var a0, a1 float32
	var s0, s1 int32
	for i := 0; i+2 <= len(x); i += 2 {
		q0 := roundIndex(x[i]*id, off, hi) + lo
		q1 := roundIndex(x[i+1]*id, off, hi) + lo
		a0 += x[i] * float32(q0)
		a1 += x[i+1] * float32(q1)
		s0 += q0 * q0
		s1 += q1 * q1
	}
	return a0 + a1, float32(s0 + s1)
}

// roundIndex returns clamp(round(t), qmin, qmax) − qmin (rounding halves up) given off = 0.5 − qmin and
// hi = qmax − qmin. |t| must be well within int32 range, which holds for every caller: t = x/d with d close
// to max|x|/|qmin| or larger.
func roundIndex(t, off float32, hi int32) int32 {
	return min(max(int32(t+off), 0), hi) // truncation is floor when t+off ≥ 0; negatives clamp to 0 anyway
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// f16Round rounds v to the nearest f16 (ties to even) and widens it back. In f16's normal range it rounds
// the float32 mantissa to 10 bits in place (a scale is rounded 6 times per group, so this is hot).
func f16Round(v float32) float32 {
	b := math.Float32bits(v)
	if exp := b >> 23 & 0xff; exp >= 127-14 && exp <= 127+15 {
		b += 0xfff + (b >> 13 & 1) // ties to even; a carry into the exponent is right
		if r := math.Float32frombits(b &^ 0x1fff); abs32(r) <= 65504 {
			return r
		}
	}
	return float16.Fromfloat32(v).Float32() // subnormal, overflow, zero
}

// encodeRows encodes rows of x ([n, cols], float32, finite) as dtype into data ([n, cols/valuesPerWord])
// and, for q4 and q8, scales ([n, ceil(cols/group/2)]), adding the quantization error to st.
func encodeRows(dtype string, group int, x []float32, cols int, data, scales []uint32, st *errStats) error {
	n := len(x) / cols
	var e errStats
	switch dtype {
	case model.DTypeQ4, model.DTypeQ8:
		qmin, qmax := intRange(dtype)
		// A word holds the indices r = q − qmin: q4 stores q+8 as is; for q8, r ^ 0x80 is q's int8 byte.
		bits, flip, shift := uint32(8), uint32(0x80), 2
		if dtype == model.DTypeQ4 {
			bits, flip, shift = 4, 0, 3
		}
		vpw := 32 / int(bits) // 1 << shift
		sw := (cols/group + 1) / 2
		off, hi, lo := 0.5-qmin, int32(qmax-qmin), int32(qmin)
		for r := 0; r < n; r++ {
			row := x[r*cols : (r+1)*cols]
			rowData := data[r*cols/vpw : (r+1)*cols/vpw]
			rowScales := scales[r*sw : (r+1)*sw]
			clear(rowScales)
			for g := 0; g < cols/group; g++ {
				xs := row[g*group : (g+1)*group]
				d, ss, err := searchScale(xs, qmin, qmax)
				if err != nil {
					return err
				}
				rowScales[g/2] |= uint32(float16.Fromfloat32(d).Bits()) << (16 * (g % 2))
				var id float32
				if d != 0 {
					id = 1 / d
				}
				var sse float32 // in float32 over one group, then added in float64
				var mx uint32   // max |error| as bits, see searchScale
				words := rowData[g*group/vpw : (g+1)*group/vpw]
				clear(words)
				for i, v := range xs {
					ri := roundIndex(v*id, off, hi)
					words[i>>shift] |= (uint32(ri) ^ flip) << (bits * uint32(i&(vpw-1)))
					err := v - float32(ri+lo)*d
					sse += err * err
					mx = max(mx, math.Float32bits(err)&^(1<<31))
				}
				e.sse += float64(sse)
				e.ss += float64(ss)
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
