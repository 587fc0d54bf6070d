// Package synth writes random-weight InternLM3 checkpoints in the real Hugging Face layout: config.json,
// BF16 safetensors split over several files with model.safetensors.index.json, tokenizer.model,
// tokenizer_config.json and generation_config.json. The output depends only on the preset and the seed.
package synth

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ilmweb/ilmweb"
	"github.com/ilmweb/ilmweb/safetensors"
)

// Preset is a model shape.
type Preset struct {
	Name                  string
	HiddenSize            int
	IntermediateSize      int
	Layers                int
	Heads, KVHeads        int
	HeadDim               int
	VocabSize             int
	MaxPositionEmbeddings int
	RopeTheta             float64
	MaxFileBytes          int64 // safetensors files are split at about this size
}

// Presets: "tiny" exercises every code path in a model small enough for tests (its max_position_embeddings
// is 128 so dynamic NTK RoPE is reached quickly); "internlm3-8b" has the real shapes (MODEL.md), and the
// tiny tokenizer grown to its 128,512 pieces (tokenizerModel).
var Presets = map[string]Preset{
	"tiny": {Name: "tiny", HiddenSize: 128, IntermediateSize: 352, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 32,
		VocabSize: 1024, MaxPositionEmbeddings: 128, RopeTheta: 10000, MaxFileBytes: 512 << 10},
	"internlm3-8b": {Name: "internlm3-8b", HiddenSize: 4096, IntermediateSize: 10240, Layers: 48, Heads: 32, KVHeads: 2,
		HeadDim: 128, VocabSize: 128512, MaxPositionEmbeddings: 32768, RopeTheta: 50000000, MaxFileBytes: 4 << 30},
}

type tensor struct {
	name  string
	shape []int64
	init  func(rng *rand.Rand) float32 // draws one value
}

// tensors lists the checkpoint's tensors with how each is drawn: embeddings with unit variance, linear
// layers with variance 1/in (so activations keep their scale), norm weights near 1, lm_head with gain 2 so
// the next-token distribution has clear winners (greedy decoding is then stable across backends).
func (p Preset) tensors() []tensor {
	D, F, V := int64(p.HiddenSize), int64(p.IntermediateSize), int64(p.VocabSize)
	Q, KV := int64(p.Heads*p.HeadDim), int64(p.KVHeads*p.HeadDim)
	uniform := func(std float64) func(*rand.Rand) float32 {
		a := std * math.Sqrt(3)
		return func(r *rand.Rand) float32 { return float32(a * (2*r.Float64() - 1)) }
	}
	norm := func(r *rand.Rand) float32 { return float32(1 + 0.2*(2*r.Float64()-1)) }
	linear := func(name string, out, in int64, gain float64) tensor {
		return tensor{name, []int64{out, in}, uniform(gain / math.Sqrt(float64(in)))}
	}
	ts := []tensor{{"model.embed_tokens.weight", []int64{V, D}, uniform(1)}}
	for i := 0; i < p.Layers; i++ {
		pre := fmt.Sprintf("model.layers.%d.", i)
		ts = append(ts,
			tensor{pre + "input_layernorm.weight", []int64{D}, norm},
			linear(pre+"self_attn.q_proj.weight", Q, D, 1),
			linear(pre+"self_attn.k_proj.weight", KV, D, 1),
			linear(pre+"self_attn.v_proj.weight", KV, D, 1),
			linear(pre+"self_attn.o_proj.weight", D, Q, 1),
			tensor{pre + "post_attention_layernorm.weight", []int64{D}, norm},
			linear(pre+"mlp.gate_proj.weight", F, D, 1),
			linear(pre+"mlp.up_proj.weight", F, D, 1),
			linear(pre+"mlp.down_proj.weight", D, F, 1),
		)
	}
	return append(ts, tensor{"model.norm.weight", []int64{D}, norm}, linear("lm_head.weight", V, D, 2))
}

// Write creates dir (which must not exist or be empty) holding the preset's checkpoint. It is built in a
// temporary sibling and renamed into place, so a failure leaves nothing behind.
func Write(p Preset, dir string, seed uint64) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("synth: %s is not empty", dir)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dir)), 0o755); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if err := p.write(tmp, seed); err != nil {
		return err
	}
	os.Remove(dir) // an empty dir may be in the way; a non-empty one was refused above
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

