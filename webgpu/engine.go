package webgpu

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/oliverbestmann/webgpu/wgpu"

	"github.com/ilmweb/ilmweb/model"
)

// Engine decodes on the GPU. Weights, activations and the KV cache (f32, or f16 as an option) stay in GPU
// memory. A decoded token is one submit of one compute pass of 6 dispatches per layer and 2 more; a prompt
// runs in passes of up to Options.PrefillChunk tokens through tiled kernels. Only what the caller asks for
// is read back: the logits of the last token (or of all), or with ForwardTopK just k (id, logit) pairs.
type Engine struct {
	dev       *Device
	cfg       *model.Config
	maxCtx    int
	kvF16     bool
	chunk     int // tokens per prefill pass
	logitRows int // rows of logits: tokens per pass when Forward returns every token's logits
	mem       Memory
	tuning    Tuning
	stats     Stats
	buffers   []*wgpu.Buffer // everything New allocated, for Close
	kcache    []*wgpu.Buffer // per layer [maxCtx, KV] keys, f32 or f16 pairs (kvsnapshot.go)
	vcache    []*wgpu.Buffer // per layer values, as kcache

	step    *wgpu.Buffer // uniform Step {pos, n} of the pass
	tokens  *wgpu.Buffer // [chunk] token ids of the pass
	invFreq *wgpu.Buffer // [head_dim/2], rewritten per Forward call (dynamic NTK depends on its length)
	logits  *wgpu.Buffer // [logitRows, vocab]
	staging *wgpu.Buffer // [logitRows, vocab], mapped to read the logits
	embed   *matrix
	embeds  []dispatch // the embedding lookups, one per row block of the table
	decode  []dispatch // the layers of a one-token pass
	prefill []dispatch // the layers of a pass of several tokens
	headVec []dispatch // final norm and lm_head for the pass's last token
	headMat []dispatch // final norm and lm_head for every token of the pass

	sampling    *sampling
	bestStaging *wgpu.Buffer // [topkMax] (id, logit bits), mapped to read ForwardTopK's answer
	penalized   penalized
}

var _ model.Decoder = (*Engine)(nil)

// Options are New's settings beyond the model.
type Options struct {
	MaxContext   int    // positions the KV cache holds; 0 means 4096
	PrefillChunk int    // tokens per prefill pass; 0 means 128
	MemoryBudget uint64 // if not 0, the most bytes of GPU memory the engine may allocate
	// KVF16 keeps the KV cache in f16 (packed in pairs, no shader-f16 needed): half its memory and
	// attention's reads, for a small loss of precision (see TestEngineKVF16). The default is f32.
	KVF16 bool
	// Kernels forces kernel variants (variants.go); those left empty are chosen by the autotune at load
	// (autotune.go), whose choice Engine.Tuning reports.
	Kernels Kernels
	// TuneBudget, if not 0, makes the autotune measure now, whatever choice is stored, with this bound
	// instead of tuneBudget (a benchmark that wants every candidate timed on a slow device gives minutes).
	TuneBudget time.Duration
}

// withDefaults fills in the settings left 0.
func (o Options) withDefaults() Options {
	if o.MaxContext == 0 {
		o.MaxContext = 4096
	}
	if o.PrefillChunk == 0 {
		o.PrefillChunk = 128
	}
	return o
}

// Memory is the engine's plan of GPU memory, in bytes.
type Memory struct {
	Weights, KVCache, Scratch uint64
}

// Total is all the engine allocates.
func (m Memory) Total() uint64 { return m.Weights + m.KVCache + m.Scratch }

func (m Memory) String() string {
	return fmt.Sprintf("%d bytes (weights %d, KV cache %d, scratch %d)", m.Total(), m.Weights, m.KVCache, m.Scratch)
}

// New uploads w and allocates a KV cache of maxCtx positions. Matrices go up as a converted model stores
// them (Linear.Q: q4 or f32 so far) or, from an HF checkpoint, as f32.
func New(d *Device, c *model.Config, w *model.Weights, maxCtx int) (*Engine, error) {
	return NewWithOptions(d, c, w, Options{MaxContext: maxCtx})
}

