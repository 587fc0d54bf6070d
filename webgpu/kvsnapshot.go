package webgpu

import (
	"fmt"

	"github.com/oliverbestmann/webgpu/wgpu"

	"github.com/ilmweb/ilmweb/model"
)

var _ model.KVState = (*Engine)(nil)

// kvStagingBytes bounds the staging buffer ExportKV reads the cache back through: the layers' keys and
// values come back in as few round trips as fit in it (a variable for the tests).
var kvStagingBytes uint64 = 64 << 20

// KVDType is the element type of the engine's KV cache, as a model.KVSnapshot names it.
func (e *Engine) KVDType() string {
	if e.kvF16 {
		return "f16"
	}
	return "f32"
}

// ExportKV reads back the cache's positions [0, len(tokens)): f32, or f16 with Options.KVF16.
func (e *Engine) ExportKV(tokens []int) (*model.KVSnapshot, error) {
	if err := e.dev.lost(); err != nil {
		return nil, fmt.Errorf("export kv: %w", err)
	}
	s, err := e.exportKV(tokens)
	return s, e.fail(err)
}

func (e *Engine) exportKV(tokens []int) (*model.KVSnapshot, error) {
	n, L, KV := len(tokens), e.cfg.NumHiddenLayers, e.cfg.KVDim()
	if e.buffers == nil {
		return nil, fmt.Errorf("export kv: the engine is closed")
	}
	if n > e.maxCtx {
		return nil, fmt.Errorf("export kv: %d tokens exceed the context length %d", n, e.maxCtx)
	}
	s := &model.KVSnapshot{DType: e.KVDType(), Layers: L, KVDim: KV, Tokens: append([]int(nil), tokens...),
		K: make([][]byte, L), V: make([][]byte, L)}
	// per is the bytes of one layer's keys (or values), a multiple of 4 (head_dim is one of 4).
	per := e.kvBytes() / uint64(e.maxCtx) * uint64(n)
	if per == 0 {
		for l := range L {
			s.K[l], s.V[l] = []byte{}, []byte{}
		}
		return s, nil
	}
	// The 2L buffers K0, V0, K1, V1, … come back group at a time through one staging buffer.
	bufs := make([]int, 0, 2*L) // index l into kcache for even entries, vcache for odd ones
	for l := range L {
		bufs = append(bufs, l, l)
	}
	group := max(1, min(2*L, int(min(kvStagingBytes, e.dev.Limits.MaxBufferSize)/per)))
	staging, err := e.dev.readback("kv snapshot staging", uint64(group)*per)
	if err != nil {
		return nil, fmt.Errorf("export kv: %w", err)
	}
	defer staging.Destroy()
	for i0 := 0; i0 < len(bufs); i0 += group {
		g := min(group, len(bufs)-i0)
		err := e.dev.submit(func(enc *wgpu.CommandEncoder) error {
			for j := range g {
				src := e.kcache[bufs[i0+j]]
				if (i0+j)%2 == 1 {
					src = e.vcache[bufs[i0+j]]
				}
				if err := enc.TryCopyBufferToBuffer(src, 0, staging, uint64(j)*per, per); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("export kv: layer %d: %w", bufs[i0], err)
		}
		raw, err := e.dev.mapRead(staging, uint64(g)*per)
		if err != nil {
			return nil, fmt.Errorf("export kv: layer %d: %w", bufs[i0], err)
		}
		for j := range g {
			part := raw[uint64(j)*per : uint64(j+1)*per : uint64(j+1)*per]
			if l := bufs[i0+j]; (i0+j)%2 == 0 {
				s.K[l] = part
			} else {
				s.V[l] = part
			}
		}
	}
	return s, nil
}

// ImportKV writes s into the cache's positions [0, len(s.Tokens)), through the queue (before the next
// Forward's commands).
func (e *Engine) ImportKV(s *model.KVSnapshot) error {
	if err := e.dev.lost(); err != nil {
		return fmt.Errorf("import kv: %w", err)
	}
	return e.fail(e.importKV(s))
}

func (e *Engine) importKV(s *model.KVSnapshot) error {
	if e.buffers == nil {
		return fmt.Errorf("import kv: the engine is closed")
	}
	if err := s.Check(e.cfg, e.KVDType(), e.maxCtx); err != nil {
		return fmt.Errorf("import kv: %w", err)
	}
	// In one validation scope: in the browser a write's error shows only when the scope is popped.
	err := e.dev.scoped(func() error {
		for l := range s.Layers {
			if len(s.K[l]) == 0 {
				continue
			}
			if err := e.dev.writeBytes(e.kcache[l], 0, s.K[l]); err != nil {
				return fmt.Errorf("layer %d keys: %w", l, err)
			}
			if err := e.dev.writeBytes(e.vcache[l], 0, s.V[l]); err != nil {
				return fmt.Errorf("layer %d values: %w", l, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import kv: %w", err)
	}
	return nil
}
