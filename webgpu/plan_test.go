package webgpu

import (
	"os"
	"testing"

	"github.com/oliverbestmann/webgpu/wgpu"
	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
)

// layout8B is InternLM3-8B's tensors as `convert -q` stores them: q4 matrices in groups of 32, f32 norms.
func layout8B(t *testing.T) (*model.Config, Layout) {
	data, err := os.ReadFile("../testdata/internlm3-8b/config.json")
	require.NoError(t, err)
	c, err := model.ParseConfig("config.json", data)
	require.NoError(t, err)
	l := Layout{}
	for _, s := range model.CheckpointTensors(c) {
		if len(s.Shape) == 1 {
			l[s.Name] = model.QuantMatrix{DType: model.DTypeF32, Rows: 1, Cols: s.Shape[0]}
		} else {
			l[s.Name] = model.QuantMatrix{DType: model.DTypeQ4, Rows: s.Shape[0], Cols: s.Shape[1], Group: 32}
		}
	}
	return c, l
}

// specLimits are WebGPU's default limits, what every adapter offers at least.
func specLimits() wgpu.Limits {
	return wgpu.Limits{MaxStorageBufferBindingSize: 128 << 20, MaxBufferSize: 256 << 20}
}

func TestPlan8BFitsTheDefaultLimits(t *testing.T) {
	c, l := layout8B(t)
	m, err := Plan(specLimits(), c, l, Options{MaxContext: 4096})
	require.NoError(t, err)
	require.InDelta(t, 4.95e9, float64(m.Weights), 0.02e9)
	require.Equal(t, uint64(2*48*4096*256*4), m.KVCache)
	m16, err := Plan(specLimits(), c, l, Options{MaxContext: 4096, KVF16: true})
	require.NoError(t, err)
	require.Equal(t, m.KVCache/2, m16.KVCache)
}

func TestPlanNamesTheLimit(t *testing.T) {
	c, l := layout8B(t)
	lim := specLimits()
	lim.MaxStorageBufferBindingSize = 2 << 20
	_, err := Plan(lim, c, l, Options{MaxContext: 4096})
	require.ErrorIs(t, err, ErrLimits)
	require.ErrorContains(t, err, "a KV cache of 4096 positions needs a 4194304-byte buffer; the device allows 2097152")
	_, err = Plan(specLimits(), c, l, Options{MaxContext: 4096, MemoryBudget: 4 << 30})
	require.ErrorIs(t, err, ErrOutOfMemory)
}