// NewWithOptions is New with every setting. It plans the GPU memory first and fails, saying how many
// bytes are needed and how many the device allows, when a buffer or binding would exceed the device's
// limits or the whole exceeds o.MemoryBudget. It builds the engine the way a streamed model is (Loader):
// every buffer first, then w's tensors one by one.
func NewWithOptions(d *Device, c *model.Config, w *model.Weights, o Options) (*Engine, error) {
	if len(w.Layers) != c.NumHiddenLayers {
		return nil, fmt.Errorf("webgpu: %d layers of weights, config has %d", len(w.Layers), c.NumHiddenLayers)
	}
	ts := weightsTensors(w)
	layout := Layout{}
	for _, t := range ts {
		layout[t.name] = t.header()
	}
	l, err := NewLoader(d, c, layout, o)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if err := l.Put(t.name, t.matrix()); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l.Finish()
}

// newEngine plans and allocates an engine for the tensors of layout, recording its passes; the weights'
// buffers are left zeroed, with the targets that Loader.Put writes the tensors to.
func newEngine(d *Device, c *model.Config, layout Layout, o Options) (*Engine, map[string]*target, error) {
	o = o.withDefaults()
	e, err := planned(d.Limits, c, layout, o)
	if err != nil {
		return nil, nil, err
	}
	e.dev = d
	stacks, _ := e.tensors()
	// The autotune's scratch (one layer's matrices and KV cache) is freed before the engine allocates.
	if e.tuning, err = d.autotune(c, layout["model.layers.0.self_attn.q_proj.weight"].DType, o); err != nil {
		return nil, nil, err
	}
	b := &builder{d: d, e: e, layout: layout, targets: map[string]*target{}}
	if err := d.batch(func() error { return b.build(stacks) }); err != nil {
		e.Close()
		if errors.Is(err, ErrOutOfMemory) {
			return nil, nil, fmt.Errorf("webgpu: the engine needs %v; allocating failed after %d bytes: %w", e.mem, b.allocated, err)
		}
		return nil, nil, err
	}
	return e, b.targets, nil
}

// Close releases the engine's GPU memory. The engine must not be used afterwards.
func (e *Engine) Close() {
	for _, b := range e.buffers {
		b.Destroy()
	}
	e.buffers = nil
}

// Tuning is the kernel variants the engine runs and how they were chosen.
func (e *Engine) Tuning() Tuning { return e.tuning }

// Memory is the engine's GPU memory, as planned before allocating it.
func (e *Engine) Memory() Memory { return e.mem }

// scratch lists the working buffers' sizes in bytes, by name, as build allocates them.
func (e *Engine) scratch() map[string]uint64 {
	c := e.cfg
	C, D, Q, KV, F, V := uint64(e.chunk), uint64(c.HiddenSize), uint64(c.QDim()), uint64(c.KVDim()), uint64(c.IntermediateSize), uint64(c.VocabSize)
	return map[string]uint64{
		"x":               4 * C * D,          // [chunk, D] residual stream
		"qkv":             4 * C * (Q + 2*KV), // [chunk, Q+2KV] q, k, v projections
		"att":             4 * C * Q,          // [chunk, Q] attention output
		"gu":              4 * C * F,          // [chunk, F] silu(gate)·up
		"scores":          4 * uint64(max(c.NumAttentionHeads*e.maxCtx, partialsFloats(c.NumAttentionHeads, c.HeadDim))),
		"logits":          4 * uint64(e.logitRows) * V,
		"logits staging":  4 * uint64(e.logitRows) * V,
		"tokens":          4 * C,
		"penalty ids":     4 * V,
		"top-k":           8*uint64(topkSlices(c.VocabSize)*topkMax) + 2*8*topkMax,
		"inv_freq, step…": 4*uint64(c.HeadDim/2) + 256,
	}
}

// Plan sizes the engine for the tensors of layout on a device with limits lim, allocating nothing, and
// fails as NewWithOptions would (ErrLimits, ErrOutOfMemory over o.MemoryBudget): the page checks a model
// against the adapter from its manifest before downloading it.
func Plan(lim wgpu.Limits, c *model.Config, layout Layout, o Options) (Memory, error) {
	e, err := planned(lim, c, layout, o)
	if err != nil {
		return Memory{}, err
	}
	return e.mem, nil
}

