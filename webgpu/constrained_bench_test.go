package webgpu

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/synth"
)

// BenchmarkConstrainedReadback compares, on a model with the tiny preset's layers and InternLM3's
// 128,512-token vocabulary, the two ways a constrained token can leave the GPU: the top-40 the
// unconstrained path reads back, and the whole logits (514 KB) the grammar masks on the CPU (what
// model.Session does when a grammar is set). The CPU side's mask and sampling are in model's
// BenchmarkGrammarMask.
func BenchmarkConstrainedReadback(b *testing.B) {
	d := testDevice(b)
	p := synth.Presets["tiny"]
	p.Name, p.VocabSize = "tiny-wide-vocab", 128512
	dir := filepath.Join(b.TempDir(), "m")
	require.NoError(b, synth.Write(p, dir, 1))
	m, err := model.Load(dir)
	require.NoError(b, err)
	gpu, err := New(d, m.Config, q4Weights(m.Weights), 512)
	require.NoError(b, err)
	defer gpu.Close()
	b.Run("topk40", func(b *testing.B) {
		context := []int{1}
		for i := range b.N {
			ids, _, err := gpu.ForwardTopK([]int{context[len(context)-1]}, i%512, 40, 1.005, context)
			require.NoError(b, err)
			context = append(context, ids[0])
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/tok")
	})
	b.Run("full_logits", func(b *testing.B) {
		for i := range b.N {
			_, err := gpu.Forward([]int{1}, i%512, false)
			require.NoError(b, err)
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/tok")
	})
}
