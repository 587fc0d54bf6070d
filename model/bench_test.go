package model

import (
	"math/rand/v2"
	"testing"
)

// Benchmarks of the CPU reference. Results go to docs/BENCHMARKS.md with the machine and date;
// no test asserts on time.

func BenchmarkTinyDecode(b *testing.B) {
	m := tinyModel(b)
	cpu := NewCPU(m.Config, m.Weights, 256)
	prompt := make([]int, 64)
	_, err := cpu.Forward(prompt, 0, false)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cpu.Forward([]int{5}, 64, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}

func BenchmarkTinyPrefill128(b *testing.B) {
	m := tinyModel(b)
	cpu := NewCPU(m.Config, m.Weights, 128)
	prompt := make([]int, 128)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cpu.Forward(prompt, 0, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(128*b.N)/b.Elapsed().Seconds(), "tok/s")
}

// fullLayer builds one InternLM3-8B decoder layer with random weights: f32 (872 MB) or q4 (91 MB).
func fullLayer(b *testing.B, ctx int, dtype string) *CPU {
	c, err := ParseConfig("config.json", []byte(realConfig))
	if err != nil {
		b.Fatal(err)
	}
	c.NumHiddenLayers = 1
	rng := rand.New(rand.NewPCG(1, 1))
	randVec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * 0.02
		}
		return v
	}
	randLin := func(out, in int) Linear {
		if dtype == DTypeQ4 {
			return Linear{Out: out, In: in, Q: randomMatrix(rng, DTypeQ4, out, in, q4Block)}
		}
		return Linear{Out: out, In: in, W: randVec(out * in)}
	}
	D, Q, KV, F := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize
	w := &Weights{Layers: []Layer{{
		InputNorm: randVec(D), Q: randLin(Q, D), K: randLin(KV, D), V: randLin(KV, D), O: randLin(D, Q),
		PostNorm: randVec(D), Gate: randLin(F, D), Up: randLin(F, D), Down: randLin(D, F),
	}}}
	return NewCPU(c, w, ctx)
}

// One full-size layer, one token, attending over 512 cached positions.
func BenchmarkFullLayerDecode(b *testing.B) {
	cpu := fullLayer(b, 513, DTypeF32)
	limit := ReadBandwidth()
	x := make([]float32, cpu.Config.HiddenSize)
	inv := RopeInvFreq(cpu.Config, 513)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cpu.layer(0, x, 512, inv)
	}
	l := &cpu.Weights.Layers[0]
	bytes := float64(4 * (len(l.Q.W) + len(l.K.W) + len(l.V.W) + len(l.O.W) + len(l.Gate.W) + len(l.Up.W) + len(l.Down.W)))
	gbps := bytes * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "layer-tok/s")
	b.ReportMetric(gbps, "weight-GB/s")
	b.ReportMetric(gbps/limit, "of-read-bw")
}

// One full-size layer, a 64-token prefill.
func BenchmarkFullLayerPrefill64(b *testing.B) {
	cpu := fullLayer(b, 64, DTypeF32)
	x := make([]float32, 64*cpu.Config.HiddenSize)
	inv := RopeInvFreq(cpu.Config, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cpu.layer(0, x, 0, inv)
	}
	b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "layer-tok/s")
}

// One full-size q4 layer on the fast path: one token over 128 cached positions, and a 128-token prefill.
func BenchmarkFullLayerQ4(b *testing.B) {
	for _, T := range []int{1, 128} {
		b.Run(map[int]string{1: "decode", 128: "prefill128"}[T], func(b *testing.B) {
			cpu := fullLayer(b, 256, DTypeQ4)
			x := make([]float32, T*cpu.Config.HiddenSize)
			rng := rand.New(rand.NewPCG(2, 2))
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			inv := RopeInvFreq(cpu.Config, 256)
			for b.Loop() {
				cpu.layer(0, x, 128, inv)
				for i := range x { // keep the residual stream from growing without bound
					x[i] *= 0.5
				}
			}
			b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "layer-tok/s")
		})
	}
}