// planned is an engine with its settings and memory plan, before it has a device or any buffer.
func planned(lim wgpu.Limits, c *model.Config, layout Layout, o Options) (*Engine, error) {
	o = o.withDefaults()
	if o.MaxContext < 0 || o.PrefillChunk < 0 {
		return nil, fmt.Errorf("webgpu: context length %d and prefill chunk %d must be positive", o.MaxContext, o.PrefillChunk)
	}
	if err := checkAttention(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim); err != nil {
		return nil, fmt.Errorf("webgpu: %w", err)
	}
	e := &Engine{cfg: c, maxCtx: o.MaxContext, kvF16: o.KVF16, chunk: min(o.PrefillChunk, o.MaxContext)}
	// Every token's logits come back through logits [logitRows, vocab]: at most 16 MiB of them per pass.
	e.logitRows = max(1, min(e.chunk, (16<<20)/(4*c.VocabSize)))
	stacks, vectors := e.tensors()
	if err := checkLayout(layout, stacks, vectors); err != nil {
		return nil, err
	}
	var err error
	if e.mem, err = e.plan(lim, layout, o.MemoryBudget); err != nil {
		return nil, err
	}
	return e, nil
}

// plan sizes the weights, KV cache and scratch, and checks them against the device's limits and budget.
func (e *Engine) plan(lim wgpu.Limits, layout Layout, budget uint64) (Memory, error) {
	c := e.cfg
	var m Memory
	for _, h := range layout {
		m.Weights += uint64(4 * h.Rows * (h.RowWords() + h.ScaleWords()))
	}
	kv := e.kvBytes() // one layer's keys (or values)
	m.KVCache = 2 * uint64(c.NumHiddenLayers) * kv
	check := func(what string, bytes uint64) error {
		if limit := min(lim.MaxStorageBufferBindingSize, lim.MaxBufferSize); bytes > limit {
			return fmt.Errorf("%w: %s needs a %d-byte buffer; the device allows %d (maxStorageBufferBindingSize %d, maxBufferSize %d)",
				ErrLimits, what, bytes, limit, lim.MaxStorageBufferBindingSize, lim.MaxBufferSize)
		}
		return nil
	}
	if err := check(fmt.Sprintf("a KV cache of %d positions", e.maxCtx), kv); err != nil {
		return m, err
	}
	scratch := e.scratch()
	for _, name := range slices.Sorted(maps.Keys(scratch)) {
		bytes := scratch[name]
		m.Scratch += bytes
		if err := check(fmt.Sprintf("scratch %q (context %d, prefill chunk %d)", name, e.maxCtx, e.chunk), bytes); err != nil {
			return m, err
		}
	}
	if budget != 0 && m.Total() > budget {
		return m, fmt.Errorf("%w: the engine needs %v, the budget is %d bytes", ErrOutOfMemory, m, budget)
	}
	return m, nil
}

// kvBytes is the size of one layer's key (or value) cache.
func (e *Engine) kvBytes() uint64 {
	if e.kvF16 {
		return uint64(2 * e.maxCtx * e.cfg.KVDim())
	}
	return uint64(4 * e.maxCtx * e.cfg.KVDim())
}

// MaxContext is the number of positions the KV cache holds.
func (e *Engine) MaxContext() int { return e.maxCtx }

// Forward runs tokens at positions pos, pos+1, … (overwriting the cache from pos on) and returns the
// logits of every token when all is set, else of the last one only. One token is one pass; more run in
// passes of up to the prefill chunk (or fewer, when all logits come back), one submit each.
func (e *Engine) Forward(tokens []int, pos int, all bool) ([][]float32, error) {
	if err := e.dev.lost(); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	out, err := e.forward(tokens, pos, all, nil)
	return out, e.fail(err)
}

