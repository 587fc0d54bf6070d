package model_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/converter"
	"github.com/ilmweb/ilmweb/internal/golden"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/synth"
)

// convertedTiny converts the synthetic tiny checkpoint to q4 in small shards, so that the embedding and
// lm_head come in several parts.
func convertedTiny(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	src, dst := filepath.Join(root, "hf"), filepath.Join(root, "q4")
	require.NoError(t, synth.Write(synth.Presets["tiny"], src, 1))
	_, err := converter.Convert(context.Background(), src, dst, converter.Options{ShardSize: 32 << 10})
	require.NoError(t, err)
	return dst
}

func TestLoadConverted(t *testing.T) {
	dir := convertedTiny(t)
	require.True(t, model.IsConverted(dir))
	m, err := model.Load(dir)
	require.NoError(t, err)
	require.Equal(t, []int{2, 4}, m.Stop) // from the copied generation_config.json: </s> and <|im_end|>
	w := m.Weights
	lins := []*model.Linear{&w.Embed, &w.LMHead}
	for i := range w.Layers {
		l := &w.Layers[i]
		lins = append(lins, &l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down)
	}
	row := make([]float32, m.Config.IntermediateSize)
	x := make([]float32, m.Config.IntermediateSize)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	for _, l := range lins {
		require.NotNil(t, l.Q)
		require.Equal(t, model.DTypeQ4, l.Q.DType)
		require.Equal(t, [2]int{l.Out, l.In}, [2]int{l.Q.Rows, l.Q.Cols})
		for r := 0; r < l.Out; r += 7 {
			require.Nil(t, l.W, "converted weights stay in their stored form")
			l.Q.DequantRow(r, row)
			var dot float32
			for c := 0; c < l.In; c++ {
				dot += row[c] * x[c]
			}
			require.InDelta(t, dot, l.Q.DotRow(r, x[:l.In]), 1e-4)
		}
	}
	logits, err := model.NewCPU(m.Config, m.Weights, 8).Forward([]int{1, 5, 9}, 0, false)
	require.NoError(t, err)
	require.Len(t, logits[0], m.Config.VocabSize)
}

func TestLoadConvertedErrors(t *testing.T) {
	edit := func(t *testing.T, path string, f func([]byte) []byte) {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, f(b), 0o644))
	}
	manifest := func(t *testing.T, dir string) *model.Manifest {
		b, err := os.ReadFile(filepath.Join(dir, model.ManifestFile))
		require.NoError(t, err)
		m, err := model.ParseManifest("manifest.json", b)
		require.NoError(t, err)
		return m
	}
	t.Run("truncated shard", func(t *testing.T) {
		dir := convertedTiny(t)
		name := manifest(t, dir).Shards[1].Name
		edit(t, filepath.Join(dir, name), func(b []byte) []byte { return b[:len(b)-1] })
		_, err := model.Load(dir)
		require.ErrorContains(t, err, name)
		require.ErrorContains(t, err, "convert -verify")
	})
	t.Run("config differs", func(t *testing.T) {
		dir := convertedTiny(t)
		edit(t, filepath.Join(dir, "config.json"), func(b []byte) []byte {
			var c map[string]any
			require.NoError(t, json.Unmarshal(b, &c))
			c["rms_norm_eps"] = 1e-6
			out, _ := json.Marshal(c)
			return out
		})
		_, err := model.Load(dir)
		require.ErrorContains(t, err, "config.json differs from the manifest's config")
	})
	t.Run("bad manifest", func(t *testing.T) {
		dir := convertedTiny(t)
		edit(t, filepath.Join(dir, model.ManifestFile), func(b []byte) []byte { return b[:len(b)/2] })
		_, err := model.Load(dir)
		require.ErrorContains(t, err, filepath.Join(dir, model.ManifestFile)+": invalid manifest JSON")
	})
	t.Run("missing tensor", func(t *testing.T) {
		dir := convertedTiny(t)
		m := manifest(t, dir)
		var kept []model.TensorEntry
		for _, te := range m.Tensors {
			if te.Name != "model.layers.1.mlp.up_proj.weight" {
				kept = append(kept, te)
			}
		}
		m.Tensors = kept
		b, err := json.Marshal(m)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, model.ManifestFile), b, 0o644))
		_, err = model.Load(dir)
		require.ErrorContains(t, err, `tensor "model.layers.1.mlp.up_proj.weight" is missing`)
	})
}

