package webgpu

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/internal/golden"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/synth"
)

var tiny struct {
	once sync.Once
	dir  string
	err  error
}

// tinyModel loads the synthetic tiny checkpoint (seed 1) that testdata/golden/tiny describes.
func tinyModel(t testing.TB) *model.Model {
	t.Helper()
	tiny.once.Do(func() {
		dir, err := os.MkdirTemp("", "tiny-hf-")
		if err != nil {
			tiny.err = err
			return
		}
		tiny.dir = filepath.Join(dir, "tiny")
		tiny.err = synth.Write(synth.Presets["tiny"], tiny.dir, 1)
	})
	require.NoError(t, tiny.err)
	m, err := model.Load(tiny.dir)
	require.NoError(t, err)
	return m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tiny.dir != "" {
		os.RemoveAll(filepath.Dir(tiny.dir))
	}
	os.Exit(code)
}

// q4Weights returns w with every matrix quantized to q4, as a converted model holds it: Linear.Q for the
// GPU, and Linear.W its dequantized values for the CPU reference, so both backends run the same model.
func q4Weights(w *model.Weights) *model.Weights {
	quant := func(l model.Linear) model.Linear {
		q := quantizeQ4(l.W, l.Out, l.In)
		d := dequantize(q)
		d.Bias, d.Q = l.Bias, q
		return d
	}
	out := &model.Weights{Embed: quant(w.Embed), Norm: w.Norm, LMHead: quant(w.LMHead)}
	for _, l := range w.Layers {
		out.Layers = append(out.Layers, model.Layer{
			InputNorm: l.InputNorm, Q: quant(l.Q), K: quant(l.K), V: quant(l.V), O: quant(l.O),
			PostNorm: l.PostNorm, Gate: quant(l.Gate), Up: quant(l.Up), Down: quant(l.Down),
		})
	}
	return out
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// randomModel is an in-memory decoder (so the test also runs where there is no file system, as in a
// browser) with awkward shapes: query width unlike the hidden size, one KV head per three query heads, an
// odd vocabulary (unless vocab says otherwise), biases on q, k, v and o, and max_position_embeddings low
// enough for dynamic NTK RoPE.
func randomModel(seed uint64, vocab int) (*model.Config, *model.Weights) {
	c := &model.Config{
		HiddenSize: 160, IntermediateSize: 416, NumHiddenLayers: 2, NumAttentionHeads: 6, NumKeyValueHeads: 2,
		HeadDim: 16, VocabSize: vocab, MaxPositionEmbeddings: 64, RopeTheta: 10000,
		RopeScaling: &model.RopeScaling{Factor: 6, RopeType: "dynamic"}, RMSNormEps: 1e-5, Bias: true, QKVBias: true,
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	D, Q, KV, F, V := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize, c.VocabSize
	// Linear layers keep the activations' scale; lm_head's gain 2 gives the next token clear winners.
	lin := func(out, in int, gain float32, bias bool) model.Linear {
		l := model.Linear{Out: out, In: in, W: randFloats(rng, out*in, gain*float32(math.Sqrt(3/float64(in))))}
		if bias {
			l.Bias = randFloats(rng, out, 0.1)
		}
		return l
	}
	norm := func() []float32 {
		v := randFloats(rng, D, 0.2)
		for i := range v {
			v[i]++
		}
		return v
	}
	w := &model.Weights{Embed: model.Linear{Out: V, In: D, W: randFloats(rng, V*D, 1.7)}}
	for range c.NumHiddenLayers {
		w.Layers = append(w.Layers, model.Layer{
			InputNorm: norm(), Q: lin(Q, D, 1, true), K: lin(KV, D, 1, true), V: lin(KV, D, 1, true), O: lin(D, Q, 1, true),
			PostNorm: norm(), Gate: lin(F, D, 1, false), Up: lin(F, D, 1, false), Down: lin(D, F, 1, false),
		})
	}
	w.Norm, w.LMHead = norm(), lin(V, D, 2, false)
	return c, w
}

// The GPU engine against model.CPU on the same weights (f32, and q4 dequantized for the CPU), on the random
// model and on the synthetic tiny checkpoint: a prompt prefilled in two calls, then 64 greedy steps that
// cross max_position_embeddings (dynamic NTK RoPE). Every position's log-probs must agree within 2e-3.
func TestEngineMatchesCPU(t *testing.T) {
	d := testDevice(t)
	for _, src := range []struct {
		name string
		load func(t *testing.T) (*model.Config, *model.Weights)
	}{
		{"random", func(*testing.T) (*model.Config, *model.Weights) { return randomModel(1, 999) }},
		{"tiny", func(t *testing.T) (*model.Config, *model.Weights) { m := tinyModel(t); return m.Config, m.Weights }},
	} {
		t.Run(src.name, func(t *testing.T) {
			cfg, weights := src.load(t)
			t.Run("f32", func(t *testing.T) { decodeAgainstCPU(t, d, cfg, weights, Options{}) })
			t.Run("q4", func(t *testing.T) { decodeAgainstCPU(t, d, cfg, q4Weights(weights), Options{}) })
		})
	}
}

// decodeAgainstCPU runs w on the GPU (its Linear.Q where set; o's kernels, autotuned where empty) and on
// the CPU (Linear.W).
func decodeAgainstCPU(t *testing.T, d *Device, cfg *model.Config, w *model.Weights, o Options) {
	const steps = 64
	prompt := make([]int, cfg.MaxPositionEmbeddings-steps/2)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range prompt {
		prompt[i] = rng.IntN(cfg.VocabSize)
	}
	maxCtx := len(prompt) + steps
	o.MaxContext = maxCtx
	gpu, err := NewWithOptions(d, cfg, w, o)
	require.NoError(t, err)
	defer gpu.Close()
	t.Logf("kernels: %v", gpu.Tuning())
	cpu := model.NewCPU(cfg, w, maxCtx)
	var worst float64
	compare := func(what string, pos int, got, want [][]float32) {
		require.Len(t, got, len(want))
		for i := range want {
			diff := golden.LogprobDiff(got[i], want[i])
			require.LessOrEqualf(t, diff, 2e-3, "%s: position %d: max |Δ log-prob|", what, pos+i)
			worst = math.Max(worst, diff)
		}
	}
	// prefill: all logits of a first chunk, then only the last of the rest
	half := len(prompt) / 2
	for _, c := range []struct {
		lo, hi int
		all    bool
	}{{0, half, true}, {half, len(prompt), false}} {
		got, err := gpu.Forward(prompt[c.lo:c.hi], c.lo, c.all)
		require.NoError(t, err)
		want, err := cpu.Forward(prompt[c.lo:c.hi], c.lo, c.all)
		require.NoError(t, err)
		compare("prefill", c.lo, got, want)
	}
	// greedy decoding, from the last prompt token run again
	got, err := gpu.Forward(prompt[len(prompt)-1:], len(prompt)-1, false)
	require.NoError(t, err)
	want, err := cpu.Forward(prompt[len(prompt)-1:], len(prompt)-1, false)
	require.NoError(t, err)
	for pos := len(prompt); pos < maxCtx; pos++ {
		tok := argmax(want[0])
		require.Equal(t, tok, argmax(got[0]), "greedy token at position %d", pos)
		got, err = gpu.Forward([]int{tok}, pos, false)
		require.NoError(t, err)
		want, err = cpu.Forward([]int{tok}, pos, false)
		require.NoError(t, err)
		compare("decode", pos, got, want)
	}
	t.Logf("%d positions, %d identical greedy tokens, max |Δ log-prob| %.2e", maxCtx, steps, worst)
}

// The f16 KV cache option against model.CPU (whose cache is f32) on the tiny model and the random one:
// prefill and 64 greedy steps as in TestEngineMatchesCPU, reporting the deviation that rounding keys and
// values to f16 causes. Its bound only catches broken packing (which is off by whole units); the parity
// tests keep the f32 cache.
func TestEngineKVF16(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	rc, rw := randomModel(1, 999)
	for _, src := range []struct {
		name string
		cfg  *model.Config
		w    *model.Weights
	}{{"tiny f32", m.Config, m.Weights}, {"tiny q4", m.Config, q4Weights(m.Weights)}, {"random f32", rc, rw}} {
		worst, flips, f16 := deviation(t, d, src.cfg, src.w, Options{KVF16: true})
		f32, err := New(d, src.cfg, src.w, f16.maxCtx)
		require.NoError(t, err)
		require.Equal(t, f32.Memory().KVCache/2, f16.Memory().KVCache)
		t.Logf("%s, f16 KV cache: %d positions, max |Δ log-prob| %.2e, %d of 64 greedy tokens differ", src.name, f16.maxCtx, worst, flips)
		require.Less(t, worst, 0.05, src.name)
		f32.Close()
	}
}

// deviation runs the engine with o against model.CPU (f32 throughout) as TestEngineMatchesCPU does, without
// its bound: a prompt prefilled with every position's logits, then 64 greedy steps (the CPU's tokens). It
// returns the largest |Δ log-prob|, how many greedy tokens the GPU would have picked differently, and the
// engine (closed when the test ends).
func deviation(t *testing.T, d *Device, cfg *model.Config, w *model.Weights, o Options) (float64, int, *Engine) {
	const steps = 64
	prompt := make([]int, cfg.MaxPositionEmbeddings-steps/2)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range prompt {
		prompt[i] = rng.IntN(cfg.VocabSize)
	}
	maxCtx := len(prompt) + steps
	o.MaxContext = maxCtx
	gpu, err := NewWithOptions(d, cfg, w, o)
	require.NoError(t, err)
	t.Cleanup(gpu.Close)
	cpu := model.NewCPU(cfg, w, maxCtx)
	got, err := gpu.Forward(prompt, 0, true)
	require.NoError(t, err)
	want, err := cpu.Forward(prompt, 0, true)
	require.NoError(t, err)
	var worst float64
	flips := 0
	for pos := 0; ; pos++ {
		for i := range want {
			worst = math.Max(worst, golden.LogprobDiff(got[i], want[i]))
		}
		if pos == 0 {
			pos = len(prompt)
		}
		if pos == maxCtx {
			break
		}
		tok := argmax(want[len(want)-1])
		if argmax(got[len(got)-1]) != tok {
			flips++
		}
		got, err = gpu.Forward([]int{tok}, pos, false)
		require.NoError(t, err)
		want, err = cpu.Forward([]int{tok}, pos, false)
		require.NoError(t, err)
	}
	return worst, flips, gpu
}

// The engine with f32 weights against the independent reference's log-probs, through model.Session as
// the chat uses it.
func TestEngineMatchesGolden(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	g, err := golden.LoadTiny("..")
	require.NoError(t, err)
	seq, greedy := g.SequenceLogprobs, g.GreedyLogprobs
	gpu, err := New(d, m.Config, m.Weights, 512)
	require.NoError(t, err)

	logits, err := gpu.Forward(g.Sequence.IDs, 0, true)
	require.NoError(t, err)
	var worst float64
	for pos := range g.Sequence.IDs {
		diff := golden.MaxDiff(logits[pos], seq[pos])
		require.LessOrEqual(t, diff, 2e-3, "sequence position %d", pos)
		worst = math.Max(worst, diff)
	}
	t.Logf("sequence: %d positions, max |Δ log-prob| %.2e", len(g.Sequence.IDs), worst)

	rec := &recorder{Decoder: gpu}
	res, err := model.NewSession(rec, m.Config).Generate(context.Background(), g.Greedy.PromptIDs,
		model.GenerateOptions{MaxTokens: len(g.Greedy.Tokens), Sampling: model.Greedy()}, func(int) error { return nil })
	require.NoError(t, err)
	require.Equal(t, g.Greedy.Tokens, res.Tokens)
	worst = 0
	for step := range greedy {
		diff := golden.MaxDiff(rec.logits[step], greedy[step])
		require.LessOrEqual(t, diff, 2e-3, "greedy step %d", step)
		worst = math.Max(worst, diff)
	}
	t.Logf("greedy: %d identical tokens, max |Δ log-prob| %.2e", len(res.Tokens), worst)
}

type recorder struct {
	model.Decoder
	logits [][]float32
}

func (r *recorder) Forward(tokens []int, pos int, all bool) ([][]float32, error) {
	out, err := r.Decoder.Forward(tokens, pos, all)
	if err == nil {
		r.logits = append(r.logits, append([]float32(nil), out[len(out)-1]...))
	}
	return out, err
}

func TestEngineRejectsBadInput(t *testing.T) {
	d := testDevice(t)
	cfg, weights := randomModel(2, 999)
	gpu, err := New(d, cfg, weights, 8)
	require.NoError(t, err)
	require.Equal(t, 8, gpu.MaxContext())
	_, err = gpu.Forward([]int{1, 2, 3}, 6, false)
	require.ErrorContains(t, err, "context length 8")
	_, err = gpu.Forward([]int{cfg.VocabSize}, 0, false)
	require.ErrorContains(t, err, "outside vocab")
	_, err = gpu.Forward(nil, 0, false)
	require.Error(t, err)

	for _, tc := range []struct {
		spoil func(w *model.Weights)
		want  string
	}{
		{func(w *model.Weights) { w.Layers[1].Up.W = nil }, "missing tensor model.layers.1.mlp.up_proj.weight"},
		{func(w *model.Weights) { w.Layers[0].K = w.Layers[0].Q }, "model.layers.0.self_attn.k_proj.weight: shape"},
		{func(w *model.Weights) { w.Layers[0].V.Bias = w.Layers[0].V.Bias[:3] }, "model.layers.0.self_attn.v_proj.bias has 3 values"},
		{func(w *model.Weights) { // a dtype the GPU engine does not read yet
			q := &model.QuantMatrix{DType: model.DTypeQ8, Rows: w.LMHead.Out, Cols: w.LMHead.In, Group: 32}
			q.Data, q.Scales = make([]uint32, q.Rows*q.RowWords()), make([]uint32, q.Rows*q.ScaleWords())
			w.LMHead.Q = q
		}, "lm_head.weight: q8"},
		{func(w *model.Weights) { // q and v in f32, k in q4: fused into one matrix, they must agree
			w.Layers[0].K.Q = quantizeQ4(w.Layers[0].K.W, w.Layers[0].K.Out, w.Layers[0].K.In)
		}, "model.layers.0.self_attn.k_proj.weight is q4 (group 32) but model.layers.0.self_attn.q_proj.weight is f32"},
	} {
		w := *weights
		w.Layers = slices.Clone(weights.Layers)
		tc.spoil(&w)
		_, err = New(d, cfg, &w, 8)
		require.ErrorContains(t, err, tc.want)
	}
	_, err = New(d, cfg, weights, int(d.Limits.MaxStorageBufferBindingSize))
	require.ErrorContains(t, err, "KV cache")
	_, _, err = gpu.ForwardTopK([]int{1}, 0, 65, 1, nil)
	require.ErrorContains(t, err, "k must be 1 … 64")
	_, _, err = gpu.ForwardTopK([]int{1}, 0, 0, 1, nil)
	require.Error(t, err)
}

// The memory plan is checked before anything is allocated: against the budget, and against the device's
// binding limit, with the bytes needed and available in the message.
func TestEngineMemoryPlan(t *testing.T) {
	d := testDevice(t)
	cfg, weights := randomModel(3, 999)
	gpu, err := NewWithOptions(d, cfg, weights, Options{MaxContext: 100})
	require.NoError(t, err)
	mem := gpu.Memory()
	gpu.Close()
	t.Logf("random model, context 100: %v", mem)
	// every weight, f32: the embedding, layers and head
	D, Q, KV, F, V := cfg.HiddenSize, cfg.QDim(), cfg.KVDim(), cfg.IntermediateSize, cfg.VocabSize
	layer := D*Q + Q + 2*(D*KV+KV) + Q*D + D + 3*D*F + 2*D
	require.Equal(t, uint64(4*(2*V*D+D+cfg.NumHiddenLayers*layer)), mem.Weights)
	require.Equal(t, uint64(4*2*cfg.NumHiddenLayers*100*KV), mem.KVCache)

	_, err = NewWithOptions(d, cfg, weights, Options{MaxContext: 100, MemoryBudget: mem.Total() - 1})
	require.ErrorIs(t, err, ErrOutOfMemory)
	require.ErrorContains(t, err, fmt.Sprintf("the engine needs %d bytes (weights %d, KV cache %d, scratch %d), the budget is %d bytes",
		mem.Total(), mem.Weights, mem.KVCache, mem.Scratch, mem.Total()-1))
	gpu, err = NewWithOptions(d, cfg, weights, Options{MaxContext: 100, MemoryBudget: mem.Total()})
	require.NoError(t, err)
	gpu.Close()

	// a context whose per-layer cache binding exceeds the device's limit
	maxCtx := int(d.Limits.MaxStorageBufferBindingSize/uint64(4*KV)) + 1
	_, err = New(d, cfg, weights, maxCtx)
	require.ErrorContains(t, err, fmt.Sprintf("a KV cache of %d positions needs a %d-byte buffer; the device allows %d",
		maxCtx, 4*maxCtx*KV, d.Limits.MaxStorageBufferBindingSize))
	require.ErrorIs(t, err, ErrLimits) // the browser's engine reports it as "limits"
}

// Dispatches, submits and weight bytes per token, as the engine counts them: a decoded token is one pass,
// one submit, of 6 dispatches per layer plus the embedding and the head, reading every weight once (and one
// row of the embedding).
func TestEngineStats(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	w := q4Weights(m.Weights)
	gpu, err := New(d, m.Config, w, 300)
	require.NoError(t, err)
	defer gpu.Close()
	L := m.Config.NumHiddenLayers
	bytes := func(l model.Linear) uint64 { return uint64(4 * (len(l.Q.Data) + len(l.Q.Scales) + len(l.Bias))) }
	weights := bytes(w.LMHead) + uint64(4*len(w.Norm)) + bytes(w.Embed)/uint64(w.Embed.Out)
	for _, l := range w.Layers {
		weights += bytes(l.Q) + bytes(l.K) + bytes(l.V) + bytes(l.O) + bytes(l.Gate) + bytes(l.Up) + bytes(l.Down) +
			uint64(4*(len(l.InputNorm)+len(l.PostNorm)))
	}

	prompt := make([]int, 150) // two prefill passes: 128 and 22 tokens
	for i := range prompt {
		prompt[i] = (3 * i) % m.Config.VocabSize
	}
	_, err = gpu.Forward(prompt, 0, false)
	require.NoError(t, err)
	for i := range 5 {
		_, err = gpu.Forward([]int{i}, len(prompt)+i, false)
		require.NoError(t, err)
	}
	s := gpu.Stats()
	require.Positive(t, s.Decode.Encoding)
	perLayer := 6 // dispatches of a decoded token's layer: 7 with split-KV attention (split, then merge)
	if attentionSplits(gpu.Tuning().Kernels.Attention) > 0 {
		perLayer = 7
	}
	decode := s.Decode
	decode.Encoding = 0
	require.Equal(t, Counts{Calls: 5, Tokens: 5, Dispatches: 5 * (perLayer*L + 2), Submits: 5, WeightBytes: 5 * weights,
		ReadbackBytes: 5 * uint64(4*m.Config.VocabSize)}, decode)
	require.Equal(t, float64(perLayer*L+2), s.Decode.DispatchesPerToken())
	require.Equal(t, 1.0, s.Decode.SubmitsPerToken())
	require.Equal(t, float64(weights), s.Decode.WeightBytesPerToken())
	require.Equal(t, 1, s.Prefill.Calls)
	require.Equal(t, 150, s.Prefill.Tokens)
	require.Equal(t, 2, s.Prefill.Submits)
	require.Equal(t, 2*(1+6*L)+1, s.Prefill.Dispatches) // the head runs for the last token only
	t.Logf("decode: %.0f dispatches, %.0f submits, %.0f weight bytes per token; prefill: %.2f dispatches, %.3f submits, %.0f weight bytes per token",
		s.Decode.DispatchesPerToken(), s.Decode.SubmitsPerToken(), s.Decode.WeightBytesPerToken(),
		s.Prefill.DispatchesPerToken(), s.Prefill.SubmitsPerToken(), s.Prefill.WeightBytesPerToken())

	// top-k adds the penalty (when there is one) and the selection (one dispatch: the vocab fits one slice),
	// and reads back k pairs
	_, _, err = gpu.ForwardTopK([]int{7}, len(prompt)+5, 40, 1.1, prompt)
	require.NoError(t, err)
	_, _, err = gpu.ForwardTopK([]int{7}, len(prompt)+6, 1, 1, prompt)
	require.NoError(t, err)
	s2 := gpu.Stats().Decode
	require.Equal(t, 7, s2.Calls)
	require.Len(t, gpu.sampling.topk, 1)
	require.Equal(t, s.Decode.Dispatches+(perLayer*L+2+2)+(perLayer*L+2+1), s2.Dispatches)
	require.Equal(t, 7, s2.Submits)
	require.Equal(t, s.Decode.ReadbackBytes+8*40+8, s2.ReadbackBytes)
}

// Prompts of several lengths in one Forward call (so in passes of up to 128 tokens, through the tiled
// kernels) against model.CPU: every position's log-probs, then a few decoded tokens on the cache the
// prefill left. The 150-token prompt passes max_position_embeddings (128), so dynamic NTK RoPE scales
// all of its passes by the call's length.
func TestEnginePrefill(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	for _, dtype := range []string{"f32", "q4"} {
		w := m.Weights
		if dtype == "q4" {
			w = q4Weights(w)
		}
		for _, n := range []int{1, 7, 64, 150} {
			rng := rand.New(rand.NewPCG(uint64(n), 5))
			prompt := make([]int, n)
			for i := range prompt {
				prompt[i] = rng.IntN(m.Config.VocabSize)
			}
			maxCtx := n + 20
			gpu, err := New(d, m.Config, w, maxCtx)
			require.NoError(t, err)
			cpu := model.NewCPU(m.Config, w, maxCtx)
			for _, all := range []bool{true, false} {
				got, err := gpu.Forward(prompt, 0, all)
				require.NoError(t, err)
				want, err := cpu.Forward(prompt, 0, all)
				require.NoError(t, err)
				require.Len(t, got, len(want))
				var worst float64
				for i := range want {
					diff := golden.LogprobDiff(got[i], want[i])
					require.LessOrEqualf(t, diff, 2e-3, "%s prompt of %d, all=%v: row %d", dtype, n, all, i)
					worst = math.Max(worst, diff)
				}
				t.Logf("%s prompt of %d tokens, all=%v: max |Δ log-prob| %.2e", dtype, n, all, worst)
			}
			// a second prompt chunk after the first (prefill attending to cached keys), then greedy decoding
			more := []int{5, 6, 7, 8, 9, 10, 11, 12}
			got, err := gpu.Forward(more, n, false)
			require.NoError(t, err)
			want, err := cpu.Forward(more, n, false)
			require.NoError(t, err)
			for pos := n + len(more); pos < maxCtx; pos++ {
				require.LessOrEqual(t, golden.LogprobDiff(got[0], want[0]), 2e-3, "%s prompt of %d: position %d", dtype, n, pos)
				tok := argmax(want[0])
				require.Equal(t, tok, argmax(got[0]), "%s prompt of %d: greedy token at position %d", dtype, n, pos)
				got, err = gpu.Forward([]int{tok}, pos, false)
				require.NoError(t, err)
				want, err = cpu.Forward([]int{tok}, pos, false)
				require.NoError(t, err)
			}
			gpu.Close()
		}
	}
}

// ForwardTopK against Forward's logits on the same engine with model.Sampler's penalty and a stable sort
// (the same GPU logits, so the ids must agree exactly), and against model.CPU within the log-prob
// tolerance; on the random model with an odd vocabulary and with the real one's size, 128512.
func TestEngineForwardTopK(t *testing.T) {
	d := testDevice(t)
	type step struct {
		k       int
		penalty float32
	}
	for _, tc := range []struct {
		vocab int
		steps []step
	}{
		{999, []step{{40, 1.005}, {64, 1.5}, {1, 1}, {1, 2}, {7, 0.5}, {40, 0}}},
		{128512, []step{{40, 1.005}, {64, 1.5}, {1, 1}}},
	} {
		cfg, weights := randomModel(4, tc.vocab)
		w := q4Weights(weights)
		const maxCtx = 40
		gpu, err := New(d, cfg, w, maxCtx)
		require.NoError(t, err)
		cpu := model.NewCPU(cfg, w, maxCtx)
		rng := rand.New(rand.NewPCG(4, 4))
		context := make([]int, 20)
		for i := range context {
			context[i] = rng.IntN(cfg.VocabSize)
		}
		// penalise some of the likeliest tokens too
		first, err := cpu.Forward(context, 0, false)
		require.NoError(t, err)
		likely, _ := topkTwin(first[0], 10)
		context = append(context, likely[:5]...)
		_, err = cpu.Forward(context[20:], 20, false)
		require.NoError(t, err)
		pos := len(context) - 1
		_, err = gpu.Forward(context[:pos], 0, false)
		require.NoError(t, err)

		for i, s := range tc.steps {
			name := fmt.Sprintf("vocab %d, step %d: top-%d, penalty %g", tc.vocab, i, s.k, s.penalty)
			tok := context[len(context)-1]
			ids, vals, err := gpu.ForwardTopK([]int{tok}, pos, s.k, s.penalty, context)
			require.NoError(t, err)
			// the same position again through Forward: the same logits
			gpuLogits, err := gpu.Forward([]int{tok}, pos, false)
			require.NoError(t, err)
			cpuLogits, err := cpu.Forward([]int{tok}, pos, false)
			require.NoError(t, err)
			require.LessOrEqual(t, golden.LogprobDiff(gpuLogits[0], cpuLogits[0]), 2e-3, name)
			p := s.penalty
			if p <= 0 {
				p = 1
			}
			penaltyTwin(gpuLogits[0], context, p)
			penaltyTwin(cpuLogits[0], context, p)
			wantIDs, wantVals := topkTwin(gpuLogits[0], s.k)
			require.Equal(t, wantIDs, ids, name)
			require.Equal(t, wantVals, vals, name)
			cpuIDs, _ := topkTwin(cpuLogits[0], s.k)
			require.Equal(t, cpuIDs[0], ids[0], "%s: greedy token", name)
			for j, id := range ids {
				require.InDelta(t, cpuLogits[0][id], vals[j], 1e-4+1e-3*math.Abs(float64(vals[j])), "%s: logit of %d", name, id)
			}
			t.Logf("%s: ids %v…, cpu %v…", name, ids[:min(5, len(ids))], cpuIDs[:min(5, len(cpuIDs))])
			context = append(context, ids[0])
			pos++
		}
		gpu.Close()
	}
}
