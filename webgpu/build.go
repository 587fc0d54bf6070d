package webgpu

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/oliverbestmann/webgpu/wgpu"

	"github.com/ilmweb/ilmweb/model"
)

// stackSpec is one weight matrix of the engine: tensors of the model that read the same input, stacked
// one above the other (q, k and v) or interleaved row by row (gate and up, so that a (gate, up) pair sits
// in one workgroup's rows), with their biases likewise where they have them.
type stackSpec struct {
	name       string // for labels and messages
	interleave bool
	parts      []partSpec
}

// partSpec is one tensor of a stack: its name without ".weight" or ".bias", and its shape.
type partSpec struct {
	name       string
	rows, cols int
}

// tensors lists the engine's matrices in the order build allocates them (the embedding; per layer the
// fused q, k, v projection, o, the fused gate and up, down; lm_head) and its vectors (the norm weights)
// with their lengths.
func (e *Engine) tensors() (stacks []stackSpec, vectors map[string]int) {
	c := e.cfg
	D, Q, KV, F, V := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize, c.VocabSize
	one := func(name string, rows, cols int) stackSpec {
		return stackSpec{name: name, parts: []partSpec{{name, rows, cols}}}
	}
	stacks = append(stacks, one("model.embed_tokens", V, D))
	vectors = map[string]int{"model.norm.weight": D}
	for i := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		vectors[p+"input_layernorm.weight"] = D
		vectors[p+"post_attention_layernorm.weight"] = D
		stacks = append(stacks,
			stackSpec{name: p + "self_attn.{q,k,v}_proj", parts: []partSpec{
				{p + "self_attn.q_proj", Q, D}, {p + "self_attn.k_proj", KV, D}, {p + "self_attn.v_proj", KV, D}}},
			one(p+"self_attn.o_proj", D, Q),
			stackSpec{name: p + "mlp.{gate,up}_proj", interleave: true, parts: []partSpec{
				{p + "mlp.gate_proj", F, D}, {p + "mlp.up_proj", F, D}}},
			one(p+"mlp.down_proj", D, F),
		)
	}
	return append(stacks, one("lm_head", V, D)), vectors
}