// openConverted is model.OpenConverted, failing the test on error.
func openConverted(t *testing.T, dir string) (*model.Manifest, map[string][]byte, func(int) ([]byte, error)) {
	t.Helper()
	man, files, fetch, err := model.OpenConverted(dir)
	require.NoError(t, err)
	return man, files, fetch
}

// A Sink receives every tensor once, as soon as the shard holding its last part has been read, equal to
// what a whole load keeps; what it does not keep is left out of the model, shapes aside.
func TestLoadConvertedSink(t *testing.T) {
	dir := convertedTiny(t)
	whole, err := model.Load(dir)
	require.NoError(t, err)
	man, files, fetch := openConverted(t, dir)
	lastShard := map[string]int{}
	for _, te := range man.Tensors {
		lastShard[te.Name] = te.Parts[len(te.Parts)-1].Shard
	}
	fetched := -1
	got := map[string]*model.QuantMatrix{}
	m, err := model.LoadConvertedWith(man, files, func(i int) ([]byte, error) {
		fetched = i
		return fetch(i)
	}, model.LoadOptions{Sink: func(name string, q *model.QuantMatrix) (bool, error) {
		require.Nil(t, got[name], "%s delivered twice", name)
		require.Equal(t, lastShard[name], fetched, "%s: delivered after shard %d, its last part is in shard %d", name, fetched, lastShard[name])
		got[name] = q
		return name == "lm_head.weight", nil // keep only this one
	}})
	require.NoError(t, err)
	require.Len(t, got, len(man.Tensors))

	ww, w := whole.Weights, m.Weights
	type pair struct {
		name      string
		whole, lo *model.Linear
	}
	pairs := []pair{{"model.embed_tokens.weight", &ww.Embed, &w.Embed}}
	for i := range w.Layers {
		p, a, b := fmt.Sprintf("model.layers.%d.", i), &ww.Layers[i], &w.Layers[i]
		pairs = append(pairs, pair{p + "self_attn.q_proj.weight", &a.Q, &b.Q}, pair{p + "self_attn.k_proj.weight", &a.K, &b.K},
			pair{p + "self_attn.v_proj.weight", &a.V, &b.V}, pair{p + "self_attn.o_proj.weight", &a.O, &b.O},
			pair{p + "mlp.gate_proj.weight", &a.Gate, &b.Gate}, pair{p + "mlp.up_proj.weight", &a.Up, &b.Up},
			pair{p + "mlp.down_proj.weight", &a.Down, &b.Down})
		require.Equal(t, a.InputNorm, b.InputNorm)
		require.Equal(t, a.PostNorm, b.PostNorm)
	}
	require.Equal(t, ww.Norm, w.Norm)
	for _, p := range pairs {
		require.Equal(t, p.whole.Q, got[p.name], p.name)
		require.Equal(t, [2]int{p.whole.Out, p.whole.In}, [2]int{p.lo.Out, p.lo.In}, p.name)
		require.Nil(t, p.lo.Q, "%s was not kept", p.name)
		require.Nil(t, p.lo.W, p.name)
	}
	require.Equal(t, ww.LMHead.Q, w.LMHead.Q, "lm_head was kept")

	// an error from the Sink ends the load with it
	_, err = model.LoadConvertedWith(man, files, fetch, model.LoadOptions{Sink: func(name string, q *model.QuantMatrix) (bool, error) {
		return false, fmt.Errorf("sink refuses %s", name)
	}})
	require.ErrorContains(t, err, "sink refuses model.embed_tokens.weight")
}

