package webgpu

import (
	"context"
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
)

// kvRecorder is an engine, as a plain model.KVState (no ForwardTopK), that keeps the last row of logits of
// every Forward.
type kvRecorder struct {
	e      *Engine
	logits [][]float32
}

func (r *kvRecorder) Forward(tokens []int, pos int, all bool) ([][]float32, error) {
	out, err := r.e.Forward(tokens, pos, all)
	if err == nil {
		r.logits = append(r.logits, append([]float32(nil), out[len(out)-1]...))
	}
	return out, err
}

func (r *kvRecorder) MaxContext() int                                  { return r.e.MaxContext() }
func (r *kvRecorder) ExportKV(tokens []int) (*model.KVSnapshot, error) { return r.e.ExportKV(tokens) }
func (r *kvRecorder) ImportKV(s *model.KVSnapshot) error               { return r.e.ImportKV(s) }

// kvValues decodes a snapshot layer's raw bytes.
func kvValues(b []byte, dtype string) []float32 {
	if dtype == "f16" {
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = model.F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// The engine's cache of a system prompt, exported, encoded, decoded and imported into a fresh engine,
// answers exactly as a fresh engine that prefilled it; with the f32 and the f16 cache.
func TestEngineSnapshotRestore(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	sys := []model.Message{{Role: "system", Content: "You are a terse assistant."}}
	system := m.Chat.Encode(sys, false)
	prompt := m.Chat.Encode(append(sys, model.Message{Role: "user", Content: "Name a colour."}), true)
	n := len(system)
	require.Equal(t, system, prompt[:n])
	opt := model.GenerateOptions{MaxTokens: 8, Sampling: model.Greedy()}
	nop := func(int) error { return nil }
	ctx := context.Background()

	// The CPU's cache, to check the snapshot's layout against.
	cpu := model.NewSession(model.NewCPU(m.Config, m.Weights, 128), m.Config)
	_, err := cpu.Generate(ctx, prompt, opt, nop)
	require.NoError(t, err)
	cpuSnap, err := cpu.Snapshot(n)
	require.NoError(t, err)

	for _, f16 := range []bool{false, true} {
		dtype := map[bool]string{false: "f32", true: "f16"}[f16]
		t.Run(dtype, func(t *testing.T) {
			newRec := func() *kvRecorder {
				e, err := NewWithOptions(d, m.Config, m.Weights, Options{MaxContext: 128, KVF16: f16})
				require.NoError(t, err)
				t.Cleanup(e.Close)
				return &kvRecorder{e: e}
			}
			src := model.NewSession(newRec(), m.Config)
			_, err := src.Generate(ctx, prompt, opt, nop)
			require.NoError(t, err)
			snap, err := src.Snapshot(n)
			require.NoError(t, err)
			require.Equal(t, dtype, snap.DType)
			require.Equal(t, system, snap.Tokens)
			for l := range snap.Layers {
				for _, kv := range [][2][]byte{{snap.K[l], cpuSnap.K[l]}, {snap.V[l], cpuSnap.V[l]}} {
					got, want := kvValues(kv[0], dtype), kvValues(kv[1], "f32")
					require.Len(t, got, len(want))
					for i := range want {
						require.InDelta(t, want[i], got[i], 1e-3+2e-3*math.Abs(float64(want[i])), "layer %d element %d", l, i)
					}
				}
			}
			// Through a staging buffer of one layer's keys, or of three such buffers, the export is the same.
			defer func(b uint64) { kvStagingBytes = b }(kvStagingBytes)
			per := uint64(len(snap.K[0]))
			for _, bytes := range []uint64{per, 3 * per} {
				kvStagingBytes = bytes
				again, err := src.Snapshot(n)
				require.NoError(t, err)
				require.Equal(t, snap, again, "staging of %d bytes", bytes)
			}
			key := "tiny/seed1/webgpu-" + dtype
			snap, err = model.DecodeKV(model.EncodeKV(snap, key), key)
			require.NoError(t, err)

			restoredDec := newRec()
			restored := model.NewSession(restoredDec, m.Config)
			require.NoError(t, restored.Restore(snap))
			got, err := restored.Generate(ctx, prompt, opt, nop)
			require.NoError(t, err)
			require.Equal(t, len(prompt)-n, got.Prefilled)

			// A fresh engine that prefilled the system prompt, then the prompt's rest, as the restored one does.
			freshDec := newRec()
			fresh := model.NewSession(freshDec, m.Config)
			_, err = fresh.Generate(ctx, system, model.GenerateOptions{MaxTokens: 1, Sampling: model.Greedy()}, nop)
			require.NoError(t, err)
			freshDec.logits = nil
			want, err := fresh.Generate(ctx, prompt, opt, nop)
			require.NoError(t, err)
			require.Equal(t, want.Tokens, got.Tokens)
			require.Equal(t, freshDec.logits, restoredDec.logits, "logits must be bit-identical")

			// A fresh engine that prefilled the whole prompt at once.
			wholeDec := newRec()
			whole, err := model.NewSession(wholeDec, m.Config).Generate(ctx, prompt, opt, nop)
			require.NoError(t, err)
			require.Equal(t, whole.Tokens, got.Tokens)
			require.Equal(t, wholeDec.logits, restoredDec.logits, "logits must be bit-identical to a prefill of the whole prompt")

			// The restored engine through its own ForwardTopK path answers the same.
			direct := model.NewSession(restoredDec.e, m.Config)
			require.NoError(t, direct.Restore(snap))
			top, err := direct.Generate(ctx, prompt, opt, nop)
			require.NoError(t, err)
			require.Equal(t, len(prompt)-n, top.Prefilled)
			require.Equal(t, want.Tokens, top.Tokens)
		})
	}
}

func TestEngineImportKVRejectsMismatch(t *testing.T) {
	d := testDevice(t)
	m := tinyModel(t)
	e, err := NewWithOptions(d, m.Config, m.Weights, Options{MaxContext: 16})
	require.NoError(t, err)
	defer e.Close()
	_, err = e.Forward([]int{1, 2, 3}, 0, false)
	require.NoError(t, err)
	s, err := e.ExportKV([]int{1, 2, 3})
	require.NoError(t, err)
	require.NoError(t, e.ImportKV(s))

	bad := *s
	bad.DType = "f16"
	require.ErrorContains(t, e.ImportKV(&bad), "dtype")
	bad = *s
	bad.Layers++
	require.ErrorContains(t, e.ImportKV(&bad), "layers")
	bad = *s
	bad.KVDim *= 2
	require.ErrorContains(t, e.ImportKV(&bad), "kv dim")
	bad = *s
	bad.Tokens = make([]int, 17)
	require.ErrorContains(t, e.ImportKV(&bad), "context length 16")
	bad = *s
	bad.Tokens = []int{1, 2}
	require.ErrorContains(t, e.ImportKV(&bad), "bytes")
	_, err = e.ExportKV(make([]int, 17))
	require.ErrorContains(t, err, "context length 16")

	empty, err := e.ExportKV(nil)
	require.NoError(t, err)
	require.NoError(t, e.ImportKV(empty))

	f16, err := NewWithOptions(d, m.Config, m.Weights, Options{MaxContext: 16, KVF16: true})
	require.NoError(t, err)
	defer f16.Close()
	require.ErrorContains(t, f16.ImportKV(s), `dtype "f32", the cache holds "f16"`)
}
