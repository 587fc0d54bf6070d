package model_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/converter"
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
