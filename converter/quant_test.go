package converter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/safetensors"
)

// rtnQ4 is plain round-to-nearest absmax quantization, the baseline: d = f16(absmax/7), q = round(x/d).
// It returns Σ(x − q·d)² and Σx².
func rtnQ4(x []float32, group int) (sse, ss float64) {
	for g := 0; g < len(x); g += group {
		xs := x[g : g+group]
		var amax float32
		for _, v := range xs {
			amax = max(amax, abs32(v))
		}
		d := f16Round(amax / 7)
		for _, v := range xs {
			q := float32(0)
			if d != 0 {
				q = float32(math.Round(float64(v / d)))
			}
			e := float64(v) - float64(min(max(q, -8), 7)*d)
			sse += e * e
			ss += float64(v) * float64(v)
		}
	}
	return sse, ss
}

// encodeQ4 quantizes x as rows of cols and returns the relative RMSE, checked against a decode.
func encodeQ4(t testing.TB, x []float32, cols int) float64 {
	q := &model.QuantMatrix{DType: model.DTypeQ4, Rows: len(x) / cols, Cols: cols, Group: 32}
	q.Data, q.Scales = make([]uint32, q.Rows*q.RowWords()), make([]uint32, q.Rows*q.ScaleWords())
	var st errStats
	require.NoError(t, encodeRows(q.DType, q.Group, x, cols, q.Data, q.Scales, &st))
	return st.relRMSE()
}

func TestQ4BeatsRoundToNearestOnTinyWeights(t *testing.T) {
	m, err := model.Load(tinyHF(t))
	require.NoError(t, err)
	w := m.Weights
	lins := map[string]model.Linear{"embed": w.Embed, "lm_head": w.LMHead}
	for i, l := range w.Layers {
		for name, lin := range map[string]model.Linear{"q": l.Q, "k": l.K, "v": l.V, "o": l.O, "gate": l.Gate, "up": l.Up, "down": l.Down} {
			lins[name+string(rune('0'+i))] = lin
		}
	}
	var sseOurs, sseRTN, ssAll float64
	for name, l := range lins {
		sse, ss := rtnQ4(l.W, 32)
		rtn := math.Sqrt(sse / ss)
		ours := encodeQ4(t, l.W, l.In)
		require.LessOrEqual(t, ours, rtn, name)
		sseOurs += ours * ours * ss
		sseRTN += sse
		ssAll += ss
	}
	ours, rtn := math.Sqrt(sseOurs/ssAll), math.Sqrt(sseRTN/ssAll)
	t.Logf("tiny model, all 2-D weights: rel RMSE %.5f vs round-to-nearest %.5f (%.1f%% lower)", ours, rtn, 100*(1-ours/rtn))
}

func TestQ4BeatsRoundToNearestOnGaussian(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 1<<20)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 0.02)
	}
	sse, ss := rtnQ4(x, 32)
	ours, rtn := encodeQ4(t, x, 4096), math.Sqrt(sse/ss)
	t.Logf("Gaussian: rel RMSE %.5f vs round-to-nearest %.5f (%.1f%% lower)", ours, rtn, 100*(1-ours/rtn))
	require.Less(t, ours, 0.85*rtn)
}

// Every group is as good as round-to-nearest or better, including awkward ones (up to float32 rounding
// of the candidates' errors, which decides near-ties).
func TestSearchScaleNeverWorseThanRoundToNearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	groups := [][]float32{make([]float32, 32)} // all zero
	for i := 0; i < 2000; i++ {
		g := make([]float32, 32)
		scale := math.Pow(10, -8+10*rng.Float64()) // down to f16-subnormal scales
		for j := range g {
			switch i % 4 {
			case 0:
				g[j] = float32(rng.NormFloat64() * scale)
			case 1:
				g[j] = float32((2*rng.Float64() - 1) * scale)
			case 2: // one outlier
				g[j] = float32(rng.NormFloat64() * scale * 0.01)
			case 3: // few distinct values
				g[j] = float32(float64(rng.IntN(3)-1) * scale)
			}
		}
		if i%4 == 2 {
			g[rng.IntN(32)] = float32(scale)
		}
		groups = append(groups, g)
	}
	s := newGroupSearch(model.DTypeQ4, make([]float32, 32))
	for _, g := range groups {
		d, err := s.search(g)
		require.NoError(t, err)
		require.Equal(t, d, f16Round(d), "the scale is an f16 value")
		var id float32
		if d != 0 {
			id = 1 / d
		}
		var sse float64
		for _, v := range g {
			q := min(max(math.Round(float64(v*id)), -8), 7)
			e := float64(v) - q*float64(d)
			sse += e * e
		}
		rtn, _ := rtnQ4(g, 32)
		require.LessOrEqual(t, sse, rtn*(1+1e-4)+1e-30, "group %v", g)
	}
}

// encodeRows output decodes (model.QuantMatrix) to values whose error is the one reported.
func TestEncodeRowsDecodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	const rows, cols = 3, 96
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	x[5] = 0
	for _, c := range []struct {
		dtype  string
		maxRel float64
	}{{"q4", 0.1}, {"q8", 0.006}, {"f16", 0.0005}, {"f32", 0}} {
		q := &model.QuantMatrix{DType: c.dtype, Rows: rows, Cols: cols, Group: 32}
		q.Data, q.Scales = make([]uint32, rows*q.RowWords()), make([]uint32, rows*q.ScaleWords())
		var st errStats
		require.NoError(t, encodeRows(c.dtype, 32, x, cols, q.Data, q.Scales, &st))
		row := make([]float32, cols)
		var sse, ss, mx float64
		for r := 0; r < rows; r++ {
			q.DequantRow(r, row)
			for i, v := range row {
				e := float64(x[r*cols+i]) - float64(v)
				sse, ss, mx = sse+e*e, ss+float64(x[r*cols+i])*float64(x[r*cols+i]), max(mx, math.Abs(e))
			}
		}
		require.InDelta(t, math.Sqrt(sse/ss), st.relRMSE(), 1e-6, c.dtype)
		require.InDelta(t, mx, st.maxAbs, 1e-6, c.dtype)
		require.LessOrEqual(t, st.relRMSE(), c.maxRel, c.dtype)
	}
}