// fail is err, or the device's loss when that is what made the call fail: a lost device rejects the
// calls in flight with errors that do not say why.
func (e *Engine) fail(err error) error {
	if err == nil || errors.Is(err, ErrDeviceLost) {
		return err
	}
	e.dev.settle()
	if lost := e.dev.lost(); lost != nil {
		return fmt.Errorf("%w (%v)", lost, err)
	}
	return err
}

// topkRequest is ForwardTopK's work after the forward pass.
type topkRequest struct {
	k       int
	m       int // distinct ids to penalise
	penalty float32
}

// ForwardTopK runs tokens like Forward, then, on the GPU, applies Hugging Face's repetition penalty to the
// last token's logits for every distinct id in context (a positive logit is divided by penalty, another
// multiplied; penalty 1, or ≤ 0 as model.Sampler reads it, applies none), and returns the k largest of them
// (1 ≤ k ≤ 64), largest first, equal logits in id order: only those k (id, logit) pairs are read back.
// k = 1 is greedy argmax.
func (e *Engine) ForwardTopK(tokens []int, pos int, k int, penalty float32, context []int) (ids []int, logits []float32, err error) {
	if err := e.dev.lost(); err != nil {
		return nil, nil, fmt.Errorf("forward: %w", err)
	}
	ids, logits, err = e.forwardTopK(tokens, pos, k, penalty, context)
	return ids, logits, e.fail(err)
}

func (e *Engine) forwardTopK(tokens []int, pos int, k int, penalty float32, context []int) (ids []int, logits []float32, err error) {
	if k < 1 || k > min(topkMax, e.cfg.VocabSize) {
		return nil, nil, fmt.Errorf("forward: top-k of %d logits: k must be 1 … %d", k, min(topkMax, e.cfg.VocabSize))
	}
	req := &topkRequest{k: k, penalty: penalty}
	if penalty > 0 && penalty != 1 {
		if req.m, err = e.penalized.upload(e.dev, e.sampling.ids, context, e.cfg.VocabSize); err != nil {
			return nil, nil, fmt.Errorf("forward: penalty ids: %w", err)
		}
	}
	if err := e.sampling.set(e.dev, k, req.m, penalty); err != nil {
		return nil, nil, fmt.Errorf("forward: %w", err)
	}
	if _, err := e.forward(tokens, pos, false, req); err != nil {
		return nil, nil, err
	}
	raw, err := e.dev.mapRead(e.bestStaging, uint64(8*k))
	if err != nil {
		return nil, nil, fmt.Errorf("forward: top-k: %w", err)
	}
	e.count(len(tokens)).ReadbackBytes += uint64(8 * k)
	pairs := words(raw)
	for i := 0; i < k; i++ {
		ids = append(ids, int(pairs[2*i]))
		logits = append(logits, math.Float32frombits(pairs[2*i+1]))
	}
	return ids, logits, nil
}

