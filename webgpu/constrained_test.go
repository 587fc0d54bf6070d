package webgpu

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
)

// Constrained decoding on the GPU engine: the grammar masks the whole logits read back, so a greedy
// constrained answer is the CPU engine's on the same q4 weights, and sampled ones parse.
func TestEngineConstrained(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	w := q4Weights(m.Weights)
	vocab := model.NewVocab(m.Tokenizer, m.Stop)
	g, err := model.SchemaGrammar(vocab, []byte(`{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2}}, "required": ["a", "b"]}`))
	require.NoError(t, err)
	prompt := m.Chat.Encode([]model.Message{{Role: "user", Content: "JSON, please."}}, true)
	gpu, err := New(d, m.Config, w, 256)
	require.NoError(t, err)
	defer gpu.Close()
	answer := func(dec model.Decoder, s model.SamplingParams) string {
		res, err := model.NewSession(dec, m.Config).Generate(context.Background(), prompt,
			model.GenerateOptions{MaxTokens: 48, Stop: m.Stop, Sampling: s, Grammar: g}, func(int) error { return nil })
		require.NoError(t, err)
		text := m.Tokenizer.Decode(res.Tokens)
		var v struct {
			A json.Number `json:"a"`
			B []string    `json:"b"`
		}
		require.NoError(t, json.Unmarshal([]byte(text), &v), text)
		require.Regexp(t, `^-?(0|[1-9][0-9]*)$`, string(v.A), text) // an integer, maybe beyond int64
		return text
	}
	require.Equal(t, answer(model.NewCPU(m.Config, w, 256), model.Greedy()), answer(gpu, model.Greedy()))
	for seed := range 3 {
		s := model.DefaultSampling()
		s.Seed = uint64(seed)
		t.Log(answer(gpu, s))
	}
}
