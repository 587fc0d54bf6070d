// Command gguf writes a converted q4 model (group 32) as a GGUF v3 file of llama architecture with Q4_0
// tensors, so that llama.cpp runs the same shapes and the same weights as the CPU engine (tools/bench-cpu.sh):
//
//	go run ./tools/gguf -model DIR -out FILE.gguf
//
// Our q4 and Q4_0 share their arithmetic, (u-8)·f16 scale per 32 columns; only the nibble order within a
// block differs (ours: column c in byte c/2; Q4_0: columns c and c+16 in byte c). The vocabulary is a
// stand-in of the model's size that llama.cpp's SentencePiece loader accepts: the benchmark feeds token ids.
// Rotary embedding and dynamic NTK scaling follow llama's conventions, not InternLM3's: speeds compare, logits do not.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"

	"github.com/ilmweb/ilmweb/model"
)

func main() {
	dir := flag.String("model", "", "converted model directory (q4, group 32)")
	out := flag.String("out", "", "GGUF file to write")
	flag.Parse()
	if err := run(*dir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gguf:", err)
		os.Exit(1)
	}
}

// GGUF value types and ggml tensor types used here.
const (
	tU32, tI32, tF32, tStr, tArr = 4, 5, 6, 8, 9
	ggmlF32, ggmlQ4_0            = 0, 2
	align                        = 32
)

type tensor struct {
	name string
	dims []uint64 // innermost first
	typ  uint32
	data []byte
}

func run(dir, out string) error {
	if dir == "" || out == "" {
		return fmt.Errorf("-model and -out are required")
	}
	m, err := model.Load(dir)
	if err != nil {
		return err
	}
	c, w := m.Config, m.Weights
	var ts []tensor
	q4 := func(name string, l model.Linear) error {
		if l.Q == nil || l.Q.DType != model.DTypeQ4 || l.Q.Group != 32 {
			return fmt.Errorf("%s: %s: want q4 with group 32 (convert -quant q4 -group 32)", dir, name)
		}
		ts = append(ts, tensor{name, []uint64{uint64(l.In), uint64(l.Out)}, ggmlQ4_0, q4_0(l.Q)})
		return nil
	}
	f32 := func(name string, v []float32) {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		ts = append(ts, tensor{name, []uint64{uint64(len(v))}, ggmlF32, b})
	}
	if err := q4("token_embd.weight", w.Embed); err != nil {
		return err
	}
	for i, l := range w.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		f32(p+"attn_norm.weight", l.InputNorm)
		f32(p+"ffn_norm.weight", l.PostNorm)
		for _, e := range []struct {
			name string
			l    model.Linear
		}{{"attn_q", l.Q}, {"attn_k", l.K}, {"attn_v", l.V}, {"attn_output", l.O}, {"ffn_gate", l.Gate}, {"ffn_up", l.Up}, {"ffn_down", l.Down}} {
			if err := q4(p+e.name+".weight", e.l); err != nil {
				return err
			}
		}
	}
	f32("output_norm.weight", w.Norm)
	if err := q4("output.weight", w.LMHead); err != nil {
		return err
	}

	V := c.VocabSize
	tokens, scores, types := make([]string, V), make([]float32, V), make([]int32, V)
	for i := range tokens {
		switch {
		case i < 3:
			tokens[i], types[i] = []string{"<unk>", "<s>", "</s>"}[i], 3
		case i < 3+256:
			tokens[i], types[i] = fmt.Sprintf("<0x%02X>", i-3), 6
		default:
			tokens[i], scores[i], types[i] = fmt.Sprintf("▁t%d", i), -float32(i), 1
		}
	}
	types[0] = 2
	kv := []struct {
		key string
		val any
	}{
		{"general.architecture", "llama"},
		{"general.name", "ilmweb bench " + c.ModelType},
		{"general.alignment", uint32(align)},
		{"general.file_type", uint32(2)}, // mostly Q4_0
		{"llama.context_length", uint32(c.MaxPositionEmbeddings)},
		{"llama.embedding_length", uint32(c.HiddenSize)},
		{"llama.block_count", uint32(c.NumHiddenLayers)},
		{"llama.feed_forward_length", uint32(c.IntermediateSize)},
		{"llama.attention.head_count", uint32(c.NumAttentionHeads)},
		{"llama.attention.head_count_kv", uint32(c.NumKeyValueHeads)},
		{"llama.attention.key_length", uint32(c.HeadDim)},
		{"llama.attention.value_length", uint32(c.HeadDim)},
		{"llama.rope.dimension_count", uint32(c.HeadDim)},
		{"llama.rope.freq_base", float32(c.RopeTheta)},
		{"llama.attention.layer_norm_rms_epsilon", float32(c.RMSNormEps)},
		{"llama.vocab_size", uint32(V)},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.unknown_token_id", uint32(0)},
		{"tokenizer.ggml.bos_token_id", uint32(1)},
		{"tokenizer.ggml.eos_token_id", uint32(2)},
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	put := func(v any) { binary.Write(bw, binary.LittleEndian, v) }
	str := func(s string) { put(uint64(len(s))); bw.WriteString(s) }
	bw.WriteString("GGUF")
	put(uint32(3))
	put(uint64(len(ts)))
	put(uint64(len(kv)))
	for _, e := range kv {
		str(e.key)
		switch v := e.val.(type) {
		case string:
			put(uint32(tStr))
			str(v)
		case uint32:
			put(uint32(tU32))
			put(v)
		case float32:
			put(uint32(tF32))
			put(v)
		case []string:
			put(uint32(tArr))
			put(uint32(tStr))
			put(uint64(len(v)))
			for _, s := range v {
				str(s)
			}
		case []float32:
			put(uint32(tArr))
			put(uint32(tF32))
			put(uint64(len(v)))
			put(v)
		case []int32:
			put(uint32(tArr))
			put(uint32(tI32))
			put(uint64(len(v)))
			put(v)
		}
	}
	var off uint64
	for _, t := range ts {
		str(t.name)
		put(uint32(len(t.dims)))
		put(t.dims)
		put(t.typ)
		put(off)
		off = pad(off + uint64(len(t.data)))
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	pos, err := f.Seek(0, 1)
	if err != nil {
		return err
	}
	bw.Write(make([]byte, pad(uint64(pos))-uint64(pos)))
	for _, t := range ts {
		bw.Write(t.data)
		bw.Write(make([]byte, pad(uint64(len(t.data)))-uint64(len(t.data))))
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func pad(n uint64) uint64 { return (n + align - 1) / align * align }

// q4_0 re-packs a q4 matrix with group 32 into Q4_0 blocks: an f16 scale, then 16 bytes whose low nibbles
// are columns 0-15 and high nibbles columns 16-31.
func q4_0(q *model.QuantMatrix) []byte {
	nb := q.Cols / 32
	out := make([]byte, 0, q.Rows*nb*18)
	for r := 0; r < q.Rows; r++ {
		data, scales := q.Data[r*q.RowWords():], q.Scales[r*q.ScaleWords():]
		for b := 0; b < nb; b++ {
			out = binary.LittleEndian.AppendUint16(out, uint16(scales[b/2]>>(16*(b%2))))
			var blk [16]byte
			for c := 0; c < 32; c++ {
				u := byte(data[b*4+c/8] >> (4 * (c % 8)) & 15)
				blk[c%16] |= u << (4 * (c / 16))
			}
			out = append(out, blk[:]...)
		}
	}
	return out
}
