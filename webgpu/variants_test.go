package webgpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
)

// Every kernel variant against the same CPU twins as the default kernels, on the same random shapes; a
// variant the device cannot run is named in the output (and fails the test if the device claims to offer
// what it needs).
func TestMatvecVariants(t *testing.T) {
	d := testDevice(t)
	for _, v := range matvecVariants[1:] {
		t.Run(v.name, func(t *testing.T) {
			if err := d.checkKernels(Kernels{Matvec: v.name}); err != nil {
				require.False(t, v.needs == "subgroups" && d.Subgroups, "the device offers subgroups: %v", err)
				t.Logf("VARIANT NOT RUN: matvec %s cannot run on %s: %v", v.name, d.Adapter, err)
				return
			}
			rng := rand.New(rand.NewPCG(5, 6))
			for _, tc := range linearCases {
				tc.variant = v.name
				testLinear(t, d, rng, "matvec", 1, tc)
			}
			testLinear(t, d, rng, "matvec", 5, linearCase{dtype: model.DTypeQ4, rows: 77, cols: 352, norm: true, variant: v.name})
		})
	}
}

func TestMatmulVariants(t *testing.T) {
	d := testDevice(t)
	for _, v := range matmulVariants[1:] {
		t.Run(v.name, func(t *testing.T) {
			if err := d.checkKernels(Kernels{Matmul: v.name}); err != nil {
				require.False(t, v.needs == "subgroups" && d.Subgroups, "the device offers subgroups: %v", err)
				t.Logf("VARIANT NOT RUN: matmul %s cannot run on %s: %v", v.name, d.Adapter, err)
				return
			}
			rng := rand.New(rand.NewPCG(7, 8))
			for i, tc := range linearCases {
				tc.variant = v.name
				for _, T := range []int{1, 7, 33, 70}[i%4:] { // partial passes of SR × ST at every edge
					testLinear(t, d, rng, "matmul", T, tc)
					if tc.rows*tc.cols > 1e6 {
						break
					}
				}
			}
		})
	}
}

func TestAttentionSplit(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(19, 20))
	for _, splits := range []int{1, 8, 32, 128} {
		for _, tc := range []attentionCase{
			{4, 2, 32, 0, 1, 5, false},       // one key: every split but the first is empty
			{4, 2, 32, 70, 1, 100, true},     // fewer keys than splits × WG
			{6, 1, 20, 300, 1, 301, false},   // head_dim not dividing the workgroup
			{32, 2, 128, 600, 1, 700, false}, // the 8B model's heads
			{32, 2, 128, 4500, 1, 4600, true},
		} {
			tc.run(t, d, rng, true, splits)
		}
	}
}

// q8Bounds is, per output of linearTwin, how far quantize_q8 may move it (see matvec_q8.wgsl): for
// store and add, Σ_groups (max|h_g|/127)/2 · Σ_g |w_r| with h the (normalised) input; for GLU, that bound
// carried through silu(gate)·up, silu's slope being at most 1.1.
func q8Bounds(x []float32, l model.Linear, norm []float32, mode int, y0 []float32) []float64 {
	h := x
	if norm != nil {
		h = make([]float32, len(x))
		model.RMSNorm(h, x, norm, 1e-5)
	}
	row := func(r int) float64 {
		var bound float64
		for g := 0; g < l.In; g += 32 {
			var amax, wsum float64
			for c := g; c < g+32; c++ {
				amax = max(amax, math.Abs(float64(h[c])))
				wsum += math.Abs(float64(l.W[r*l.In+c]))
			}
			bound += amax / 127 / 2 * wsum
		}
		return bound
	}
	if mode != glu {
		out := make([]float64, l.Out)
		for r := range out {
			out[r] = row(r)
		}
		return out
	}
	plain := linearTwin(x, l, norm, store, nil)
	out := make([]float64, l.Out/2)
	for i := range out {
		g, u := float64(plain[2*i]), float64(plain[2*i+1])
		eg, eu := row(2*i), row(2*i+1)
		silu := g / (1 + math.Exp(-g))
		out[i] = 1.1*eg*(math.Abs(u)+eu) + math.Abs(silu)*eu
	}
	return out
}

// requireQ8Close checks |got − want| ≤ bound + 1e-4 + 1e-3·|want| elementwise, want being the f32 twin.
func requireQ8Close(t *testing.T, want, got []float32, bound []float64, what string) {
	t.Helper()
	require.Len(t, got, len(want))
	worst, worstAbs := 0.0, 0.0
	for i := range want {
		diff := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(diff) || diff > bound[i]+1e-4+1e-3*math.Abs(float64(want[i])) {
			t.Fatalf("%s: element %d: got %g, want %g (q8 bound %g)", what, i, got[i], want[i], bound[i])
		}
		worst, worstAbs = max(worst, diff/(bound[i]+1e-4)), max(worstAbs, diff)
	}
	t.Logf("%s: %d values, max |Δ| %.3g vs the f32 twin, at most %.2f of the q8 bound", what, len(want), worstAbs, worst)
}

// Every variant forced in the whole engine, against model.CPU as TestEngineMatchesCPU runs the autotuned
// one: the random q4 model (every matvec variant), and its f32 twin with each attention variant.
func TestEngineVariants(t *testing.T) {
	d := testDevice(t)
	cfg, w := randomModel(1, 999)
	q4 := q4Weights(w)
	for _, v := range MatvecVariants() {
		t.Run("matvec "+v, func(t *testing.T) {
			if err := d.checkKernels(Kernels{Matvec: v}); err != nil {
				t.Logf("VARIANT NOT RUN: matvec %s cannot run on %s: %v", v, d.Adapter, err)
				return
			}
			o := Options{Kernels: Kernels{Matvec: v, Attention: "single", Matmul: "tiled"}}
			if mv, _ := matvecVariantNamed(v); mv.q8 {
				// lossy by design (see matvec_q8.wgsl), so outside the parity bound: its deviation is
				// reported (about 0.1 on these sharp random models), and a bound catches a broken kernel
				// (off by whole units) as TestEngineKVF16's does; TestMatvecVariants checks each
				// product against the q8 error bound
				for _, m := range []struct {
					name string
					cfg  *model.Config
					w    *model.Weights
				}{{"random", cfg, q4}, {"tiny", tinyModel(t).Config, q4Weights(tinyModel(t).Weights)}} {
					worst, flips, _ := deviation(t, d, m.cfg, m.w, o)
					t.Logf("%s q4, matvec %s: max |Δ log-prob| %.2e, %d of 64 greedy tokens differ", m.name, v, worst, flips)
					require.Less(t, worst, 0.5, m.name)
				}
				return
			}
			decodeAgainstCPU(t, d, cfg, q4, o)
		})
	}
	for _, a := range AttentionVariants() {
		t.Run("attention "+a, func(t *testing.T) {
			decodeAgainstCPU(t, d, cfg, w, Options{Kernels: Kernels{Matvec: "wg64", Attention: a, Matmul: "tiled"}})
		})
	}
	for _, v := range MatmulVariants() {
		t.Run("matmul "+v, func(t *testing.T) {
			if err := d.checkKernels(Kernels{Matmul: v}); err != nil {
				t.Logf("VARIANT NOT RUN: matmul %s cannot run on %s: %v", v, d.Adapter, err)
				return
			}
			decodeAgainstCPU(t, d, cfg, q4, Options{Kernels: Kernels{Matvec: "wg64", Attention: "single", Matmul: v}})
		})
	}
}
