package webgpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkMatvec times q4 matvec at the 8B model's shapes, per variant the device runs (variants.go);
// bytes/s is the weight read bandwidth, the number decoding speed follows, and of-copy-bw its ratio to the
// copy probe measured in the same run.
func BenchmarkMatvec(b *testing.B) {
	d := testDevice(b)
	gbps, err := d.CopyBandwidth(64 << 20)
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range []struct{ rows, cols int }{{4096, 4096}, {10240, 4096}, {4096, 10240}} {
		q := quantizeQ4(randFloats(rng, s.rows*s.cols, 0.02), s.rows, s.cols)
		m, err := d.matrix("w", q, d.Limits.MaxStorageBufferBindingSize)
		require.NoError(b, err)
		for _, v := range MatvecVariants() {
			if err := d.checkKernels(Kernels{Matvec: v}); err != nil {
				b.Logf("VARIANT NOT RUN: matvec %s: %v", v, err)
				continue
			}
			b.Run(fmt.Sprintf("q4_%dx%d_%s", s.rows, s.cols, v), func(b *testing.B) {
				y, err := d.buffer("y", uint64(4*s.rows), storage)
				require.NoError(b, err)
				x, err := upload(d, "x", randFloats(rng, s.cols, 1))
				require.NoError(b, err)
				step, err := d.stepBuffer()
				require.NoError(b, err)
				require.NoError(b, d.setStep(step, 0, 1))
				cs, err := d.linear("matvec", m, step, x, y, nil, fusion{variant: v})
				require.NoError(b, err)
				staging, err := d.readback("staging", 16)
				require.NoError(b, err)
				bytes := int64(4 * (len(q.Data) + len(q.Scales)))
				b.SetBytes(bytes)
				b.ResetTimer()
				for range b.N {
					require.NoError(b, d.run(1, cs...))
				}
				_, err = d.read(y, staging, 0, 16) // waits for the submitted work
				require.NoError(b, err)
				b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/1e9/gbps, "of-copy-bw")
			})
		}
	}
	b.Logf("copy probe: %.2f GB/s (read + write) on %s", gbps, d.Adapter)
}

// BenchmarkMatmul times the prefill's q4 matmul at the 8B model's shapes for a pass of 32 and of 128 tokens
// (the page's and the native prefill chunk), per variant the device runs: tokens/s through the one
// projection, its multiply-adds per second, and the weight bytes per second (weights read once per call)
// as a ratio to the copy probe measured in the same run.
func BenchmarkMatmul(b *testing.B) {
	d := testDevice(b)
	gbps, err := d.CopyBandwidth(64 << 20)
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range []struct{ rows, cols int }{{4096, 4096}, {20480, 4096}, {4096, 10240}} {
		q := quantizeQ4(randFloats(rng, s.rows*s.cols, 0.02), s.rows, s.cols)
		m, err := d.matrix("w", q, d.Limits.MaxStorageBufferBindingSize)
		require.NoError(b, err)
		for _, T := range []int{32, 128} {
			for _, v := range MatmulVariants() {
				if err := d.checkKernels(Kernels{Matmul: v}); err != nil {
					b.Logf("VARIANT NOT RUN: matmul %s: %v", v, err)
					continue
				}
				b.Run(fmt.Sprintf("q4_%dx%d_T%d_%s", s.rows, s.cols, T, v), func(b *testing.B) {
					y, err := d.buffer("y", uint64(4*s.rows*T), storage)
					require.NoError(b, err)
					x, err := upload(d, "x", randFloats(rng, s.cols*T, 1))
					require.NoError(b, err)
					step, err := d.stepBuffer()
					require.NoError(b, err)
					require.NoError(b, d.setStep(step, 0, T))
					cs, err := d.linear("matmul", m, step, x, y, nil, fusion{variant: v})
					require.NoError(b, err)
					staging, err := d.readback("staging", 16)
					require.NoError(b, err)
					require.NoError(b, d.run(T, cs...)) // warm-up
					_, err = d.read(y, staging, 0, 16)
					require.NoError(b, err)
					bytes := int64(4 * (len(q.Data) + len(q.Scales)))
					b.ResetTimer()
					for range b.N {
						require.NoError(b, d.run(T, cs...))
					}
					_, err = d.read(y, staging, 0, 16) // waits for the submitted work
					require.NoError(b, err)
					sec := b.Elapsed().Seconds()
					b.ReportMetric(float64(T*b.N)/sec, "tok/s")
					b.ReportMetric(float64(s.rows*s.cols*T*b.N)/sec/1e9, "GMAC/s")
					b.ReportMetric(float64(bytes)*float64(b.N)/sec/1e9/gbps, "of-copy-bw")
				})
			}
		}
	}
	b.Logf("copy probe: %.2f GB/s (read + write) on %s", gbps, d.Adapter)
}

// BenchmarkForward times the tiny q4 model on the engine: decoding (one token per call, the top-40 read
// back as the chat samples it, or greedy with the whole logits read back) and prefill of a 128-token
// prompt. It reports tokens per second, dispatches and submits per token, and weight bytes per second as
// a ratio to the copy probe's bandwidth.
func BenchmarkForward(b *testing.B) {
	d := testDevice(b)
	m := tinyModel(b)
	gbps, err := d.CopyBandwidth(64 << 20)
	require.NoError(b, err)
	prompt := make([]int, 128)
	for i := range prompt {
		prompt[i] = (7 * i) % m.Config.VocabSize
	}
	report := func(b *testing.B, gpu *Engine, c Counts) {
		b.ReportMetric(float64(c.Tokens)/b.Elapsed().Seconds(), "tok/s")
		b.ReportMetric(c.DispatchesPerToken(), "dispatches/tok")
		b.ReportMetric(c.SubmitsPerToken(), "submits/tok")
		b.ReportMetric(float64(c.WeightBytes)/b.Elapsed().Seconds()/1e9/gbps, "of-copy-bw")
	}
	b.Run("decode_topk", func(b *testing.B) {
		gpu, err := New(d, m.Config, q4Weights(m.Weights), 512)
		require.NoError(b, err)
		defer gpu.Close()
		context := []int{1}
		b.ResetTimer()
		for i := range b.N {
			ids, _, err := gpu.ForwardTopK([]int{context[len(context)-1]}, i%512, 40, 1.005, context)
			require.NoError(b, err)
			context = append(context, ids[0])
			if len(context) == 512 {
				context = context[:1]
			}
		}
		report(b, gpu, gpu.Stats().Decode)
	})
	b.Run("decode_logits", func(b *testing.B) {
		gpu, err := New(d, m.Config, q4Weights(m.Weights), 512)
		require.NoError(b, err)
		defer gpu.Close()
		b.ResetTimer()
		for i := range b.N {
			_, err := gpu.Forward([]int{1}, i%512, false)
			require.NoError(b, err)
		}
		report(b, gpu, gpu.Stats().Decode)
	})
	b.Run("prefill_128", func(b *testing.B) {
		gpu, err := New(d, m.Config, q4Weights(m.Weights), 512)
		require.NoError(b, err)
		defer gpu.Close()
		b.ResetTimer()
		for range b.N {
			_, err := gpu.Forward(prompt, 0, false)
			require.NoError(b, err)
		}
		report(b, gpu, gpu.Stats().Prefill)
	})
	b.Logf("copy probe: %.2f GB/s (read + write) on %s", gbps, d.Adapter)
}
