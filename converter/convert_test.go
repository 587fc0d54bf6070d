package converter

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/safetensors"
	"github.com/ilmweb/ilmweb/synth"
)

// tinyHF writes the synthetic tiny checkpoint (seed 1) into a fresh directory the test may modify.
func tinyHF(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hf")
	require.NoError(t, synth.Write(synth.Presets["tiny"], dir, 1))
	return dir
}

// runMain runs the convert command and returns its exit status and stderr.
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), args, &stdout, &stderr)
	return code, stderr.String()
}

// requireNoOutput checks that nothing was left at dst nor beside it.
func requireNoOutput(t *testing.T, dst string) {
	t.Helper()
	_, err := os.Stat(dst)
	require.Error(t, err, "%s was left behind", dst)
	entries, _ := os.ReadDir(filepath.Dir(dst))
	for _, e := range entries {
		require.NotContains(t, e.Name(), ".tmp-", "temporary directory left behind")
	}
}

func convertTiny(t *testing.T, src string, opts Options) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	_, err := Convert(context.Background(), src, dst, opts)
	require.NoError(t, err)
	return dst
}

func TestConvertF32RoundTripsExactly(t *testing.T) {
	src := tinyHF(t)
	dst := convertTiny(t, src, Options{Quant: "f32"})
	want, err := model.Load(src)
	require.NoError(t, err)
	got, err := model.Load(dst)
	require.NoError(t, err)
	require.Equal(t, want.Config, got.Config)
	require.Equal(t, want.Stop, got.Stop)

	bits := func(v []float32) []uint32 {
		out := make([]uint32, len(v))
		for i, f := range v {
			out[i] = math.Float32bits(f)
		}
		return out
	}
	vecs := func(w *model.Weights) [][]float32 {
		v := [][]float32{w.Norm}
		for _, l := range w.Layers {
			v = append(v, l.InputNorm, l.PostNorm)
		}
		return v
	}
	lins := func(w *model.Weights) []*model.Linear {
		v := []*model.Linear{&w.Embed, &w.LMHead}
		for i := range w.Layers {
			l := &w.Layers[i]
			v = append(v, &l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down)
		}
		return v
	}
	for i, v := range vecs(want.Weights) {
		require.Equal(t, bits(v), bits(vecs(got.Weights)[i]))
	}
	for i, l := range lins(want.Weights) {
		g := lins(got.Weights)[i]
		require.Equal(t, [2]int{l.Out, l.In}, [2]int{g.Out, g.In})
		require.Equal(t, bits(l.W), bits(g.Dense()), "linear %d", i)
		require.NotNil(t, g.Q)
		require.Equal(t, "f32", g.Q.DType)
		require.Equal(t, bits(l.W), g.Q.Data)
	}
}

// TestConvertQ4LogitsCloseToF32 runs the tiny model on 160 tokens (past its 128-position RoPE limit)
// with the HF weights and with converted ones, and compares the next-token distributions. The tiny
// model's weights are random, so its top two logits are often close (median gap 0.4): 4-bit noise flips
// some of them. Measured: q4 top-1 0.76, mean KL 0.033 (plain round-to-nearest: 0.75, 0.045); q8 0.99, 0.0001.
func TestConvertQ4LogitsCloseToF32(t *testing.T) {
	src := tinyHF(t)
	ref, err := model.Load(src)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(7, 7))
	ids := make([]int, 160)
	for i := range ids {
		ids[i] = 3 + rng.IntN(ref.Config.VocabSize-3)
	}
	want, err := model.NewCPU(ref.Config, ref.Weights, len(ids)).Forward(ids, 0, true)
	require.NoError(t, err)
	for _, c := range []struct {
		quant          string
		minTop1, maxKL float64
	}{{"q4", 0.70, 0.05}, {"q8", 0.95, 0.001}} {
		m, err := model.Load(convertTiny(t, src, Options{Quant: c.quant}))
		require.NoError(t, err)
		got, err := model.NewCPU(m.Config, m.Weights, len(ids)).Forward(ids, 0, true)
		require.NoError(t, err)
		agree, kl := 0, 0.0
		for i := range ids {
			if argmax(want[i]) == argmax(got[i]) {
				agree++
			}
			kl += klDiv(want[i], got[i])
		}
		top1, meanKL := float64(agree)/float64(len(ids)), kl/float64(len(ids))
		t.Logf("%s vs HF weights over %d tokens: top-1 agreement %.4f, mean KL %.5f nats", c.quant, len(ids), top1, meanKL)
		require.GreaterOrEqual(t, top1, c.minTop1, c.quant)
		require.Less(t, meanKL, c.maxKL, c.quant)
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// klDiv is KL(softmax(p) || softmax(q)) in nats.
func klDiv(p, q []float32) float64 {
	logSoftmax := func(v []float32) []float64 {
		m := float64(v[argmax(v)])
		var s float64
		for _, x := range v {
			s += math.Exp(float64(x) - m)
		}
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x) - m - math.Log(s)
		}
		return out
	}
	lp, lq := logSoftmax(p), logSoftmax(q)
	var kl float64
	for i := range lp {
		kl += math.Exp(lp[i]) * (lp[i] - lq[i])
	}
	return kl
}

func TestConvertLayoutSplitsIntoSmallShards(t *testing.T) {
	src := tinyHF(t)
	const shardSize = 20 << 10
	small := convertTiny(t, src, Options{ShardSize: shardSize})
	whole := convertTiny(t, src, Options{})
	raw, err := os.ReadFile(filepath.Join(small, model.ManifestFile))
	require.NoError(t, err)
	man, err := model.ParseManifest("manifest.json", raw)
	require.NoError(t, err)
	require.Greater(t, len(man.Shards), 10)
	for _, s := range man.Shards {
		require.LessOrEqual(t, s.Bytes, int64(shardSize))
		st, err := os.Stat(filepath.Join(small, s.Name))
		require.NoError(t, err)
		require.Equal(t, s.Bytes, st.Size())
	}
	embed := man.Tensor("model.embed_tokens.weight")
	require.Greater(t, len(embed.Parts), 3, "the embedding is split into row blocks")

	// The weights do not depend on how they are sharded.
	a, err := model.Load(small)
	require.NoError(t, err)
	b, err := model.Load(whole)
	require.NoError(t, err)
	require.Equal(t, b.Weights.Embed.Q, a.Weights.Embed.Q)
	require.Equal(t, b.Weights.LMHead.Q, a.Weights.LMHead.Q)
	require.Equal(t, b.Weights.Layers[1].Down.Q, a.Weights.Layers[1].Down.Q)
}

// TestFormatAsDocumented decodes every q4 tensor straight from the shard bytes with the formulas of
// docs/FORMAT.md, independently of model.QuantMatrix, and checks the loader agrees.
func TestFormatAsDocumented(t *testing.T) {
	src := tinyHF(t)
	dst := convertTiny(t, src, Options{ShardSize: 24 << 10})
	raw, err := os.ReadFile(filepath.Join(dst, model.ManifestFile))
	require.NoError(t, err)
	man, err := model.ParseManifest("manifest.json", raw)
	require.NoError(t, err)
	m, err := model.Load(dst)
	require.NoError(t, err)
	word := func(b []byte, i int) uint32 { return binary.LittleEndian.Uint32(b[4*i:]) }
	f16 := func(h uint32) float64 { // IEEE half → float64, written out from the standard
		sign, exp, frac := float64(1-2*int(h>>15&1)), int(h>>10&31), float64(h&1023)
		if exp == 0 {
			return sign * frac / 1024 * math.Pow(2, -14)
		}
		return sign * (1 + frac/1024) * math.Pow(2, float64(exp-15))
	}
	group := man.Quant.GroupSize
	for _, c := range []struct {
		name string
		lin  *model.Linear
	}{
		{"model.embed_tokens.weight", &m.Weights.Embed}, {"model.layers.0.self_attn.q_proj.weight", &m.Weights.Layers[0].Q},
		{"model.layers.1.mlp.down_proj.weight", &m.Weights.Layers[1].Down}, {"lm_head.weight", &m.Weights.LMHead},
	} {
		te, dense := man.Tensor(c.name), c.lin.Dense()
		require.Equal(t, "q4", te.DType)
		in := te.Shape[1]
		G := in / group
		for _, p := range te.Parts {
			shard, err := os.ReadFile(filepath.Join(dst, man.Shards[p.Shard].Name))
			require.NoError(t, err)
			data := shard[p.Data.Offset : p.Data.Offset+p.Data.Bytes]
			scales := shard[p.Scales.Offset : p.Scales.Offset+p.Scales.Bytes]
			for r := 0; r < p.Rows[1]-p.Rows[0]; r++ {
				for c := 0; c < in; c++ {
					u := word(data, r*(in/8)+c/8) >> (4 * (c % 8)) & 15
					g := c / group
					s := f16(word(scales, r*((G+1)/2)+g/2) >> (16 * (g % 2)) & 0xffff)
					want := (float64(u) - 8) * s
					require.Equal(t, float32(want), dense[(p.Rows[0]+r)*in+c])
				}
			}
		}
	}
}

func TestConvertQ8AndF16(t *testing.T) {
	src := tinyHF(t)
	ref, err := model.Load(src)
	require.NoError(t, err)
	for _, c := range []struct {
		opts   Options
		maxRel float64
	}{{Options{Quant: "q8"}, 0.006}, {Options{Quant: "f16"}, 0.001}, {Options{Quant: "q4", LMHead: "q8"}, 0.07}} {
		dst := convertTiny(t, src, c.opts)
		m, err := model.Load(dst)
		require.NoError(t, err)
		raw, err := os.ReadFile(filepath.Join(dst, model.ManifestFile))
		require.NoError(t, err)
		man, err := model.ParseManifest("manifest.json", raw)
		require.NoError(t, err)
		for _, te := range man.Tensors {
			require.LessOrEqual(t, te.Error.RelRMSE, c.maxRel, "%+v %s", c.opts, te.Name)
		}
		lmHead := c.opts.LMHead
		if lmHead == "" {
			lmHead = c.opts.Quant
		}
		require.Equal(t, lmHead, man.Tensor("lm_head.weight").DType)
		require.Equal(t, lmHead, m.Weights.LMHead.Q.DType)
		require.InDelta(t, ref.Weights.LMHead.W[5], m.Weights.LMHead.Dense()[5], 0.02)
	}
}

// TestConvertRejectsBadInput: every bad input gives exit status 1, one line on stderr naming the
// file or tensor at fault, and nothing at DST.
func TestConvertRejectsBadInput(t *testing.T) {
	const file = "model-00001-of-00003.safetensors"
	cases := []struct {
		name   string
		break_ func(t *testing.T, src string)
		args   []string
		want   []string // substrings of the error line
	}{
		{"truncated safetensors file", func(t *testing.T, src string) {
			p := filepath.Join(src, file)
			st, _ := os.Stat(p)
			require.NoError(t, os.Truncate(p, st.Size()-10))
		}, nil, []string{file, "data section"}},
		{"header length beyond the file", func(t *testing.T, src string) {
			editFile(t, filepath.Join(src, file), func(b []byte) []byte {
				binary.LittleEndian.PutUint64(b, uint64(len(b)))
				return b
			})
		}, nil, []string{file, "beyond the end"}},
		{"malformed header JSON", func(t *testing.T, src string) {
			editFile(t, filepath.Join(src, file), func(b []byte) []byte {
				b[8+1] = '}' // {"... → {}...
				return b
			})
		}, nil, []string{file, "JSON"}},
		{"overlapping offsets", func(t *testing.T, src string) {
			editHeader(t, filepath.Join(src, file), func(h map[string]map[string]any) {
				e := h["model.layers.0.input_layernorm.weight"]
				offs := e["data_offsets"].([]any)
				e["data_offsets"] = []any{offs[0].(float64) - 2, offs[1].(float64) - 2}
			})
		}, nil, []string{file, "overlap"}},
		{"unknown dtype", func(t *testing.T, src string) {
			editHeader(t, filepath.Join(src, file), func(h map[string]map[string]any) {
				h["model.layers.0.input_layernorm.weight"]["dtype"] = "Q4"
			})
		}, nil, []string{file, "model.layers.0.input_layernorm.weight", "unknown dtype"}},
		{"unsupported dtype", func(t *testing.T, src string) {
			editHeader(t, filepath.Join(src, file), func(h map[string]map[string]any) {
				h["model.layers.0.input_layernorm.weight"]["dtype"] = "I16"
			})
		}, nil, []string{file, "model.layers.0.input_layernorm.weight", "dtype I16"}},
		{"missing tensor", func(t *testing.T, src string) {
			renameTensor(t, src, file, "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.gate.weight")
		}, nil, []string{"model.layers.0.mlp.gate_proj.weight", "no such tensor"}},
		{"unexpected tensor", func(t *testing.T, src string) {
			addTensors(t, src, "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.rotary_emb.inv_freq")
		}, nil, []string{"extra.safetensors", "model.layers.0.self_attn.q_proj.bias", "not part of the model"}},
		{"wrong shape", func(t *testing.T, src string) {
			editHeader(t, filepath.Join(src, file), func(h map[string]map[string]any) {
				h["model.layers.0.mlp.gate_proj.weight"]["shape"] = []any{128, 352}
			})
		}, nil, []string{file, "model.layers.0.mlp.gate_proj.weight", "shape [128 352], want [352 128]"}},
		{"NaN weight", func(t *testing.T, src string) {
			setBF16(t, filepath.Join(src, file), "model.layers.0.self_attn.k_proj.weight", 5*128+7, 0x7fc0)
		}, nil, []string{file, "model.layers.0.self_attn.k_proj.weight", "NaN at [5, 7]"}},
		{"infinite weight", func(t *testing.T, src string) {
			setBF16(t, filepath.Join(src, file), "model.layers.0.input_layernorm.weight", 3, 0xff80)
		}, nil, []string{file, "model.layers.0.input_layernorm.weight", "-Inf at [3]"}},
		{"unreadable config", func(t *testing.T, src string) {
			require.NoError(t, os.Remove(filepath.Join(src, "config.json")))
			require.NoError(t, os.Mkdir(filepath.Join(src, "config.json"), 0o755))
		}, nil, []string{"config.json", "is a directory"}},
		{"invalid config", func(t *testing.T, src string) {
			require.NoError(t, os.WriteFile(filepath.Join(src, "config.json"), []byte(`{"hidden_size": 128,}`), 0o644))
		}, nil, []string{"config.json", "invalid JSON"}},
		{"missing tokenizer", func(t *testing.T, src string) {
			require.NoError(t, os.Remove(filepath.Join(src, "tokenizer.model")))
		}, nil, []string{"tokenizer.model"}},
		{"columns not a multiple of the group", func(*testing.T, string) {}, []string{"-group", "256"},
			[]string{"model.embed_tokens.weight", "multiple of the group size 256"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := tinyHF(t)
			c.break_(t, src)
			dst := filepath.Join(t.TempDir(), "out")
			code, stderr := runMain(t, append(append([]string{"-q"}, c.args...), src, dst)...)
			require.Equal(t, 1, code, stderr)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			for _, w := range c.want {
				require.Contains(t, stderr, w)
			}
			requireNoOutput(t, dst)
		})
	}
}

// editFile rewrites a file through f.
func editFile(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, f(b), 0o644))
}

// editHeader rewrites a safetensors header (tensor entries as generic JSON), keeping the data section.
func editHeader(t *testing.T, path string, f func(map[string]map[string]any)) {
	t.Helper()
	editFile(t, path, func(b []byte) []byte {
		n := binary.LittleEndian.Uint64(b)
		var h map[string]map[string]any
		require.NoError(t, json.Unmarshal(b[8:8+n], &h))
		f(h)
		hdr, err := json.Marshal(h)
		require.NoError(t, err)
		out := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
		return append(append(out, hdr...), b[8+n:]...)
	})
}

func editIndex(t *testing.T, src string, f func(map[string]string)) {
	t.Helper()
	path := filepath.Join(src, safetensors.IndexFile)
	editFile(t, path, func(b []byte) []byte {
		var idx struct {
			Metadata  map[string]any    `json:"metadata"`
			WeightMap map[string]string `json:"weight_map"`
		}
		require.NoError(t, json.Unmarshal(b, &idx))
		f(idx.WeightMap)
		out, err := json.Marshal(idx)
		require.NoError(t, err)
		return out
	})
}

// renameTensor renames a tensor in its file's header and in the index.
func renameTensor(t *testing.T, src, file, from, to string) {
	t.Helper()
	editHeader(t, filepath.Join(src, file), func(h map[string]map[string]any) {
		e := h[from]
		delete(h, from)
		h[to] = e
	})
	editIndex(t, src, func(m map[string]string) {
		f := m[from]
		delete(m, from)
		m[to] = f
	})
}

// addTensors adds a file extra.safetensors holding [128] BF16 tensors with the given names to the checkpoint.
func addTensors(t *testing.T, src string, names ...string) {
	t.Helper()
	var infos []safetensors.TensorInfo
	for _, n := range names {
		infos = append(infos, safetensors.TensorInfo{Name: n, DType: safetensors.BF16, Shape: []int64{128}})
	}
	var buf bytes.Buffer
	w, err := safetensors.NewWriter(&buf, infos, nil)
	require.NoError(t, err)
	_, err = w.Write(make([]byte, w.DataSize()))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, os.WriteFile(filepath.Join(src, "extra.safetensors"), buf.Bytes(), 0o644))
	editIndex(t, src, func(m map[string]string) {
		for _, n := range names {
			m[n] = "extra.safetensors"
		}
	})
}

// setBF16 overwrites element i of a BF16 tensor.
func setBF16(t *testing.T, path, tensor string, i int, bits uint16) {
	t.Helper()
	f, err := safetensors.Open(path)
	require.NoError(t, err)
	info, ok := f.Info(tensor)
	require.True(t, ok)
	off := f.Header.DataStart + info.Begin + int64(2*i)
	require.NoError(t, f.Close())
	editFile(t, path, func(b []byte) []byte {
		binary.LittleEndian.PutUint16(b[off:], bits)
		return b
	})
}

// failingWriter accepts budget bytes in all, then fails.
type failingWriter struct {
	f      *os.File
	budget *int64
}

func (w failingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > *w.budget {
		n, _ := w.f.Write(p[:*w.budget])
		*w.budget = 0
		return n, errors.New("injected: no space left on device")
	}
	*w.budget -= int64(len(p))
	return w.f.Write(p)
}

func (w failingWriter) Close() error { return w.f.Close() }

func TestConvertWriteErrorLeavesNothing(t *testing.T) {
	src := tinyHF(t)
	for _, budget := range []int64{0, 100_000, 200_000, 356_000} { // the shard is 357888 bytes, then the files
		dst := filepath.Join(t.TempDir(), "out")
		left := budget
		opts := Options{ShardSize: 64 << 10, create: func(path string) (io.WriteCloser, error) {
			f, err := os.Create(path)
			return failingWriter{f, &left}, err
		}}
		_, err := Convert(context.Background(), src, dst, opts)
		require.ErrorContains(t, err, "injected: no space left on device", "budget %d", budget)
		require.NotContains(t, err.Error(), "\n")
		requireNoOutput(t, dst)
	}
	// A file where the output's parent directory should be.
	parent := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(parent, []byte("x"), 0o644))
	code, stderr := runMain(t, src, filepath.Join(parent, "out"))
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "not a directory")
	requireNoOutput(t, filepath.Join(parent, "out"))
}

func TestConvertCancelLeavesNothing(t *testing.T) {
	src := tinyHF(t)
	dst := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	_, err := Convert(ctx, src, dst, Options{Workers: 1, Progress: func(stage string, done, total int64) {
		if calls++; calls == 3 {
			cancel() // what SIGINT does through signal.NotifyContext in cmd/convert
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	requireNoOutput(t, dst)
}

func TestConvertDstRules(t *testing.T) {
	src := tinyHF(t)
	dst := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.Mkdir(dst, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "keep"), []byte("old"), 0o644))

	code, stderr := runMain(t, src, dst)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "not empty (use -force")
	require.FileExists(t, filepath.Join(dst, "keep"))

	// -force with a failing conversion leaves the old directory as it was.
	bad := tinyHF(t)
	setBF16(t, filepath.Join(bad, "model-00003-of-00003.safetensors"), "lm_head.weight", 0, 0x7f80)
	code, stderr = runMain(t, "-force", bad, dst)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "lm_head.weight")
	require.FileExists(t, filepath.Join(dst, "keep"))

	// -force with a good one replaces it.
	code, stderr = runMain(t, "-q", "-force", src, dst)
	require.Equal(t, 0, code, stderr)
	require.NoFileExists(t, filepath.Join(dst, "keep"))
	require.FileExists(t, filepath.Join(dst, model.ManifestFile))
	requireNoTemp(t, filepath.Dir(dst))

	// An empty directory is fine without -force.
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	code, stderr = runMain(t, "-q", src, empty)
	require.Equal(t, 0, code, stderr)
	require.FileExists(t, filepath.Join(empty, model.ManifestFile))
}

func requireNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.NotContains(t, e.Name(), ".tmp-")
	}
}

func TestVerify(t *testing.T) {
	src := tinyHF(t)
	dst := convertTiny(t, src, Options{ShardSize: 64 << 10})
	code, stderr := runMain(t, "-verify", dst)
	require.Equal(t, 0, code, stderr)

	raw, err := os.ReadFile(filepath.Join(dst, model.ManifestFile))
	require.NoError(t, err)
	man, err := model.ParseManifest("manifest.json", raw)
	require.NoError(t, err)
	shard := man.Shards[2].Name
	editFile(t, filepath.Join(dst, shard), func(b []byte) []byte {
		b[1000] ^= 1
		return b
	})
	require.NoError(t, os.Remove(filepath.Join(dst, "tokenizer.model")))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "system-prompt.txt"), []byte("changed"), 0o644))

	code, stderr = runMain(t, "-q", "-verify", dst)
	require.Equal(t, 1, code)
	require.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
	require.Contains(t, stderr, "3 of ")
	require.Contains(t, stderr, shard+" (sha256 ")
	require.Contains(t, stderr, "tokenizer.model (missing)")
	require.Contains(t, stderr, "system-prompt.txt (7 bytes, want ")
	require.NotContains(t, stderr, man.Shards[1].Name)
}

func TestMainUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"only-src"}, {"-verify"}, {"-shard-size", "lots", "a", "b"}, {"-nope", "a", "b"}} {
		code, stderr := runMain(t, args...)
		require.Equal(t, 2, code, "%q: %s", args, stderr)
	}
	code, stderr := runMain(t, "-quant", "q3", tinyHF(t), filepath.Join(t.TempDir(), "x"))
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `-quant "q3"`)
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "64M": 64 << 20, "4096": 4096, "1GiB": 1 << 30, "512KiB": 512 << 10, "2K": 2048} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "MiB", "-1", "0", "1.5MiB", "64MB", fmt.Sprint(int64(1)<<62) + "G"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
	}
}

func TestConvertSkipsRotaryInvFreq(t *testing.T) {
	src := tinyHF(t)
	addTensors(t, src, "model.layers.0.self_attn.rotary_emb.inv_freq")
	dst := convertTiny(t, src, Options{})
	raw, err := os.ReadFile(filepath.Join(dst, model.ManifestFile))
	require.NoError(t, err)
	require.NotContains(t, string(raw), "inv_freq")
}

func TestLayoutRowTooLarge(t *testing.T) {
	tensors := []model.TensorEntry{{Name: "wide", DType: "f32", Shape: []int{4, 4096}}}
	_, err := layout(tensors, 32, 8192)
	require.ErrorContains(t, err, `tensor "wide": a row of 16384 bytes does not fit in a 8192-byte shard`)
}

func TestConvertRefusesSourceAsOutput(t *testing.T) {
	src := tinyHF(t)
	code, stderr := runMain(t, "-q", "-force", src, src+"/.")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "is the source directory")
	require.FileExists(t, filepath.Join(src, "config.json"))
}

func TestMainReportsProgressAndErrors(t *testing.T) {
	src := tinyHF(t)
	dst := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, Main(context.Background(), []string{src, dst}, &stdout, &stderr), stderr.String())
	// stderr is not a terminal: one plain line when the stage completes
	require.Regexp(t, `^convert: 1\.2 MiB / 1\.2 MiB \(100%\), ETA 0s, .*/s\n$`, stderr.String())
	require.Contains(t, stdout.String(), "lm_head.weight                                  q4     [1024 128]  1      0.059")
	require.Contains(t, stdout.String(), "wrote "+dst)

	stdout.Reset()
	stderr.Reset()
	require.Equal(t, 0, Main(context.Background(), []string{"-verify", dst}, &stdout, &stderr))
	require.Equal(t, dst+": ok, 6 files and 1 shards match the manifest\n", stdout.String())
}
