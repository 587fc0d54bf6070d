// Package backend opens a loaded model on the CPU reference or the WebGPU engine, and measures it: the one
// place the command-line tools choose between the two.
package backend

import (
	"fmt"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/webgpu"
)

// Names lists the backends Open accepts.
const Names = "gpu|cpu"

// Backend is a decoder ready to run, with what it runs on.
type Backend struct {
	model.Decoder
	Name   string         // "cpu", or "gpu" with the adapter: "gpu: NVIDIA H100 (vulkan, DiscreteGPU)"
	Device *webgpu.Device // nil on the CPU
}

// Open puts m on the named backend with a KV cache of maxCtx positions.
func Open(name string, m *model.Model, maxCtx int) (*Backend, error) {
	return OpenWith(name, m, webgpu.Options{MaxContext: maxCtx})
}

// OpenWith is Open with the GPU engine's options (cmd/bench: forced kernel variants, the f16 KV cache); the
// CPU takes o.MaxContext only.
func OpenWith(name string, m *model.Model, o webgpu.Options) (*Backend, error) {
	maxCtx := o.MaxContext
	switch name {
	case "cpu":
		return &Backend{Decoder: model.NewCPU(m.Config, m.Weights, maxCtx), Name: "cpu"}, nil
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
		return &Backend{Decoder: e, Name: "gpu: " + d.Adapter, Device: d}, nil
	}
	return nil, fmt.Errorf("unknown backend %q (want %s)", name, Names)
}

// Close frees the GPU device and everything on it; the CPU backend holds nothing to free.
func (b *Backend) Close() {
	if b.Device != nil {
		b.Device.Close()
	}
}