func (p Preset) write(dir string, seed uint64) error {
	imEnd, err := tinyTokenID("<|im_end|>")
	if err != nil {
		return err
	}
	files := p.split()
	weightMap := map[string]string{}
	var total int64
	for i, ts := range files {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(files))
		if err := writeSafetensors(filepath.Join(dir, name), ts, seed); err != nil {
			return err
		}
		for _, t := range ts {
			weightMap[t.name] = name
			total += 2 * elements(t.shape)
		}
	}
	if err := safetensors.WriteIndex(filepath.Join(dir, "model.safetensors.index.json"), weightMap, total); err != nil {
		return err
	}
	jsonFiles := map[string]any{
		"config.json": p.config(),
		"generation_config.json": map[string]any{
			"bos_token_id": 1, "eos_token_id": []int{2, imEnd}, "pad_token_id": 2,
			"do_sample": true, "temperature": 1.0, "top_k": 40, "top_p": 0.8, "repetition_penalty": 1.005,
		},
	}
	for name, v := range jsonFiles {
		data, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, name), append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	tok, err := tokenizerModel(p.VocabSize)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.model"), tok, 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), ilmweb.TinyTokenizerConfig, 0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

func (p Preset) config() map[string]any {
	return map[string]any{
		"architectures": []string{"InternLM3ForCausalLM"}, "model_type": "internlm3",
		"hidden_size": p.HiddenSize, "intermediate_size": p.IntermediateSize, "num_hidden_layers": p.Layers,
		"num_attention_heads": p.Heads, "num_key_value_heads": p.KVHeads, "head_dim": p.HeadDim,
		"vocab_size": p.VocabSize, "max_position_embeddings": p.MaxPositionEmbeddings,
		"rope_theta": p.RopeTheta, "rope_scaling": map[string]any{"factor": 6.0, "rope_type": "dynamic"},
		"rms_norm_eps": 1e-5, "bias": false, "qkv_bias": false, "tie_word_embeddings": false,
		"hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
		"initializer_range": 0.02, "use_cache": true, "torch_dtype": "bfloat16",
	}
}

// split assigns tensors, in order, to files of about MaxFileBytes each.
func (p Preset) split() [][]tensor {
	var files [][]tensor
	var cur []tensor
	var size int64
	for _, t := range p.tensors() {
		n := 2 * elements(t.shape)
		if len(cur) > 0 && size+n > p.MaxFileBytes {
			files, cur, size = append(files, cur), nil, 0
		}
		cur, size = append(cur, t), size+n
	}
	return append(files, cur)
}

// chunkElems is how many values one worker draws at a time; each chunk has its own random stream, so the
// output does not depend on the number of cores.
const chunkElems = 1 << 20

func writeSafetensors(path string, ts []tensor, seed uint64) error {
	infos := make([]safetensors.TensorInfo, len(ts))
	for i, t := range ts {
		infos[i] = safetensors.TensorInfo{Name: t.name, DType: "BF16", Shape: t.shape}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	defer f.Close()
	w, err := safetensors.NewWriter(f, infos, map[string]string{"format": "pt"})
	if err != nil {
		return fmt.Errorf("synth: %s: %w", path, err)
	}
	workers := runtime.GOMAXPROCS(0)
	bufs := make([][]byte, workers)
	for i := range bufs {
		bufs[i] = make([]byte, 2*chunkElems)
	}
	lens := make([]int64, workers) // bytes drawn into each buffer
	for _, t := range ts {
		n := elements(t.shape)
		chunks := (n + chunkElems - 1) / chunkElems
		streamSeed := seed ^ nameHash(t.name)
		for c0 := int64(0); c0 < chunks; c0 += int64(workers) {
			var wg sync.WaitGroup
			batch := min(int64(workers), chunks-c0)
			for j := int64(0); j < batch; j++ {
				wg.Add(1)
				go func(j int64) {
					defer wg.Done()
					c := c0 + j
					cnt := min(chunkElems, n-c*chunkElems)
					rng := rand.New(rand.NewPCG(streamSeed, uint64(c)))
					for k := int64(0); k < cnt; k++ {
						binary.LittleEndian.PutUint16(bufs[j][2*k:], safetensors.BF16FromFloat32(t.init(rng)))
					}
					lens[j] = 2 * cnt
				}(j)
			}
			wg.Wait()
			for j := int64(0); j < batch; j++ {
				if _, err := w.Write(bufs[j][:lens[j]]); err != nil {
					return fmt.Errorf("synth: %s: %w", path, err)
				}
			}
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("synth: %s: %w", path, err)
	}
	return f.Close()
}

func elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// tinyTokenID finds a special token's id in the tiny tokenizer's tokenizer_config.json.
func tinyTokenID(content string) (int, error) {
	var tc struct {
		Added map[string]struct {
			Content string `json:"content"`
		} `json:"added_tokens_decoder"`
	}
	if err := json.Unmarshal(ilmweb.TinyTokenizerConfig, &tc); err != nil {
		return 0, fmt.Errorf("synth: tokenizer_config.json: %w", err)
	}
	for id, t := range tc.Added {
		if t.Content == content {
			var n int
			if _, err := fmt.Sscan(id, &n); err != nil {
				return 0, fmt.Errorf("synth: tokenizer_config.json: added_tokens_decoder key %q: %w", id, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("synth: tokenizer_config.json: no %s in added_tokens_decoder", content)
}

// tokenizerModel is the tiny tokenizer grown to vocab pieces, so that every id a model of that vocabulary
// can produce decodes to text (the full-size preset keeps the real 128,512-row embedding and lm_head). The
// new pieces are NORMAL BPE pieces, each two of the tiny model's joined (the second not starting a word,
// as sentencepiece's split_by_whitespace would have it), scored below every existing piece so they merge
// last; they are appended as repeated fields, which protobuf merges into the message, after the tiny
// model's ids.
func tokenizerModel(vocab int) ([]byte, error) {
	tiny := ilmweb.TinyTokenizerModel
	var words []string // NORMAL pieces
	have := map[string]bool{}
	pieces := 0
	minScore := float32(0)
	for b := tiny; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("synth: tiny tokenizer.model: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType { // not a piece
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, fmt.Errorf("synth: tiny tokenizer.model: %w", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		msg, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("synth: tiny tokenizer.model: %w", protowire.ParseError(n))
		}
		b = b[n:]
		piece, score, kind, err := parsePiece(msg)
		if err != nil {
			return nil, err
		}
		have[piece] = true
		pieces++
		minScore = min(minScore, score)
		if kind == 1 {
			words = append(words, piece)
		}
	}
	out := slices.Clone(tiny)
	for step := 1; pieces < vocab; step++ {
		if step >= len(words) {
			return nil, fmt.Errorf("synth: cannot make %d tokenizer pieces from %d", vocab, len(words))
		}
		for i, a := range words {
			if pieces == vocab {
				break
			}
			b := words[(i+step)%len(words)]
			if strings.HasPrefix(b, "\u2581") || have[a+b] {
				continue
			}
			have[a+b] = true
			pieces++
			var msg []byte
			msg = protowire.AppendTag(msg, 1, protowire.BytesType)
			msg = protowire.AppendString(msg, a+b)
			msg = protowire.AppendTag(msg, 2, protowire.Fixed32Type)
			msg = protowire.AppendFixed32(msg, math.Float32bits(minScore-float32(pieces)))
			out = protowire.AppendTag(out, 1, protowire.BytesType)
			out = protowire.AppendBytes(out, msg)
		}
	}
	return out, nil
}

// parsePiece reads a ModelProto.SentencePiece: its text, score and type (NORMAL, 1, when absent).
func parsePiece(b []byte) (piece string, score float32, kind uint64, err error) {
	kind = 1
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", 0, 0, fmt.Errorf("synth: tiny tokenizer.model piece: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			piece = string(v)
		case num == 2 && typ == protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			score = math.Float32frombits(v)
		case num == 3 && typ == protowire.VarintType:
			kind, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return "", 0, 0, fmt.Errorf("synth: tiny tokenizer.model piece: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return piece, score, kind, nil
}
