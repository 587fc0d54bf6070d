package converter

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"

	"github.com/ilmweb/ilmweb/model"
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
	for _, g := range groups {
		d, _, err := searchScale(g, -8, 7)
		require.NoError(t, err)
		require.Equal(t, d, f16Round(d), "the scale is an f16 value")
		var id float32
		if d != 0 {
			id = 1 / d
		}
		var sse float64
		for _, v := range g {
			e := float64(v - float32(roundIndex(v*id, 8.5, 15)-8)*d)
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

func BenchmarkEncodeQ4(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 0.02)
	}
	data, scales := make([]uint32, 4096/8), make([]uint32, 4096/64)
	var st errStats
	b.SetBytes(2 * int64(len(x))) // bf16 input bytes
	for b.Loop() {
		encodeRows("q4", 32, x, len(x), data, scales, &st)
	}
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
		check(math.Float32frombits(math.Float32bits(v) + 0x1000))
	}
}
