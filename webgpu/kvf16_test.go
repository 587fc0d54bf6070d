package webgpu

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/internal/golden"
	"github.com/ilmweb/ilmweb/model"
)

// The f16 KV cache against the independent reference's log-probs (testdata/golden), as
// TestEngineMatchesGolden runs the f32 one: the deviation is reported (docs/BENCHMARKS.md), the greedy
// tokens must be the reference's, and a bound catches broken packing as TestEngineKVF16's does.
func TestEngineKVF16Goldens(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	g, err := golden.LoadTiny("..")
	require.NoError(t, err)
	gpu, err := NewWithOptions(d, m.Config, m.Weights, Options{MaxContext: 512, KVF16: true})
	require.NoError(t, err)
	defer gpu.Close()
	logits, err := gpu.Forward(g.Sequence.IDs, 0, true)
	require.NoError(t, err)
	var seq float64
	for pos := range g.Sequence.IDs {
		seq = math.Max(seq, golden.MaxDiff(logits[pos], g.SequenceLogprobs[pos]))
	}
	rec := &recorder{Decoder: gpu}
	res, err := model.NewSession(rec, m.Config).Generate(context.Background(), g.Greedy.PromptIDs,
		model.GenerateOptions{MaxTokens: len(g.Greedy.Tokens), Sampling: model.Greedy()}, func(int) error { return nil })
	require.NoError(t, err)
	require.True(t, slices.Equal(g.Greedy.Tokens, res.Tokens), "greedy tokens with the f16 KV cache")
	var greedy float64
	for step := range g.GreedyLogprobs {
		greedy = math.Max(greedy, golden.MaxDiff(rec.logits[step], g.GreedyLogprobs[step]))
	}
	t.Logf("f16 KV cache on the goldens: sequence of %d max |Δ log-prob| %.2e; greedy %d identical tokens, max %.2e",
		len(g.Sequence.IDs), seq, len(res.Tokens), greedy)
	require.Less(t, math.Max(seq, greedy), 0.05)
}
