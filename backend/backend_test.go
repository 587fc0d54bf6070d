package backend

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/converter"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/synth"
	"github.com/ilmweb/ilmweb/webgpu"
)

// manyShards writes a random-weight model of about 7 MB in q4 (16 layers, a 4,096-token vocabulary) and
// converts it into 256 KiB shards: about thirty of them, with the embedding and lm_head each spread over
// three, so the weights dwarf any one shard or tensor.
func manyShards(t *testing.T) string {
	t.Helper()
	p := synth.Preset{Name: "many-shards", HiddenSize: 256, IntermediateSize: 704, Layers: 16, Heads: 8, KVHeads: 2,
		HeadDim: 32, VocabSize: 4096, MaxPositionEmbeddings: 4096, RopeTheta: 10000, MaxFileBytes: 8 << 20}
	src, dst := filepath.Join(t.TempDir(), "hf"), filepath.Join(t.TempDir(), "q4")
	require.NoError(t, synth.Write(p, src, 1))
	_, err := converter.Convert(context.Background(), src, dst, converter.Options{ShardSize: 256 << 10})
	require.NoError(t, err)
	return dst
}

// liveHeap is the Go heap still in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// gpuOrSkip skips the test when the system has no WebGPU adapter, unless REQUIRE_GPU=1.
func gpuOrSkip(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, webgpu.ErrNoAdapter) && os.Getenv("REQUIRE_GPU") != "1" {
		t.Skipf("no WebGPU adapter (REQUIRE_GPU=1 makes this a failure): %v", err)
	}
}

// On the GPU a converted model streams in: while it loads, the host holds what the model keeps anyway
// (tokenizer, config, norms, the engine's bookkeeping), one shard and the tensors in flight, never the
// weights whole. The live Go heap is measured after each shard; the engine it builds gives the logits of
// the engine built from the whole model, bit for bit.
func TestLoadStreamsOntoGPU(t *testing.T) {
	dir := manyShards(t)
	man, _, _, err := model.OpenConverted(dir)
	require.NoError(t, err)
	var maxShard, maxTensor, weights int64
	for _, s := range man.Shards {
		maxShard = max(maxShard, s.Bytes)
	}
	for _, tensor := range man.Tensors {
		var n int64
		for _, p := range tensor.Parts {
			n += p.Data.Bytes
			if p.Scales != nil {
				n += p.Scales.Bytes
			}
		}
		maxTensor, weights = max(maxTensor, n), weights+n
	}
	c := man.ModelConfig
	gate := int64(4 * c.IntermediateSize * (c.HiddenSize/8 + c.HiddenSize/32/2)) // held until its up comes

	base := liveHeap()
	var peak, shards int64
	m, b, err := Load("gpu", dir, 64, func(done, total int64) {
		peak = max(peak, liveHeap()-base)
		shards++
		require.Equal(t, man.TotalBytes, total)
	})
	gpuOrSkip(t, err)
	require.NoError(t, err)
	kept := liveHeap() - base // what the loaded model and engine keep on the host
	bound := kept + maxShard + maxTensor + gate + 256<<10
	t.Logf("%s; %d shards (largest %d bytes), weights %d bytes (largest tensor %d); host heap: peak %d bytes "+
		"during the load, %d kept after it; bound %d", b.Name, shards, maxShard, weights, maxTensor, peak, kept, bound)
	require.Equal(t, int64(len(man.Shards)), shards, "progress after every shard")
	require.Less(t, kept, weights/4, "after the load the host still holds the weights")
	require.LessOrEqual(t, peak, bound, "the host held more than a shard and the tensors in flight")
	require.Less(t, bound, weights/2, "the model must dwarf a shard for this test to mean anything")
	require.Nil(t, m.Weights.LMHead.Q, "the streamed model keeps no matrix")

	whole, err := model.Load(dir)
	require.NoError(t, err)
	require.Equal(t, whole.Weights.WeightBytesPerToken(), b.WeightBytesPerToken)
	ref, err := Open("gpu", whole, 64)
	require.NoError(t, err)
	prompt := make([]int, 20)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range prompt {
		prompt[i] = rng.IntN(c.VocabSize)
	}
	want, err := ref.Forward(prompt, 0, true)
	require.NoError(t, err)
	got, err := b.Forward(prompt, 0, true)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// The CPU reads a converted model whole, with progress, and caps the context at the model's limit.
func TestLoadCPU(t *testing.T) {
	dir := manyShards(t)
	var last, total int64
	m, b, err := Load("cpu", dir, 1<<30, func(d, t int64) { last, total = d, t })
	require.NoError(t, err)
	require.Equal(t, total, last)
	require.NotNil(t, m.Weights.LMHead.Q)
	require.Equal(t, m.Config.ContextLimit(), b.MaxContext())
	require.Equal(t, m.Weights.WeightBytesPerToken(), b.WeightBytesPerToken)
	_, _, err = Load("tpu", dir, 64, nil)
	require.EqualError(t, err, `unknown backend "tpu" (want gpu|cpu)`)
}
