package model

import (
	"errors"
	"fmt"
)

// Wasm32Limit is the most memory a WebAssembly (wasm32) instance can address: 65,536 pages of 64 KiB. The
// browser's CPU path holds the whole model in it.
const Wasm32Limit = 4 << 30

// ErrTooLarge marks a model that cannot run where it was asked to: the page says so before downloading it.
var ErrTooLarge = errors.New("the model is too large for the browser's CPU path")

// CPUMemory is what the CPU engine holds at once while it loads and runs a converted model, in bytes.
type CPUMemory struct {
	Weights uint64 // every tensor as stored (LoadConverted keeps them whole)
	Shard   uint64 // the largest shard, read while the weights before it are already held
	KVCache uint64 // keys and values of every position, f32
	Scratch uint64 // activations of a prefill block, the logits and the attention scores
	Files   uint64 // tokenizer, configs and prompts
}

// Total is all of it.
func (m CPUMemory) Total() uint64 { return m.Weights + m.Shard + m.KVCache + m.Scratch + m.Files }

// PlanCPU sizes what the CPU engine needs for man with a KV cache of ctxLen positions, from the manifest
// alone (nothing is downloaded). It is a lower bound: the Go runtime needs room beyond it to collect garbage.
func PlanCPU(man *Manifest, ctxLen int) CPUMemory {
	c := man.ModelConfig
	var m CPUMemory
	for _, s := range man.Shards {
		m.Weights += uint64(s.Bytes)
		m.Shard = max(m.Shard, uint64(s.Bytes))
	}
	for _, f := range man.Files {
		m.Files += uint64(f.Bytes)
	}
	ctx, T := uint64(ctxLen), uint64(prefillChunk)
	D, Q, KV, F := uint64(c.HiddenSize), uint64(c.QDim()), uint64(c.KVDim()), uint64(c.IntermediateSize)
	m.KVCache = 2 * uint64(c.NumHiddenLayers) * ctx * KV * 4
	m.Scratch = 4 * (T*(2*D+Q+2*KV+Q+2*F) + uint64(c.VocabSize) + uint64(c.NumAttentionHeads)*ctx)
	return m
}

// CheckWasm32 fails with ErrTooLarge, in one sentence a user can act on, when the CPU engine cannot hold
// man with ctxLen positions inside a WebAssembly instance.
func CheckWasm32(man *Manifest, ctxLen int) error {
	m := PlanCPU(man, ctxLen)
	if m.Total() <= Wasm32Limit {
		return nil
	}
	return fmt.Errorf("%w: it needs %s of memory (weights %s, KV cache %s for %d positions), more than the 4 GiB "+
		"a WebAssembly engine can address; open the page in a browser with WebGPU to run it on the GPU",
		ErrTooLarge, gb(m.Total()), gb(m.Weights), gb(m.KVCache), ctxLen)
}

// gb writes a size in GB (10⁹ bytes), as downloads are told.
func gb(n uint64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }
