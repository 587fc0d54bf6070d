package webgpu

import (
	"fmt"
	"math"

	"github.com/oliverbestmann/webgpu/wgpu"

	"github.com/ilmweb/ilmweb/model"
)

// The kernels, one constructor each, named after the WGSL entry point and its CPU twin in package model. A
// constructor binds its buffers once and returns the dispatches to record into every pass; buffer shapes
// are in the WGSL. Dispatch sizes are performance choices only: every kernel loops over whatever its grid
// does not cover.

// Sizes the dispatch counts are planned for: the WGSL's constants and the defaults of its WG overrides.
const (
	wgSize       = 256 // embedding, penalize, copy_words
	matvecRows   = 4   // matvec.wgsl's ROWS
	tileRows     = 32  // matmul.wgsl's TM
	tileTokens   = 32  // matmul.wgsl's TN
	attentionMax = 128 // attention.wgsl needs head_dim ≤ its WG and HD
	prefillBlock = 8   // attention.wgsl's BQ
	topkMax      = 64  // the most logits ForwardTopK returns
	topkSlice    = 4096
)

// stepBuffer is the uniform Step {pos, n} that the kernels of a pass read: the position of its first token
// and its number of tokens. The engine writes it before each pass.
func (d *Device) stepBuffer() (*wgpu.Buffer, error) {
	return d.buffer("step", 16, wgpu.BufferUsageUniform|wgpu.BufferUsageCopyDst)
}

// setStep writes the first position and token count of the next submitted pass.
func (d *Device) setStep(step *wgpu.Buffer, pos, n int) error {
	return write(d, step, 0, []uint32{uint32(pos), uint32(n)})
}

// params makes a uniform buffer holding a kernel's Params struct, whose fields are all 4-byte u32 or f32.
func (d *Device) params(label string, fields ...any) (*wgpu.Buffer, error) {
	words := make([]uint32, len(fields))
	for i, f := range fields {
		switch v := f.(type) {
		case int:
			words[i] = uint32(v)
		case uint32:
			words[i] = v
		case float32:
			words[i] = math.Float32bits(v)
		default:
			panic(fmt.Sprintf("webgpu: params field %T", f))
		}
	}
	b, err := d.buffer(label, uint64(4*len(words)), wgpu.BufferUsageUniform|wgpu.BufferUsageCopyDst)
	if err != nil {
		return nil, err
	}
	if err := write(d, b, 0, words); err != nil {
		return nil, fmt.Errorf("params %s: %w", label, err)
	}
	return b, nil
}

// op binds a fresh Params buffer holding params at binding 0 and bufs[i] at binding i+1 to kernel entry of
// file.
func (d *Device) op(file, entry string, grid func(int) (uint32, uint32), params []any, bufs ...*wgpu.Buffer) (dispatch, error) {
	p, err := d.params(entry, params...)
	if err != nil {
		return dispatch{}, err
	}
	return d.opWith(file, entry, grid, append([]*wgpu.Buffer{p}, bufs...)...)
}

// opWith binds bufs[i] at binding i (nil: a binding the entry point does not use) to kernel entry of file.
func (d *Device) opWith(file, entry string, grid func(int) (uint32, uint32), bufs ...*wgpu.Buffer) (dispatch, error) {
	k, err := d.kernel(file, entry)
	if err != nil {
		return dispatch{}, err
	}
	bg, err := d.bind(k, bufs...)
	if err != nil {
		return dispatch{}, err
	}
	return dispatch{k: k, bg: bg, id: d.register(k, bg), grid: grid}, nil
}

// absentBuffer is bound in place of an optional input (bias, norm weight) that a kernel's flags leave unread.
func (d *Device) absentBuffer() (*wgpu.Buffer, error) {
	if d.absent == nil {
		var err error
		if d.absent, err = d.buffer("absent", 16, storage); err != nil {
			return nil, err
		}
	}
	return d.absent, nil
}

// matrix is a weight matrix on the GPU in a converted dtype, split into row blocks that each fit one
// storage binding.
type matrix struct {
	name                 string
	dtype                string
	rows, cols           int
	rowWords, scaleWords int // per row, in data and scales
	blocks               []block
}

type block struct {
	row0, rows   int
	data, scales *wgpu.Buffer // scales is nil for unscaled dtypes
	bytes        uint64       // of data and scales
}

// matrixBlockRows is how many rows of q go in one block of at most maxBinding bytes: an even number, so
// that the (gate, up) row pairs of a fused GLU matrix never straddle two blocks.
func matrixBlockRows(q *model.QuantMatrix, maxBinding uint64) (int, error) {
	per := min(q.Rows, int(maxBinding/uint64(4*q.RowWords())))
	if per < q.Rows {
		per &^= 1
	}
	if per == 0 {
		return 0, fmt.Errorf("%w: two rows of %d bytes exceed the storage binding limit of %d bytes", ErrLimits, 4*q.RowWords(), maxBinding)
	}
	return per, nil
}

