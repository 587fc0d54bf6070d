// Package backend opens a model on the CPU reference or the WebGPU engine, and measures it: the one place
// the command-line tools choose between the two.
package backend

import (
	"fmt"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/webgpu"
)

// Names lists the backends Load and Open accept.
const Names = "gpu|cpu"

// Backend is a decoder ready to run, with what it runs on.
type Backend struct {
	model.Decoder
	Name   string         // "cpu", or "gpu" with the adapter: "gpu: NVIDIA H100 (vulkan, DiscreteGPU)"
	Device *webgpu.Device // nil on the CPU
	// WeightBytesPerToken is model.Weights.WeightBytesPerToken of the weights it runs (which the host may
	// no longer hold: see Load).
	WeightBytesPerToken int64
}

// Load reads the model in dir onto the named backend, with a KV cache of maxCtx positions, or the model's
// context limit if that is less. On the GPU a converted model streams in shard by shard
// (webgpu.LoadConverted), so the host never holds its weights whole, only a shard and the tensors in
// flight: the model comes back without its matrices. Otherwise the model is read whole first (an HF
// checkpoint's bf16 becomes f32 on both backends). progress, when set, is told the shard bytes of a
// converted model done so far.
func Load(name, dir string, maxCtx int, progress func(done, total int64)) (*model.Model, *Backend, error) {
	return LoadWith(name, dir, webgpu.Options{MaxContext: maxCtx}, progress)
}

// LoadWith is Load with the GPU engine's options (cmd/bench: forced kernel variants, the f16 KV cache); the
// CPU takes o.MaxContext only.
func LoadWith(name, dir string, o webgpu.Options, progress func(done, total int64)) (*model.Model, *Backend, error) {
	if name != "cpu" && name != "gpu" {
		return nil, nil, fmt.Errorf("unknown backend %q (want %s)", name, Names)
	}
	if name == "gpu" && model.IsConverted(dir) {
		man, files, fetch, err := model.OpenConverted(dir)
		if err != nil {
			return nil, nil, err
		}
		d, err := webgpu.NewDevice()
		if err != nil {
			return nil, nil, err
		}
		o.MaxContext = min(o.MaxContext, man.ModelConfig.ContextLimit())
		m, e, err := webgpu.LoadConverted(d, man, files, fetch, progress, o)
		if err != nil {
			d.Close()
			return nil, nil, fmt.Errorf("%s: %w", dir, err)
		}
		m.Dir = dir
		return m, &Backend{Decoder: e, Name: "gpu: " + d.Adapter, Device: d, WeightBytesPerToken: weightBytesPerToken(man)}, nil
	}
	m, err := model.LoadWithProgress(dir, progress)
	if err != nil {
		return nil, nil, err
	}
	o.MaxContext = min(o.MaxContext, m.Config.ContextLimit())
	b, err := OpenWith(name, m, o)
	if err != nil {
		return nil, nil, err
	}
	return m, b, nil
}

// Open puts m, loaded whole, on the named backend with a KV cache of maxCtx positions.
func Open(name string, m *model.Model, maxCtx int) (*Backend, error) {
	return OpenWith(name, m, webgpu.Options{MaxContext: maxCtx})
}

// OpenWith is Open with the GPU engine's options (cmd/bench: forced kernel variants, the f16 KV cache); the
// CPU takes o.MaxContext only.
func OpenWith(name string, m *model.Model, o webgpu.Options) (*Backend, error) {
	maxCtx := o.MaxContext
	bytes := m.Weights.WeightBytesPerToken()
	switch name {
	case "cpu":
		return &Backend{Decoder: model.NewCPU(m.Config, m.Weights, maxCtx), Name: "cpu", WeightBytesPerToken: bytes}, nil
	case "gpu":
		d, err := webgpu.NewDevice()
		if err != nil {
			return nil, err
		}
		e, err := webgpu.NewWithOptions(d, m.Config, m.Weights, o)
		if err != nil {
			d.Close()
			return nil, err
		}
		return &Backend{Decoder: e, Name: "gpu: " + d.Adapter, Device: d, WeightBytesPerToken: bytes}, nil
	}
	return nil, fmt.Errorf("unknown backend %q (want %s)", name, Names)
}

// Close frees the GPU device and everything on it; the CPU backend holds nothing to free.
func (b *Backend) Close() {
	if b.Device != nil {
		b.Device.Close()
	}
}

// Memory says what the backend holds: the GPU engine's memory plan, or the weights in host memory.
func (b *Backend) Memory() string {
	if e, ok := b.Decoder.(*webgpu.Engine); ok {
		m := e.Memory()
		return fmt.Sprintf("GPU memory %s (weights %s, KV cache %s, scratch %s)",
			GB(int64(m.Total())), GB(int64(m.Weights)), GB(int64(m.KVCache)), GB(int64(m.Scratch)))
	}
	return fmt.Sprintf("weights %s read per token, in host memory", GB(b.WeightBytesPerToken))
}

// GB formats a byte count in decimal units, as the page does.
func GB(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f kB", float64(n)/1e3)
}

// weightBytesPerToken is model.Weights.WeightBytesPerToken of a converted model, from its manifest:
// every tensor as stored but the embedding, of which a token reads one row.
func weightBytesPerToken(man *model.Manifest) int64 {
	var n int64
	for _, t := range man.Tensors {
		if t.Name == "model.embed_tokens.weight" {
			continue
		}
		for _, p := range t.Parts {
			n += p.Data.Bytes
			if p.Scales != nil {
				n += p.Scales.Bytes
			}
		}
	}
	return n
}
