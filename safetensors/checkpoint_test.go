package safetensors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func u8(name string, vals ...byte) testTensor {
	return testTensor{TensorInfo{Name: name, DType: U8, Shape: []int64{int64(len(vals))}}, vals}
}

// shardedDir writes two shards and an index; extra edits the weight map.
func shardedDir(t *testing.T, edit func(wm map[string]string)) string {
	t.Helper()
	dir := t.TempDir()
	vals := []float32{1, 2, -3, 0.5}
	writeST(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), []testTensor{
		{TensorInfo{Name: "model.embed_tokens.weight", DType: BF16, Shape: []int64{2, 2}}, bf16Bytes(vals)},
		u8("model.layers.0.x", 1, 2, 3),
	}, map[string]string{"format": "pt"})
	writeST(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), []testTensor{
		{TensorInfo{Name: "lm_head.weight", DType: F32, Shape: []int64{4}}, f32Bytes(vals)},
	}, nil)
	wm := map[string]string{
		"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
		"model.layers.0.x":          "model-00001-of-00002.safetensors",
		"lm_head.weight":            "model-00002-of-00002.safetensors",
	}
	if edit != nil {
		edit(wm)
	}
	require.NoError(t, WriteIndex(filepath.Join(dir, IndexFile), wm, 27))
	return dir
}

func requireDirErr(t *testing.T, dir string, want ...string) {
	t.Helper()
	c, err := OpenDir(dir)
	require.Error(t, err)
	require.Nil(t, c)
	require.NotContains(t, err.Error(), "\n")
	for _, w := range want {
		require.ErrorContains(t, err, w)
	}
}

func TestCheckpointSharded(t *testing.T) {
	dir := shardedDir(t, nil)
	c, err := OpenDir(dir)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, dir, c.Dir)
	require.Equal(t, []string{"lm_head.weight", "model.embed_tokens.weight", "model.layers.0.x"}, c.Names())
	require.Equal(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), c.FileOf("lm_head.weight"))
	require.Equal(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), c.FileOf("model.layers.0.x"))
	require.Equal(t, "", c.FileOf("nope"))

	for _, n := range []string{"lm_head.weight", "model.embed_tokens.weight"} {
		v, err := c.Float32(n)
		require.NoError(t, err)
		require.Equal(t, []float32{1, 2, -3, 0.5}, v)
	}
	b, err := c.Bytes("model.layers.0.x")
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3}, b)
	info, err := c.Info("model.embed_tokens.weight")
	require.NoError(t, err)
	require.Equal(t, []int64{2, 2}, info.Shape)
	require.Equal(t, BF16, info.DType)

	_, err = c.Info("missing.weight")
	require.ErrorContains(t, err, `"missing.weight"`)
	require.ErrorContains(t, err, dir)
	_, err = c.Float32("missing.weight")
	require.ErrorContains(t, err, `"missing.weight"`)
	_, err = c.Float32("model.layers.0.x")
	require.ErrorContains(t, err, "U8")

	// Index written by WriteIndex has the HF shape.
	raw, err := os.ReadFile(filepath.Join(dir, IndexFile))
	require.NoError(t, err)
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	require.NoError(t, json.Unmarshal(raw, &idx))
	require.Equal(t, int64(27), idx.Metadata["total_size"])
	require.Len(t, idx.WeightMap, 3)
	require.NoError(t, c.Close())
}

func TestCheckpointSingleFile(t *testing.T) {
	dir := t.TempDir()
	writeST(t, filepath.Join(dir, "model.safetensors"), []testTensor{u8("a", 1)}, nil)
	writeST(t, filepath.Join(dir, "other.safetensors"), []testTensor{u8("b", 1)}, nil)
	c, err := OpenDir(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, c.Names())
	require.NoError(t, c.Close())

	dir = t.TempDir()
	writeST(t, filepath.Join(dir, "weights[1].safetensors"), []testTensor{u8("b", 1)}, nil)
	c, err = OpenDir(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, c.Names())
	require.Equal(t, filepath.Join(dir, "weights[1].safetensors"), c.FileOf("b"))
	require.NoError(t, c.Close())
}

func TestCheckpointNoFiles(t *testing.T) {
	dir := t.TempDir()
	requireDirErr(t, dir, dir, "no model.safetensors.index.json")
}

func TestCheckpointAmbiguousFiles(t *testing.T) {
	dir := t.TempDir()
	writeST(t, filepath.Join(dir, "a.safetensors"), []testTensor{u8("a", 1)}, nil)
	writeST(t, filepath.Join(dir, "b.safetensors"), []testTensor{u8("b", 1)}, nil)
	requireDirErr(t, dir, dir, "2 *.safetensors files")
}

func TestCheckpointIndexMalformed(t *testing.T) {
	for _, body := range []string{`{"weight_map":`, `[]`, `{"weight_map":{"a":1}}`, `{"weight_map":{"a":"x","a":"y"}}`, `{"metadata":{}}`, `{"weight_map":{}} x`} {
		dir := shardedDir(t, nil)
		idx := filepath.Join(dir, IndexFile)
		require.NoError(t, os.WriteFile(idx, []byte(body), 0o644))
		requireDirErr(t, dir, idx)
	}
}

func TestCheckpointIndexMissingFile(t *testing.T) {
	dir := shardedDir(t, func(wm map[string]string) { wm["extra.weight"] = "model-00003-of-00003.safetensors" })
	requireDirErr(t, dir, "model-00003-of-00003.safetensors", `"extra.weight"`, "does not exist")
}

func TestCheckpointIndexEscapingFile(t *testing.T) {
	dir := shardedDir(t, func(wm map[string]string) { wm["lm_head.weight"] = "../x.safetensors" })
	requireDirErr(t, dir, `"lm_head.weight"`, "../x.safetensors")
}

func TestCheckpointTensorAbsentFromFile(t *testing.T) {
	dir := shardedDir(t, func(wm map[string]string) { wm["ghost.weight"] = "model-00002-of-00002.safetensors" })
	requireDirErr(t, dir, "model-00002-of-00002.safetensors", `"ghost.weight"`, "absent from the file")
}

func TestCheckpointTensorInTwoFiles(t *testing.T) {
	dir := shardedDir(t, nil)
	// Rewrite shard 2 so it also holds a tensor of shard 1.
	writeST(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), []testTensor{
		{TensorInfo{Name: "lm_head.weight", DType: F32, Shape: []int64{4}}, f32Bytes([]float32{1, 2, 3, 4})},
		u8("model.layers.0.x", 9, 9, 9),
	}, nil)
	requireDirErr(t, dir, `"model.layers.0.x"`, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "also present")
}

func TestCheckpointTensorNotInIndex(t *testing.T) {
	dir := shardedDir(t, func(wm map[string]string) { delete(wm, "model.layers.0.x") })
	requireDirErr(t, dir, `"model.layers.0.x"`, "model-00001-of-00002.safetensors", "not listed")
}

func TestCheckpointBadShard(t *testing.T) {
	dir := shardedDir(t, nil)
	p := filepath.Join(dir, "model-00002-of-00002.safetensors")
	require.NoError(t, os.WriteFile(p, rawFile(`{"lm_head.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}`, 12), 0o644))
	requireDirErr(t, dir, p, `"lm_head.weight"`, "needs 16 bytes")
}