// checkMatrix says whether the kernels read a matrix of h's dtype and shape (h's data is not looked at).
func checkMatrix(name string, h *model.QuantMatrix) error {
	if err := model.CheckShape(h.DType, h.Rows, h.Cols, h.Group); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case h.DType == model.DTypeF32 && h.Cols%4 == 0:
	case h.DType == model.DTypeQ4 && h.Group == 32:
	default: // the kernels read 16-byte pieces: a q4 group, or 4 f32 columns
		return fmt.Errorf("%s: %s [%d, %d] with group %d: the GPU engine reads q4 with groups of 32 and f32 with a multiple of 4 columns",
			name, h.DType, h.Rows, h.Cols, h.Group)
	}
	return nil
}

// newMatrix allocates a zeroed matrix of h's dtype and shape (h's data is not looked at) in row blocks of
// at most maxBinding bytes of data; writeRows fills it. On an error it returns the blocks allocated so far
// too, for the caller to release.
func (d *Device) newMatrix(name string, h *model.QuantMatrix, maxBinding uint64) (*matrix, error) {
	if err := checkMatrix(name, h); err != nil {
		return nil, err
	}
	per, err := matrixBlockRows(h, maxBinding)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m := &matrix{name: name, dtype: h.DType, rows: h.Rows, cols: h.Cols, rowWords: h.RowWords(), scaleWords: h.ScaleWords()}
	for r0 := 0; r0 < h.Rows; r0 += per {
		b := block{row0: r0, rows: min(per, h.Rows-r0)}
		b.bytes = uint64(4 * b.rows * (m.rowWords + m.scaleWords))
		if b.data, err = d.buffer(name, uint64(4*b.rows*m.rowWords), storage); err != nil {
			return m, err
		}
		if m.scaleWords > 0 {
			if b.scales, err = d.buffer(name+".scales", uint64(4*b.rows*m.scaleWords), storage); err != nil {
				b.data.Destroy()
				return m, err
			}
		}
		m.blocks = append(m.blocks, b)
	}
	return m, nil
}

// writeRows writes rows r0, r0+1, … of m: data holds their data words and scales their scale words (none
// for unscaled dtypes), whole rows, which may span several blocks.
func (d *Device) writeRows(m *matrix, r0 int, data, scales []uint32) error {
	n := len(data) / m.rowWords
	if len(data) != n*m.rowWords || len(scales) != n*m.scaleWords || r0 < 0 || r0+n > m.rows {
		return fmt.Errorf("%s: writing %d data and %d scale words at row %d of [%d, %d]", m.name, len(data), len(scales), r0, m.rows, m.cols)
	}
	for _, b := range m.blocks {
		lo, hi := max(r0, b.row0), min(r0+n, b.row0+b.rows)
		if lo >= hi {
			continue
		}
		if err := write(d, b.data, uint64(4*(lo-b.row0)*m.rowWords), data[(lo-r0)*m.rowWords:(hi-r0)*m.rowWords]); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if m.scaleWords > 0 {
			if err := write(d, b.scales, uint64(4*(lo-b.row0)*m.scaleWords), scales[(lo-r0)*m.scaleWords:(hi-r0)*m.scaleWords]); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
	}
	return nil
}

// matrix uploads q, in row blocks of at most maxBinding bytes of data. On an error it returns the blocks
// uploaded so far too, for the caller to release.
func (d *Device) matrix(name string, q *model.QuantMatrix, maxBinding uint64) (*matrix, error) {
	if err := q.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m, err := d.newMatrix(name, q, maxBinding)
	if err != nil {
		return m, err
	}
	return m, d.writeRows(m, 0, q.Data, q.Scales)
}

// fusion is what matvec and matmul do around the product W·x.
type fusion struct {
	norm *wgpu.Buffer // RMS-normalise x first with this weight [cols] (model.RMSNorm), or nil
	eps  float64
	mode int // one of the modes below
	// variant is the matvec or matmul variant computing it (variants.go); empty: the default.
	variant string
}

// The output modes of matvec.wgsl and matmul.wgsl.
const (
	store = iota // y = W·x
	add          // y += W·x, the residual connection (model.Add)
	glu          // rows are (gate, up) pairs: y = silu(gate)·up (model.SwiGLU)
)

// linear records y = W·x (+ bias), fused as f says, one dispatch per row block of m, for a kernel family:
// "matvec" (the last token of the pass; a one-token pass) or "matmul" (every token of the pass, in tiles).
// bias is a buffer of m.rows floats, or nil.
func (d *Device) linear(family string, m *matrix, step, x, y, bias *wgpu.Buffer, f fusion) ([]dispatch, error) {
	if f.mode == glu && m.rows%2 != 0 {
		return nil, fmt.Errorf("%s: %d rows cannot be (gate, up) pairs", m.name, m.rows)
	}
	absent, err := d.absentBuffer()
	if err != nil {
		return nil, err
	}
	flags, extra := 0, uint64(0) // flags, and bytes of bias and norm weight read alongside the matrix
	if bias != nil {
		flags |= 1
		extra += uint64(4 * m.rows)
	} else {
		bias = absent
	}
	norm := f.norm
	if norm != nil {
		flags |= 2
		extra += uint64(4 * m.cols)
	} else {
		norm = absent
	}
	yStride := m.rows
	if f.mode == glu {
		yStride /= 2
	}
	file, entry := family, family+"_"+m.dtype
	var ds []dispatch
	// step and x, or for q8 the quantized x and its scales (bindings 8, 9) and no step
	inputs := []*wgpu.Buffer{step, x, nil, nil}
	tileR, tileT := tileRows, tileTokens
	if family == "matmul" {
		v, err := matmulVariantNamed(f.variant)
		if err != nil {
			return nil, err
		}
		if m.dtype == model.DTypeQ4 {
			file, entry, tileR, tileT = v.file, entry+v.suffix, v.rows, v.tokens
		}
	}
	if family == "matvec" {
		v, err := matvecVariantNamed(f.variant)
		if err != nil {
			return nil, err
		}
		file = v.file
		if m.dtype == model.DTypeQ4 {
			entry += v.suffix
			if v.q8 {
				q, qx, err := d.quantizeQ8(file, m.cols, step, x, f)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", m.name, err)
				}
				ds = append(ds, q)
				inputs = []*wgpu.Buffer{nil, nil, qx[0], qx[1]}
				flags &^= 2 // normalised by quantize_q8
				norm = nil
			}
		} else {
			entry += v.f32
		}
	}
	for i, b := range m.blocks {
		var grid func(int) (uint32, uint32)
		tile := 0
		if family == "matvec" {
			grid = fixed(d.workgroups(b.rows, matvecRows))
		} else {
			rowTiles := d.workgroups(b.rows, tileR)
			grid = func(n int) (uint32, uint32) { return rowTiles, d.workgroups(n, tileT) }
			tile = tileT
		}
		bufs := []*wgpu.Buffer{inputs[0], inputs[1], y, b.data, b.scales, bias, norm}
		if inputs[2] != nil {
			bufs = append(bufs, inputs[2], inputs[3])
		}
		c, err := d.op(file, entry, grid, []any{b.rows, m.cols, b.row0, flags, f.mode, float32(f.eps), yStride}, bufs...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		c.weights, c.tile = b.bytes, tile
		if i == 0 {
			c.weights += extra
		}
		ds = append(ds, c)
	}
	return ds, nil
}

// embedding returns, per row block of the table m, the dispatch that writes x[t] = row tokens[t] of m for
// the tokens t of the pass that fall in the block.
func (d *Device) embedding(m *matrix, step, tokens, x *wgpu.Buffer) ([]dispatch, error) {
	var ds []dispatch
	for _, b := range m.blocks {
		grid := func(n int) (uint32, uint32) { return d.workgroups(n*m.cols, wgSize), 1 }
		c, err := d.op("embedding", "embedding_"+m.dtype, grid, []any{m.cols, b.row0, b.rows}, step, tokens, b.data, b.scales, x)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		ds = append(ds, c) // the engine counts the rows it reads: one per token, whichever block holds it
	}
	return ds, nil
}

// buffers are the GPU buffers of m's blocks: their data and, for q4, their scales.
func (m *matrix) buffers() []*wgpu.Buffer {
	var out []*wgpu.Buffer
	for _, b := range m.blocks {
		out = append(out, b.data)
		if b.scales != nil {
			out = append(out, b.scales)
		}
	}
	return out
}

// rowBytes is the size of one row of m, scales included.
func (m *matrix) rowBytes() uint64 { return m.blocks[0].bytes / uint64(m.blocks[0].rows) }

// rope rotates the queries and keys in the qkv rows [n, (heads + 2·kvHeads)·headDim] of the pass's tokens
// for positions pos … pos+n−1, and writes the keys and values to those positions of the caches k, v
// [maxCtx, kvHeads·headDim] (f32, or f16 pairs with kvF16).
func (d *Device) rope(step, invFreq, qkv, k, v *wgpu.Buffer, heads, kvHeads, headDim int, kvF16 bool) (dispatch, error) {
	grid := func(n int) (uint32, uint32) { return d.workgroups(n*(heads+kvHeads), 1), 1 }
	return d.op("rope", "rope", grid, []any{heads, kvHeads, headDim, (heads + 2*kvHeads) * headDim, flag(kvF16)},
		step, invFreq, qkv, k, v)
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

func checkAttention(heads, kvHeads, headDim int) error {
	if headDim > attentionMax || headDim%4 != 0 || kvHeads == 0 || heads%kvHeads != 0 {
		return fmt.Errorf("attention: head_dim %d (a multiple of 4, at most %d) with %d heads over %d kv heads is not supported",
			headDim, attentionMax, heads, kvHeads)
	}
	return nil
}

// attention: out [heads·headDim] for the query in row 0 of qkv (row length qStride), at position Step.pos,
// over keys and values 0 … pos of the caches k, v [maxCtx, kvHeads·headDim] (f32, or f16 pairs with kvF16);
// scores [heads·maxCtx] is scratch.
func (d *Device) attention(step, qkv, k, v, scores, out *wgpu.Buffer, heads, kvHeads, headDim, qStride, maxCtx int, kvF16 bool) (dispatch, error) {
	if err := checkAttention(heads, kvHeads, headDim); err != nil {
		return dispatch{}, err
	}
	scale := float32(1 / math.Sqrt(float64(headDim)))
	return d.op("attention", "attention", fixed(uint32(heads)), []any{heads, kvHeads, headDim, qStride, maxCtx, scale, flag(kvF16), 0},
		step, qkv, k, v, out, scores)
}

// attentionPrefill: out [n, heads·headDim] for the queries of the pass's n tokens in the qkv rows, token t
// at position Step.pos + t attending to keys 0 … pos+t of the caches.
func (d *Device) attentionPrefill(step, qkv, k, v, out *wgpu.Buffer, heads, kvHeads, headDim, qStride int, kvF16 bool) (dispatch, error) {
	if err := checkAttention(heads, kvHeads, headDim); err != nil {
		return dispatch{}, err
	}
	scale := float32(1 / math.Sqrt(float64(headDim)))
	grid := func(n int) (uint32, uint32) { return d.workgroups(n, prefillBlock), uint32(heads) }
	return d.op("attention", "attention_prefill", grid, []any{heads, kvHeads, headDim, qStride, 0, scale, flag(kvF16), 0},
		step, qkv, k, v, out)
}

// sampling holds the buffers of the kernels in topk.wgsl for logits [n].
type sampling struct {
	n       int
	params  *wgpu.Buffer // uniform Params, rewritten per call
	ids     *wgpu.Buffer // [n] distinct ids to penalise
	cands   *wgpu.Buffer // [slices·topkMax] (id, logit bits)
	best    *wgpu.Buffer // [topkMax] (id, logit bits)
	result  *wgpu.Buffer // where the answer lands: best, or cands when there is only one slice
	penalty dispatch     // penalize
	topk    []dispatch   // topk, and topk_merge unless there is only one slice
}

func topkSlices(n int) int { return (n + topkSlice - 1) / topkSlice }

// newSampling binds the penalty and top-k kernels to logits [n].
func (d *Device) newSampling(logits *wgpu.Buffer, n int) (*sampling, error) {
	s := &sampling{n: n}
	var err error
	if s.params, err = d.buffer("sampling params", 32, wgpu.BufferUsageUniform|wgpu.BufferUsageCopyDst); err != nil {
		return nil, err
	}
	if s.ids, err = d.buffer("penalty ids", uint64(4*n), storage); err != nil {
		return nil, err
	}
	if s.cands, err = d.buffer("top-k candidates", uint64(8*topkSlices(n)*topkMax), storage); err != nil {
		return nil, err
	}
	if s.best, err = d.buffer("top-k", 8*topkMax, storage); err != nil {
		return nil, err
	}
	// The penalty's grid covers the most ids there can be; the kernel stops at Params.m.
	if s.penalty, err = d.opWith("topk", "penalize", fixed(d.workgroups(n, wgSize)), s.params, logits, s.ids); err != nil {
		return nil, err
	}
	first, err := d.opWith("topk", "topk", fixed(d.workgroups(n, topkSlice)), s.params, logits, nil, s.cands)
	if err != nil {
		return nil, err
	}
	s.topk, s.result = []dispatch{first}, s.cands
	if topkSlices(n) > 1 {
		merge, err := d.opWith("topk", "topk_merge", fixed(1), s.params, nil, nil, s.cands, s.best)
		if err != nil {
			return nil, err
		}
		s.topk, s.result = append(s.topk, merge), s.best
	}
	return s, nil
}

// set writes the Params of the next penalty (m ids, penalty p) and top-k (k largest) dispatches.
func (s *sampling) set(d *Device, k, m int, p float32) error {
	return write(d, s.params, 0, []uint32{uint32(s.n), uint32(k), topkSlice, uint32(topkSlices(s.n) * k), uint32(m), math.Float32bits(p)})
}
