package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fast q4 path against its pure-Go twin (dotQ4Q8, same integer sums) and against the f32 oracle
// (DotRow), on shapes that are not multiples of the 4×4 tile, the 64-row block or the block pair, with
// guard cells around dst that must stay untouched.
func TestMatmulQ4MatchesTwins(t *testing.T) {
	if !haveQ4Kernels {
		t.Log("no AVX-512 VNNI here: only the twin is checked against the oracle")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct{ out, in, T int }{
		{4, 64, 1}, {7, 96, 5}, {3, 32, 2}, {65, 352, 6}, {130, 4096, 17}, {64, 128, 16}, {9, 640, 33}, {256, 1024, 4},
	} {
		q := randomMatrix(rng, DTypeQ4, c.out, c.in, q4Block)
		l := Linear{Out: c.out, In: c.in, Q: q}
		if c.T%2 == 1 {
			l.Bias = make([]float32, c.out)
			for i := range l.Bias {
				l.Bias[i] = float32(rng.NormFloat64())
			}
		}
		x := make([]float32, c.T*c.in)
		for i := range x {
			x[i] = float32(rng.NormFloat64()) * float32(1+i%7)
		}
		a := quantizeQ8(x, c.in)
		const guard = 16
		buf := make([]float32, c.T*c.out+2*guard)
		sentinel := float32(math.Float32frombits(0x7fc0dead))
		for i := range buf {
			buf[i] = sentinel
		}
		dst := buf[guard : guard+c.T*c.out]
		if haveQ4Kernels {
			matmulQ4(dst, a, l)
			for i := 0; i < guard; i++ {
				require.Equal(t, math.Float32bits(sentinel), math.Float32bits(buf[i]), "%+v: guard before dst", c)
				require.Equal(t, math.Float32bits(sentinel), math.Float32bits(buf[len(buf)-1-i]), "%+v: guard after dst", c)
			}
		}
		row := make([]float32, c.in)
		var worst float64
		for r := 0; r < c.out; r++ {
			q.DequantRow(r, row)
			for tk := 0; tk < c.T; tk++ {
				xt := x[tk*c.in : (tk+1)*c.in]
				var b float32
				if l.Bias != nil {
					b = l.Bias[r]
				}
				// the bound: each activation is off by at most half its block's step
				var mag, bound float64
				for blk := 0; blk < c.in/32; blk++ {
					_, d := a.block(tk, blk)
					for i := blk * 32; i < blk*32+32; i++ {
						mag += math.Abs(float64(row[i] * xt[i]))
						bound += float64(d) / 2 * math.Abs(float64(row[i]))
					}
				}
				twin := dotQ4Q8(q, r, a, tk, 0, c.in/32) + b
				exact := q.DotRow(r, xt) + b
				require.InDelta(t, exact, twin, bound+1e-5*mag+1e-6, "%+v row %d token %d: twin vs f32 oracle", c, r, tk)
				worst = max(worst, math.Abs(float64(twin-exact))/(bound+1e-30))
				if haveQ4Kernels {
					require.InDelta(t, twin, dst[tk*c.out+r], 1e-5*mag+1e-6, "%+v row %d token %d: kernel vs twin", c, r, tk)
				}
			}
		}
		t.Logf("%+v: worst |q8 - f32| = %.2f of the bound", c, worst)
	}
}

// quantizeQ8 rounds to the nearest step: every value within d/2, and the block's largest value exact at ±127.
func TestQuantizeQ8(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	x := make([]float32, 3*96)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	x[40] = 0 // a block that is all zero has step 0
	for i := 64; i < 96; i++ {
		x[i] = 0
	}
	for v := float32(-127.5); v <= 127.5; v += 0.125 {
		require.Equal(t, int8(math.Round(float64(v))), round8(v), "%v", v)
		require.Equal(t, int8(math.Round(float64(v/3))), round8(v/3), "%v", v/3)
	}
	a := quantizeQ8(x, 96)
	for tk := 0; tk < 3; tk++ {
		for b := 0; b < 3; b++ {
			q, d := a.block(tk, b)
			xs := x[tk*96+b*32 : tk*96+b*32+32]
			var amax float32
			for _, v := range xs {
				amax = max(amax, abs32(v))
			}
			require.Equal(t, amax/127, d)
			for i := 0; i < 16; i++ {
				require.InDelta(t, xs[2*i], float32(q[i])*d, float64(d)/2*1.0001, "token %d block %d col %d", tk, b, 2*i)
				require.InDelta(t, xs[2*i+1], float32(q[16+i])*d, float64(d)/2*1.0001, "token %d block %d col %d", tk, b, 2*i+1)
			}
		}
	}
}

// The fast path on one full-size 4096×4096 q4 matrix: decode (1 token, weight GB/s) and prefill (128 tokens, GMAC/s).
func BenchmarkMatmulQ4(b *testing.B) {
	q := randomMatrix(rand.New(rand.NewPCG(1, 1)), DTypeQ4, 4096, 4096, q4Block)
	l := Linear{Out: q.Rows, In: q.Cols, Q: q}
	for _, T := range []int{1, 128} {
		b.Run(map[int]string{1: "decode", 128: "prefill128"}[T], func(b *testing.B) {
			if !haveQ4Kernels {
				b.Skip("no AVX-512 VNNI")
			}
			x := make([]float32, T*q.Cols)
			for i := range x {
				x[i] = float32(i%13) - 6
			}
			dst := make([]float32, T*q.Rows)
			for b.Loop() {
				matmulQ4(dst, quantizeQ8(x, q.Cols), l)
			}
			s := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(4*(len(q.Data)+len(q.Scales)))/s/1e9, "weight-GB/s")
			b.ReportMetric(float64(T*q.Rows*q.Cols)/s/1e9, "GMAC/s")
		})
	}
}
