package webgpu

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"weak"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/converter"
	"github.com/ilmweb/ilmweb/model"
)

// convertedTiny converts the tiny checkpoint to q4 in 16 KiB shards, so that the model spans many and
// the embedding, lm_head and the larger layer matrices come in several parts.
func convertedTiny(t *testing.T) string {
	t.Helper()
	tinyModel(t) // writes tiny.dir
	dst := filepath.Join(t.TempDir(), "q4")
	_, err := converter.Convert(context.Background(), tiny.dir, dst, converter.Options{ShardSize: 16 << 10})
	require.NoError(t, err)
	return dst
}

// openConverted is model.OpenConverted, failing the test on error.
func openConverted(t *testing.T, dir string) (*model.Manifest, map[string][]byte, func(int) ([]byte, error)) {
	t.Helper()
	man, files, fetch, err := model.OpenConverted(dir)
	require.NoError(t, err)
	return man, files, fetch
}

// requireSameLogits runs the same prompt and greedy continuation on both engines, which must agree
// bit for bit: the same kernels on the same weights.
func requireSameLogits(t *testing.T, vocab int, want, got *Engine) {
	t.Helper()
	prompt := make([]int, 40)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range prompt {
		prompt[i] = rng.IntN(vocab)
	}
	a, err := want.Forward(prompt, 0, true)
	require.NoError(t, err)
	b, err := got.Forward(prompt, 0, true)
	require.NoError(t, err)
	require.Equal(t, a, b, "prompt logits")
	tok := argmax(a[len(a)-1])
	for pos := len(prompt); pos < len(prompt)+8; pos++ {
		idsA, valsA, err := want.ForwardTopK([]int{tok}, pos, 5, 1.1, prompt)
		require.NoError(t, err)
		idsB, valsB, err := got.ForwardTopK([]int{tok}, pos, 5, 1.1, prompt)
		require.NoError(t, err)
		require.Equal(t, idsA, idsB, "top-k at position %d", pos)
		require.Equal(t, valsA, valsB, "top-k at position %d", pos)
		tok = idsA[0]
	}
}

// A converted model streamed onto the GPU shard by shard gives the same logits, bit for bit, as the
// engine built from the whole model, with the same memory plan; the model it returns holds no matrix.
func TestLoadConvertedStreamed(t *testing.T) {
	d := testDevice(t)
	dir := convertedTiny(t)
	whole, err := model.Load(dir)
	require.NoError(t, err)
	ref, err := New(d, whole.Config, whole.Weights, 64)
	require.NoError(t, err)
	defer ref.Close()

	man, files, fetch := openConverted(t, dir)
	var reports []int64
	m, gpu, err := LoadConverted(d, man, files, fetch, func(done, total int64) {
		require.Equal(t, man.TotalBytes, total)
		reports = append(reports, done)
	}, Options{MaxContext: 64})
	require.NoError(t, err)
	defer gpu.Close()
	t.Logf("%d shards; engine memory %v", len(man.Shards), gpu.Memory())
	require.Len(t, reports, len(man.Shards))
	require.Equal(t, man.TotalBytes, reports[len(reports)-1])
	require.Equal(t, ref.Memory(), gpu.Memory())
	require.Equal(t, whole.Config, m.Config)
	for _, l := range append([]model.Linear{m.Weights.Embed, m.Weights.LMHead}, m.Weights.Layers[0].Q, m.Weights.Layers[1].Down) {
		require.Nil(t, l.Q, "the streamed model keeps no matrix")
		require.NotZero(t, l.Out)
	}
	require.Equal(t, whole.Weights.Norm, m.Weights.Norm)
	requireSameLogits(t, m.Config.VocabSize, ref, gpu)
}