func TestEncodeRowsRange(t *testing.T) {
	data, scales := make([]uint32, 16), make([]uint32, 1)
	x := make([]float32, 32)
	x[3] = 1e6
	var st errStats
	require.ErrorContains(t, encodeRows("q4", 32, x, 32, data, scales, &st), "too large for an f16 scale")
	require.ErrorContains(t, encodeRows("f16", 32, x, 32, data, scales, &st), "outside the f16 range")
	x[3] = 1e5 // fine for q8: scale 1e5/127
	require.NoError(t, encodeRows("q8", 32, x, 32, make([]uint32, 8), scales, &st))
}

// BenchmarkEncodeQ4 encodes 4096-wide rows (InternLM3-8B's hidden size) of Gaussian values, as real
// weights roughly are, and of uniform ones, as cmd/synth's are. It cycles through 64 different rows: with a
// single row repeated, the branch predictor learns its groups by heart and the encoder looks faster than
// on a real tensor. Besides wall time it reports cpu-ns/weight, the thread's CPU time from /proc (Linux),
// which other processes on the same cores disturb much less.
func BenchmarkEncodeQ4(b *testing.B) {
	const cols, rows = 4096, 64
	for _, dist := range []string{"gaussian", "uniform"} {
		b.Run(dist, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			x := make([]float32, rows*cols)
			for i := range x {
				if dist == "gaussian" {
					x[i] = float32(rng.NormFloat64() * 0.02)
				} else {
					x[i] = float32((2*rng.Float64() - 1) * 0.02)
				}
			}
			data, scales := make([]uint32, cols/8), make([]uint32, cols/64)
			var st errStats
			b.SetBytes(2 * cols) // bf16 input bytes
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0, ok := threadCPUNanos()
			r := 0
			for b.Loop() {
				encodeRows("q4", 32, x[r*cols:(r+1)*cols], cols, data, scales, &st)
				r = (r + 1) % rows
			}
			if cpu1, ok1 := threadCPUNanos(); ok && ok1 {
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N)/cols, "cpu-ns/weight")
			}
		})
	}
}

// threadCPUNanos is the calling thread's CPU time so far, from /proc/thread-self/schedstat (Linux only).
func threadCPUNanos() (int64, bool) {
	data, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0, false
	}
	var ns int64
	_, err = fmt.Sscan(string(data), &ns)
	return ns, err == nil
}

func TestF16Round(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	check := func(v float32) {
		want := float16.Fromfloat32(v).Float32()
		got := f16Round(v)
		if math.Float32bits(want) != math.Float32bits(got) && !(math.IsNaN(float64(want)) && math.IsNaN(float64(got))) {
			t.Fatalf("f16Round(%g = %#08x) = %g, want %g", v, math.Float32bits(v), got, want)
		}
	}
	for _, v := range []float32{0, 1, -1, 65504, 65519.99, 65520, -65520, 6.1035156e-05, 6.10351e-05, 1e-8, 2.9e-8, 1e30} {
		check(v)
	}
	for i := 0; i < 1_000_000; i++ {
		check(math.Float32frombits(rng.Uint32()))
		check(float32(rng.NormFloat64() * 0.01))
	}
	for h := uint32(0); h < 1<<16; h++ { // every f16 value and the midpoints above it
		v := float16.Frombits(uint16(h)).Float32()
		check(v)
		if f := float16.Frombits(uint16(h)); !f.IsNaN() && !f.IsInf(0) && h != 0x8000 { // −0 is stored as 0
			require.Equal(t, uint16(h), f16Bits(v), "f16Bits(%g)", v)
		}
		check(math.Float32frombits(math.Float32bits(v) + 0x1000))
	}
}

// decodeRow's four-at-a-time bf16 path agrees with a value-at-a-time decode, NaN and infinity included.
func TestDecodeRowBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n < 20; n++ {
		for trial := 0; trial < 50; trial++ {
			raw := make([]byte, 2*n)
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			if trial%2 == 1 { // a NaN or an infinity somewhere
				k := rng.IntN(n)
				raw[2*k], raw[2*k+1] = []byte{0xc0, 0x80}[rng.IntN(2)], 0x7f|byte(rng.IntN(2))<<7
			}
			want := -1
			for i := 0; i < n; i++ {
				h := uint16(raw[2*i]) | uint16(raw[2*i+1])<<8
				if h&0x7f80 == 0x7f80 {
					if trial%2 == 0 { // half the rows without NaN or infinity
						raw[2*i+1] &^= 0x40
						continue
					}
					if want < 0 {
						want = i
					}
				}
			}
			dst := make([]float32, n)
			got := decodeRow(dst, raw, safetensors.BF16)
			require.Equal(t, want, got)
			end := n
			if want >= 0 {
				end = want
			}
			for i := 0; i < end; i++ {
				h := uint32(raw[2*i]) | uint32(raw[2*i+1])<<8
				require.Equal(t, h<<16, math.Float32bits(dst[i]), "value %d of %d", i, n)
			}
		}
	}
}