// checkLayout checks layout against the engine's tensors before anything is allocated: every matrix
// there with its shape, in a dtype the kernels read, the same for the tensors of one stack; biases and
// vectors f32 of the right length; nothing else.
func checkLayout(layout Layout, stacks []stackSpec, vectors map[string]int) error {
	known := map[string]bool{}
	vector := func(name string, n int) error {
		h, ok := layout[name]
		switch {
		case !ok:
			return fmt.Errorf("webgpu: missing tensor %s", name)
		case h.DType != model.DTypeF32 || h.Rows != 1 || h.Cols != n:
			return fmt.Errorf("webgpu: %s has %d values, want %d", name, h.Rows*h.Cols, n)
		}
		return nil
	}
	for _, s := range stacks {
		var first *model.QuantMatrix
		for _, p := range s.parts {
			name := p.name + ".weight"
			known[name], known[p.name+".bias"] = true, true
			h, ok := layout[name]
			if !ok {
				return fmt.Errorf("webgpu: missing tensor %s", name)
			}
			if h.Rows != p.rows || h.Cols != p.cols {
				return fmt.Errorf("webgpu: tensor %s: shape [%d, %d], want [%d, %d]", name, h.Rows, h.Cols, p.rows, p.cols)
			}
			if err := checkMatrix(name, &h); err != nil {
				return fmt.Errorf("webgpu: %w", err)
			}
			if first == nil {
				first = &h
			} else if h.DType != first.DType || h.Group != first.Group {
				return fmt.Errorf("webgpu: %s is %s (group %d) but %s.weight is %s (group %d): the GPU engine reads them as one matrix",
					name, h.DType, h.Group, s.parts[0].name, first.DType, first.Group)
			}
			if _, ok := layout[p.name+".bias"]; ok {
				if err := vector(p.name+".bias", p.rows); err != nil {
					return err
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(vectors)) {
		known[name] = true
		if err := vector(name, vectors[name]); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(layout)) {
		if !known[name] {
			return fmt.Errorf("webgpu: tensor %q is not part of the model", name)
		}
	}
	return nil
}

// builder allocates the engine's buffers and records its passes, keeping the first error; it notes where
// each tensor of the layout goes.
type builder struct {
	d         *Device
	e         *Engine
	layout    Layout
	targets   map[string]*target
	err       error
	allocated uint64
}

func (b *builder) keep(buf *wgpu.Buffer, err error) *wgpu.Buffer {
	if b.err == nil {
		b.err = err
	}
	if buf != nil {
		b.e.buffers = append(b.e.buffers, buf)
		b.allocated += buf.GetSize()
	}
	return buf
}

// buf allocates a zeroed storage buffer of n floats.
func (b *builder) buf(label string, n int) *wgpu.Buffer {
	if b.err != nil {
		return nil
	}
	return b.keep(b.d.buffer(label, uint64(4*n), storage))
}

// vec allocates the buffer of a vector of the layout, n floats, for Put to fill.
func (b *builder) vec(name string, n int) *wgpu.Buffer {
	buf := b.buf(name, n)
	b.targets[name] = &target{h: b.layout[name], vec: buf}
	return buf
}

// into returns functions that append a constructor's dispatches to pass, keeping the first error.
func (b *builder) into(pass *[]dispatch) (func([]dispatch, error), func(dispatch, error)) {
	ops := func(ds []dispatch, err error) {
		if b.err == nil {
			*pass, b.err = append(*pass, ds...), err
		}
	}
	return ops, func(c dispatch, err error) { ops([]dispatch{c}, err) }
}

// stack allocates the matrix of s, zeroed, and its bias (nil when no tensor of s has one), and notes
// where each of its tensors goes.
func (b *builder) stack(s stackSpec) (*matrix, *wgpu.Buffer) {
	if b.err != nil {
		return nil, nil
	}
	h := b.layout[s.parts[0].name+".weight"] // checkLayout saw every part: all of one dtype and group
	hasBias := false
	h.Rows = 0
	for _, p := range s.parts {
		h.Rows += p.rows
		_, bias := b.layout[p.name+".bias"]
		hasBias = hasBias || bias
	}
	m, err := b.d.newMatrix(s.name+".weight", &h, b.d.Limits.MaxStorageBufferBindingSize)
	if m != nil {
		for _, buf := range m.buffers() {
			b.keep(buf, nil)
		}
	}
	if err != nil {
		b.err = fmt.Errorf("webgpu: %w", err)
		return nil, nil
	}
	var bias *wgpu.Buffer
	if hasBias {
		bias = b.buf(s.name+".bias", h.Rows)
	}
	var pair *pairing
	if s.interleave {
		pair = &pairing{m: m, bias: bias, rows: s.parts[0].rows, weights: make([]*model.QuantMatrix, len(s.parts))}
		if hasBias {
			pair.biases = make([][]uint32, len(s.parts))
		}
	}
	row0 := 0
	for i, p := range s.parts {
		w := &target{h: b.layout[p.name+".weight"], m: m, row0: row0, pair: pair, index: i}
		b.targets[p.name+".weight"] = w
		if hb, ok := b.layout[p.name+".bias"]; ok {
			b.targets[p.name+".bias"] = &target{h: hb, vec: bias, row0: row0, pair: pair, index: i, bias: true}
		} else if pair != nil && hasBias {
			pair.biases[i] = make([]uint32, p.rows) // a part without a bias adds zeros
		}
		row0 += p.rows
	}
	return m, bias
}

// build allocates the buffers and records the decode and prefill passes.
func (b *builder) build(stacks []stackSpec) error {
	e, d, c := b.e, b.d, b.e.cfg
	D, Q, KV, V := c.HiddenSize, c.QDim(), c.KVDim(), c.VocabSize
	H, KVH, HD, eps := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.RMSNormEps
	s := e.scratch()
	scratch := func(name string) *wgpu.Buffer { return b.buf(name, int(s[name]/4)) }
	e.step = b.keep(d.stepBuffer())
	e.tokens = scratch("tokens")
	e.invFreq = b.buf("inv_freq", HD/2)
	x := scratch("x")           // [C, D] residual stream
	qkv := scratch("qkv")       // [C, Q+2KV]
	att := scratch("att")       // [C, Q]
	gu := scratch("gu")         // [C, F]
	scores := scratch("scores") // [H, maxCtx], or split attention's partials
	e.logits = scratch("logits")
	e.staging = b.keep(d.readback("logits staging", s["logits staging"]))
	e.bestStaging = b.keep(d.readback("top-k staging", 8*topkMax))
	if b.err != nil {
		return b.err
	}
	sm, err := d.newSampling(e.logits, V)
	if err != nil {
		return err
	}
	e.sampling = sm
	b.keep(sm.params, nil)
	b.keep(sm.ids, nil)
	b.keep(sm.cands, nil)
	b.keep(sm.best, nil)

	e.embed, _ = b.stack(stacks[0])
	if b.err != nil {
		return b.err
	}
	e.embeds, b.err = d.embedding(e.embed, e.step, e.tokens, x)
	for i := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		kc := b.buf(p+"k_cache", int(e.kvBytes()/4)) // [maxCtx, KV] in f32, or f16 pairs
		vc := b.buf(p+"v_cache", int(e.kvBytes()/4))
		e.kcache, e.vcache = append(e.kcache, kc), append(e.vcache, vc)
		inNorm := b.vec(p+"input_layernorm.weight", D)
		postNorm := b.vec(p+"post_attention_layernorm.weight", D)
		ls := stacks[1+4*i : 5+4*i]
		qkvW, qkvB := b.stack(ls[0])
		oW, oB := b.stack(ls[1])
		guW, guB := b.stack(ls[2])
		downW, downB := b.stack(ls[3])
		if b.err != nil {
			return b.err
		}
		for _, pass := range []struct {
			ds     *[]dispatch
			family string
		}{{&e.decode, "matvec"}, {&e.prefill, "matmul"}} {
			ops, op := b.into(pass.ds)
			// attention rmsnorm, then the q, k and v projections into the qkv rows
			mv := e.tuning.Kernels.Matvec
			if pass.family == "matmul" {
				mv = e.tuning.Kernels.Matmul
			}
			ops(d.linear(pass.family, qkvW, e.step, x, qkv, qkvB, fusion{norm: inNorm, eps: eps, variant: mv}))
			// rotary position embedding on q and k; k and v into the cache
			op(d.rope(e.step, e.invFreq, qkv, kc, vc, H, KVH, HD, e.kvF16))
			// causal grouped-query attention over the cache
			if splits := attentionSplits(e.tuning.Kernels.Attention); pass.family == "matvec" && splits > 0 {
				ops(d.attentionSplit(e.step, qkv, kc, vc, scores, att, H, KVH, HD, Q+2*KV, splits, e.kvF16))
			} else if pass.family == "matvec" {
				op(d.attention(e.step, qkv, kc, vc, scores, att, H, KVH, HD, Q+2*KV, e.maxCtx, e.kvF16))
			} else {
				op(d.attentionPrefill(e.step, qkv, kc, vc, att, H, KVH, HD, Q+2*KV, e.kvF16))
			}
			// output projection and residual connection
			ops(d.linear(pass.family, oW, e.step, att, x, oB, fusion{mode: add, variant: mv}))
			// ffn rmsnorm, then SwiGLU: silu(gate(h)) * up(h)
			ops(d.linear(pass.family, guW, e.step, x, gu, guB, fusion{norm: postNorm, eps: eps, mode: glu, variant: mv}))
			// down projection and residual connection
			ops(d.linear(pass.family, downW, e.step, gu, x, downB, fusion{mode: add, variant: mv}))
		}
		if b.err != nil {
			return b.err
		}
	}
	// final norm and lm_head
	norm := b.vec("model.norm.weight", D)
	head, headB := b.stack(stacks[len(stacks)-1])
	if b.err != nil {
		return b.err
	}
	ops, _ := b.into(&e.headVec)
	ops(d.linear("matvec", head, e.step, x, e.logits, headB, fusion{norm: norm, eps: eps, variant: e.tuning.Kernels.Matvec}))
	ops, _ = b.into(&e.headMat)
	ops(d.linear("matmul", head, e.step, x, e.logits, headB, fusion{norm: norm, eps: eps, variant: e.tuning.Kernels.Matmul}))
	return b.err
}

// missing lists, sorted, the tensors of targets that have not arrived.
func missing(targets map[string]*target) []string {
	var out []string
	for name, t := range targets {
		if !t.done {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(" and %d more", len(names)-n)
}