// forward runs the passes of Forward and, with req, records the penalty and top-k after the last one.
func (e *Engine) forward(tokens []int, pos int, all bool, req *topkRequest) ([][]float32, error) {
	T, V := len(tokens), e.cfg.VocabSize
	if T == 0 {
		return nil, fmt.Errorf("forward: no tokens")
	}
	if pos < 0 || pos+T > e.maxCtx {
		return nil, fmt.Errorf("forward: positions %d..%d exceed the context length %d", pos, pos+T-1, e.maxCtx)
	}
	ids := make([]uint32, T)
	for i, t := range tokens {
		if t < 0 || t >= V {
			return nil, fmt.Errorf("forward: token id %d outside vocab of %d", t, V)
		}
		ids[i] = uint32(t)
	}
	// Dynamic NTK RoPE scales by the length of the call, the same for all its tokens and passes (as
	// model.CPU does).
	if err := write(e.dev, e.invFreq, 0, model.RopeInvFreq(e.cfg, pos+T)); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	cnt := e.count(T)
	cnt.Calls++
	cnt.Tokens += T
	chunk := e.chunk
	if all {
		chunk = e.logitRows
	}
	var out [][]float32
	for lo := 0; lo < T; lo += chunk {
		n := min(chunk, T-lo)
		last := lo+n == T
		if err := write(e.dev, e.tokens, 0, ids[lo:lo+n]); err != nil {
			return nil, fmt.Errorf("forward: %w", err)
		}
		if err := e.dev.setStep(e.step, pos+lo, n); err != nil {
			return nil, fmt.Errorf("forward: %w", err)
		}
		// the pass: embedding, layers, and the head where logits are wanted
		pass := e.embedding(tokens[lo : lo+n])
		if n == 1 {
			pass = append(pass, e.decode...)
		} else {
			pass = append(pass, e.prefill...)
		}
		rows := 0 // logits rows to read back
		switch {
		case all && n > 1:
			pass, rows = append(pass, e.headMat...), n
		case all || last:
			pass, rows = append(pass, e.headVec...), 1
		}
		if last && req != nil {
			if req.m > 0 {
				pass = append(pass, e.sampling.penalty)
			}
			pass = append(pass, e.sampling.topk...)
			rows = 0
		}
		var t tally
		err := e.dev.submit(func(enc *wgpu.CommandEncoder) error {
			start := time.Now()
			err := e.dev.encode(enc, n, &t, pass...)
			cnt.Encoding += time.Since(start)
			if err != nil {
				return err
			}
			if rows > 0 {
				return enc.TryCopyBufferToBuffer(e.logits, 0, e.staging, 0, uint64(4*rows*V))
			}
			if last && req != nil {
				return enc.TryCopyBufferToBuffer(e.sampling.result, 0, e.bestStaging, 0, uint64(8*req.k))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("forward: positions %d..%d: %w", pos+lo, pos+lo+n-1, err)
		}
		cnt.Submits++
		cnt.Dispatches += t.dispatches
		cnt.WeightBytes += t.weightBytes + uint64(n)*e.embed.rowBytes()
		if rows > 0 {
			raw, err := e.dev.mapRead(e.staging, uint64(4*rows*V))
			if err != nil {
				return nil, fmt.Errorf("forward: logits of positions %d..%d: %w", pos+lo, pos+lo+n-1, err)
			}
			cnt.ReadbackBytes += uint64(len(raw))
			f := floats(raw)
			for r := range rows {
				out = append(out, f[r*V:(r+1)*V:(r+1)*V])
			}
		}
	}
	return out, nil
}

// embedding returns the embedding lookups of a pass of tokens: one per row block of the table that holds
// one of them.
func (e *Engine) embedding(tokens []int) []dispatch {
	var ds []dispatch
	for i, b := range e.embed.blocks {
		for _, t := range tokens {
			if t >= b.row0 && t < b.row0+b.rows {
				ds = append(ds, e.embeds[i])
				break
			}
		}
	}
	return ds
}

// penalized keeps the ids buffer of the repetition penalty in step with the context ForwardTopK gets,
// which usually grows by a token per call: only the ids new to it are uploaded.
type penalized struct {
	context []int    // the context whose distinct ids are in the buffer
	seen    []uint32 // seen[id] == gen: id is in the buffer
	gen     uint32
	n       int // ids in the buffer
}

// reset empties the buffer.
func (p *penalized) reset() {
	p.context, p.n = p.context[:0], 0
	if p.gen++; p.gen == 0 { // wrapped around: forget every mark
		clear(p.seen)
		p.gen = 1
	}
}

// upload brings the buffer ids [vocab] up to date with context and returns how many ids it holds.
func (p *penalized) upload(d *Device, ids *wgpu.Buffer, context []int, vocab int) (int, error) {
	if len(p.seen) != vocab {
		p.seen = make([]uint32, vocab)
		p.reset()
	}
	if len(context) < len(p.context) || !slices.Equal(context[:len(p.context)], p.context) {
		p.reset()
	}
	var fresh []uint32
	for _, id := range context[len(p.context):] {
		if id >= 0 && id < vocab && p.seen[id] != p.gen {
			p.seen[id] = p.gen
			fresh = append(fresh, uint32(id))
		}
	}
	if err := write(d, ids, uint64(4*p.n), fresh); err != nil {
		p.reset()
		return 0, err
	}
	p.n += len(fresh)
	p.context = append(p.context, context[len(p.context):]...)
	return p.n, nil
}
