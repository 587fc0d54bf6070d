package model

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// manifest8B is a manifest with the sizes `convert -q` gives InternLM3-8B (docs/BENCHMARKS.md: 106 shards,
// 4,953,751,552 bytes), or the same shapes cut to layers layers; it lists no tensors (the size check reads
// none) and no shard exists.
func manifest8B(t *testing.T, layers int) *Manifest {
	t.Helper()
	data, err := os.ReadFile("../testdata/internlm3-8b/config.json")
	require.NoError(t, err)
	cfg, err := ParseConfig("config.json", data)
	require.NoError(t, err)
	total := int64(4_953_751_552)
	if layers != cfg.NumHiddenLayers {
		perLayer := (total - 2*270_000_000) / int64(cfg.NumHiddenLayers) // embedding and lm_head: ~270 MB each in q4
		total = 2*270_000_000 + perLayer*int64(layers)
		cfg.NumHiddenLayers = layers
	}
	m := &Manifest{Format: "ilmweb", Version: 1, ModelConfig: cfg, TotalBytes: total}
	for i := int64(0); total > 0; i++ {
		n := min(total, 64<<20)
		m.Shards = append(m.Shards, FileEntry{Name: fmt.Sprintf("shard-%05d.bin", i), Bytes: n})
		total -= n
	}
	m.Files = []FileEntry{{Name: "tokenizer.model", Bytes: 2_475_075}, {Name: "config.json", Bytes: 1_000}}
	return m
}

func TestCheckWasm32Refuses8B(t *testing.T) {
	man := manifest8B(t, 48)
	require.Len(t, man.Shards, 74) // 64 MiB shards here; what counts is the total
	m := PlanCPU(man, 4096)
	require.Equal(t, uint64(4_953_751_552), m.Weights)
	require.Equal(t, uint64(2*48*4096*256*4), m.KVCache)
	err := CheckWasm32(man, 4096)
	require.ErrorIs(t, err, ErrTooLarge)
	require.Equal(t, "the model is too large for the browser's CPU path: it needs 5.45 GB of memory (weights 4.95 GB, "+
		"KV cache 0.40 GB for 4096 positions), more than the 4 GiB a WebAssembly engine can address; "+
		"open the page in a browser with WebGPU to run it on the GPU", err.Error())
}

func TestCheckWasm32CountsTheKVCache(t *testing.T) {
	// 8B's width cut to 24 layers: 2.7 GB of weights fit, until a long context's KV cache is added.
	man := manifest8B(t, 24)
	require.NoError(t, CheckWasm32(man, 4096))
	require.ErrorIs(t, CheckWasm32(man, 32768), ErrTooLarge) // + 1.6 GB of KV cache
	require.Less(t, PlanCPU(man, 4096).Total(), uint64(Wasm32Limit))
}