// While a model streams in, the engine keeps no tensor it was given, except the first of gate and up
// until the second arrives: at every shard, the tensors handed over and still alive after a collection
// are at most one gate (or up) projection.
func TestLoadConvertedKeepsNothing(t *testing.T) {
	d := testDevice(t)
	dir := convertedTiny(t)
	man, files, fetch := openConverted(t, dir)
	l, err := NewLoader(d, man.ModelConfig, ManifestLayout(man), Options{MaxContext: 64})
	require.NoError(t, err)
	type handed struct {
		q     weak.Pointer[model.QuantMatrix]
		data  weak.Pointer[uint32]
		bytes int
	}
	var given []handed
	alive := func() (n int) {
		runtime.GC()
		for _, h := range given {
			if h.q.Value() != nil || h.data.Value() != nil {
				n += h.bytes
			}
		}
		return n
	}
	c := man.ModelConfig
	pending := 4 * c.IntermediateSize * (c.HiddenSize/8 + c.HiddenSize/32/2) // a q4 gate projection
	peak := 0
	_, err = model.LoadConvertedWith(man, files, func(i int) ([]byte, error) {
		n := alive()
		peak = max(peak, n)
		require.LessOrEqual(t, n, pending, "before shard %d: %d bytes of tensors handed over are still alive", i, n)
		return fetch(i)
	}, model.LoadOptions{Sink: func(name string, q *model.QuantMatrix) (bool, error) {
		given = append(given, handed{weak.Make(q), weak.Make(&q.Data[0]), 4 * (len(q.Data) + len(q.Scales))})
		return false, l.Put(name, q)
	}})
	require.NoError(t, err)
	e, err := l.Finish()
	require.NoError(t, err)
	defer e.Close()
	require.Zero(t, alive(), "after the load")
	t.Logf("%d tensors handed over; at most %d bytes of them alive at once (a gate projection is %d)", len(given), peak, pending)
}

// Tensors may come in any order: put in a random one, they give the engine New builds from the whole
// model; a missing, unknown, repeated or misshapen tensor is an error.
func TestLoaderAnyOrder(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	w := q4Weights(m.Weights)
	ref, err := New(d, m.Config, w, 64)
	require.NoError(t, err)
	defer ref.Close()

	ts := weightsTensors(w)
	layout := Layout{}
	for _, wt := range ts {
		layout[wt.name] = wt.header()
	}
	rand.New(rand.NewPCG(3, 3)).Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
	l, err := NewLoader(d, m.Config, layout, Options{MaxContext: 64})
	require.NoError(t, err)
	require.Equal(t, ref.Memory(), l.Memory())
	for _, wt := range ts[1:] {
		require.NoError(t, l.Put(wt.name, wt.matrix()))
	}
	err = l.Put("model.layers.9.mlp.up_proj.weight", ts[0].matrix())
	require.ErrorContains(t, err, `tensor "model.layers.9.mlp.up_proj.weight" is not part of the model`)
	err = l.Put(ts[1].name, ts[1].matrix())
	require.ErrorContains(t, err, fmt.Sprintf("tensor %q arrived twice", ts[1].name))
	require.NoError(t, l.Put(ts[0].name, ts[0].matrix()))
	e, err := l.Finish()
	require.NoError(t, err)
	defer e.Close()
	requireSameLogits(t, m.Config.VocabSize, ref, e)

	// a misshapen tensor, then a load that ends before every tensor came
	wrong := weightsTensor{lin: &w.Layers[0].K}
	l, err = NewLoader(d, m.Config, layout, Options{MaxContext: 64})
	require.NoError(t, err)
	err = l.Put("model.layers.1.self_attn.q_proj.weight", wrong.matrix())
	require.ErrorContains(t, err, `tensor "model.layers.1.self_attn.q_proj.weight" is q4 [64, 128] (group 32); the layout said q4 [128, 128] (group 32)`)
	require.NoError(t, l.Put("model.norm.weight", weightsTensor{vec: w.Norm}.matrix()))
	_, err = l.Finish()
	require.ErrorContains(t, err, fmt.Sprintf("webgpu: %d tensors never arrived: lm_head.weight, model.embed_tokens.weight, model.layers.0.input_layernorm.weight and", len(layout)-1))
	require.ErrorContains(t, l.Put("model.norm.weight", nil), "after the loader finished")
}