// With a Sink that keeps nothing, the CPU never holds more than one shard plus the tensors in flight
// (begun in shards read so far, ending in a later one): measured as the live heap, after a collection,
// before every shard is read and whenever a tensor is handed over, on a model 20 times the tiny one cut
// into 96 KiB shards.
func TestLoadConvertedSinkMemory(t *testing.T) {
	root := t.TempDir()
	src, dst := filepath.Join(root, "hf"), filepath.Join(root, "q4")
	wide := synth.Preset{Name: "wide", HiddenSize: 512, IntermediateSize: 1536, Layers: 4, Heads: 8, KVHeads: 2, HeadDim: 64,
		VocabSize: 1024, MaxPositionEmbeddings: 128, RopeTheta: 10000, MaxFileBytes: 4 << 20}
	require.NoError(t, synth.Write(wide, src, 1))
	_, err := converter.Convert(context.Background(), src, dst, converter.Options{ShardSize: 96 << 10})
	require.NoError(t, err)
	man, files, fetch := openConverted(t, dst)

	// The bound, from the manifest: before shard i, the tensors in flight; while shard i is read, the shard
	// and every tensor with a part in it or in flight across it.
	tensorBytes := func(te *model.TensorEntry) int64 {
		d, s := te.RowBytes(man.Quant.GroupSize)
		return int64(te.Rows()) * (d + s)
	}
	var weights, bound int64
	before := make([]int64, len(man.Shards)+1) // in flight before shard i is read
	during := make([]int64, len(man.Shards))
	for i := range man.Tensors {
		te := &man.Tensors[i]
		first, last := te.Parts[0].Shard, te.Parts[len(te.Parts)-1].Shard
		weights += tensorBytes(te)
		for s := first + 1; s <= last; s++ {
			before[s] += tensorBytes(te)
		}
		for s := first; s <= last; s++ {
			during[s] += tensorBytes(te)
		}
	}
	for i, sh := range man.Shards {
		bound = max(bound, before[i], sh.Bytes+during[i])
	}
	t.Logf("%d shards, %d bytes of weights; the most one shard and the tensors in flight hold: %d bytes", len(man.Shards), weights, bound)
	require.Less(t, 8*bound, weights, "the test needs a model much larger than a shard")

	live := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	const slack = 64 << 10 // the loader's own bookkeeping, the norm vectors, the test's records
	var base, peak int64
	shard, sunk := 0, 0
	check := func(where string, allowed int64) {
		held := live() - base
		peak = max(peak, held)
		require.LessOrEqual(t, held, allowed+slack, "%s: %d bytes live, allowed %d + %d", where, held, allowed, slack)
	}
	_, err = model.LoadConvertedWith(man, files, func(i int) ([]byte, error) {
		shard = i
		if i == 0 {
			base = live()
		} else {
			check(fmt.Sprintf("before shard %d", i), before[i])
		}
		return fetch(i)
	}, model.LoadOptions{Sink: func(name string, q *model.QuantMatrix) (bool, error) {
		sunk++
		check(fmt.Sprintf("handing over %s in shard %d", name, shard), man.Shards[shard].Bytes+during[shard])
		return false, nil
	}})
	require.NoError(t, err)
	require.Equal(t, len(man.Tensors), sunk)
	t.Logf("peak live heap during the load: %d bytes above the start (%.1f%% of the weights)", peak, 100*float64(peak)/float64(weights))
}

// The fast q4 path (q8 activations, model/q4q8.go) against the pure-Go f32 twins on the converted tiny model:
// the log-probs of every position of a 150-token prompt (past the 128-position RoPE limit), then 32 greedy
// tokens decoded by both from the same cache contents. Measured: max |Δ log-prob| 0.097 (prompt) and 0.089
// (decode) over the whole vocabulary, all 32 greedy tokens equal; the q4 weights themselves move the
// log-probs far more (TestConvertQ4LogitsCloseToF32: top-1 agreement with the f32 model 0.76).
func TestFastQ4MatchesReference(t *testing.T) {
	m, err := model.Load(convertedTiny(t))
	require.NoError(t, err)
	ids := make([]int, 150)
	for i := range ids {
		ids[i] = 3 + (i*7919)%(m.Config.VocabSize-3)
	}
	fast := model.NewCPU(m.Config, m.Weights, 200)
	ref := model.NewCPU(m.Config, m.Weights, 200)
	ref.Reference = true
	got, err := fast.Forward(ids, 0, true)
	require.NoError(t, err)
	want, err := ref.Forward(ids, 0, true)
	require.NoError(t, err)
	var worst float64
	for i := range ids {
		worst = max(worst, golden.LogprobDiff(got[i], want[i]))
	}
	tok, pos, same := argmax(want[len(ids)-1]), len(ids), 0
	var worstDecode float64
	for ; pos < len(ids)+32; pos++ {
		g, err := fast.Forward([]int{tok}, pos, false)
		require.NoError(t, err)
		w, err := ref.Forward([]int{tok}, pos, false)
		require.NoError(t, err)
		worstDecode = max(worstDecode, golden.LogprobDiff(g[0], w[0]))
		if argmax(g[0]) == argmax(w[0]) {
			same++
		}
		tok = argmax(w[0])
	}
	t.Logf("fast q4 vs f32 twins: max |Δ log-prob| %.2e over %d prompt positions, %.2e over 32 decode steps; %d/32 greedy tokens agree",
		worst, len(ids), worstDecode, same)
	require.LessOrEqual(t, worst, 0.15)
	require.LessOrEqual(t, worstDecode, 0.15)
	require.GreaterOrEqual(t, same, 30)
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
