package webgpu

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"reflect"
	"unsafe"

	"github.com/oliverbestmann/webgpu/wgpu"

	"github.com/ilmweb/ilmweb/model"
)

// Layout lists the tensors an engine is built from, by Hugging Face name ("model.layers.0.mlp.up_proj.weight"),
// each as the header of the model.QuantMatrix it will arrive as: DType, Rows, Cols and Group, without data.
// A vector (a norm weight, a bias) is one f32 row.
type Layout map[string]model.QuantMatrix

// ManifestLayout is the layout of a converted model: its tensors as the manifest lists them.
func ManifestLayout(man *model.Manifest) Layout {
	l := Layout{}
	for _, t := range man.Tensors {
		l[t.Name] = model.QuantMatrix{DType: t.DType, Rows: t.Rows(), Cols: t.Cols(), Group: man.Quant.GroupSize}
	}
	return l
}

// Loader builds an Engine from tensors that arrive one at a time, in any order, so that a model never has
// to be whole in CPU memory (the browser's wasm memory ends at 4 GB; InternLM3-8B in q4 is 5 GB).
// NewLoader plans and allocates every buffer from the config and the layout, and records the passes; Put
// writes a tensor into its place on the GPU, after which the caller may drop it; Finish checks that every
// tensor came and returns the engine. Put keeps no reference to a tensor, except the first of gate and up
// until the second comes (their rows are interleaved).
type Loader struct {
	e         *Engine
	targets   map[string]*target
	unflushed uint64 // bytes written since the queue was last waited for
}

// flushBytes is how many bytes Put writes before waiting for the queue, so that the staging copies of the
// writes do not pile up in memory while a model is uploaded.
const flushBytes = 128 << 20

// target is where a tensor of the layout goes.
type target struct {
	h    model.QuantMatrix // as announced
	m    *matrix           // a weight: rows [row0, row0+h.Rows) of m, unless pair says otherwise
	vec  *wgpu.Buffer      // a vector (norm weight, bias): floats [row0, row0+h.Cols) of vec
	row0 int
	pair *pairing // a part of an interleaved stack, number index
	// the weight or bias of the part
	index int
	bias  bool
	done  bool
}

// pairing gathers the tensors of an interleaved stack (gate and up) until all have arrived, and then
// writes them row by row.
type pairing struct {
	m       *matrix
	bias    *wgpu.Buffer
	rows    int                  // of each part
	weights []*model.QuantMatrix // by part, until all have come
	biases  [][]uint32           // by part (f32 bits), until all have come; nil without biases
}

// NewLoader plans the engine's GPU memory for a model of config c whose tensors layout lists, allocates
// it, and records the passes, failing as NewWithOptions does (ErrLimits, ErrOutOfMemory) before any
// tensor is read: a model the device cannot hold is refused before it is downloaded.
func NewLoader(d *Device, c *model.Config, layout Layout, o Options) (*Loader, error) {
	e, targets, err := newEngine(d, c, layout, o)
	if err != nil {
		return nil, err
	}
	return &Loader{e: e, targets: targets}, nil
}

// Memory is the planned GPU memory of the engine being loaded.
func (l *Loader) Memory() Memory { return l.e.mem }

// Put writes the named tensor of the layout to the GPU. q must be as the layout announced it.
func (l *Loader) Put(name string, q *model.QuantMatrix) error {
	if l.e == nil {
		return errors.New("webgpu: Put after the loader finished or closed")
	}
	t := l.targets[name]
	switch {
	case t == nil:
		return fmt.Errorf("webgpu: tensor %q is not part of the model", name)
	case t.done:
		return fmt.Errorf("webgpu: tensor %q arrived twice", name)
	case q.DType != t.h.DType || q.Rows != t.h.Rows || q.Cols != t.h.Cols || (model.Quantized(q.DType) && q.Group != t.h.Group):
		return fmt.Errorf("webgpu: tensor %q is %s [%d, %d] (group %d); the layout said %s [%d, %d] (group %d)",
			name, q.DType, q.Rows, q.Cols, q.Group, t.h.DType, t.h.Rows, t.h.Cols, t.h.Group)
	}
	if err := q.Check(); err != nil {
		return fmt.Errorf("webgpu: tensor %q: %w", name, err)
	}
	d := l.e.dev
	var err error
	switch {
	case t.pair != nil:
		err = t.pair.put(d, t.index, t.bias, q)
	case t.vec != nil:
		err = write(d, t.vec, uint64(4*t.row0), q.Data)
	default:
		err = d.writeRows(t.m, t.row0, q.Data, q.Scales)
	}
	if err != nil {
		return fmt.Errorf("webgpu: tensor %q: %w", name, err)
	}
	t.done = true
	if l.unflushed += uint64(4 * (len(q.Data) + len(q.Scales))); l.unflushed >= flushBytes {
		l.unflushed = 0
		if err := cmp.Or(d.flush(), d.lost()); err != nil {
			return fmt.Errorf("webgpu: uploading the weights: %w", err)
		}
	}
	return nil
}

// put takes part i's weight (or bias) and, once every part's has come, writes them interleaved.
func (p *pairing) put(d *Device, i int, bias bool, q *model.QuantMatrix) error {
	if bias {
		p.biases[i] = q.Data
		for _, b := range p.biases {
			if b == nil {
				return nil
			}
		}
		words := make([]uint32, 0, len(p.biases)*p.rows)
		for r := range p.rows {
			for _, b := range p.biases {
				words = append(words, b[r])
			}
		}
		p.biases = nil
		return write(d, p.bias, 0, words)
	}
	p.weights[i] = q
	for _, w := range p.weights {
		if w == nil {
			return nil
		}
	}
	qs, n, rw, sw := p.weights, len(p.weights), p.m.rowWords, p.m.scaleWords
	p.weights = nil // the tensors are the caller's again
	// Rows of each part per write: about 1 MiB.
	per := max(1, (1<<20)/(4*n*(rw+sw)))
	data, scales := make([]uint32, 0, per*n*rw), make([]uint32, 0, per*n*sw)
	for r0 := 0; r0 < p.rows; r0 += per {
		data, scales = data[:0], scales[:0]
		for r := r0; r < min(p.rows, r0+per); r++ {
			for _, q := range qs {
				data = append(data, q.Data[r*rw:(r+1)*rw]...)
				scales = append(scales, q.Scales[r*sw:(r+1)*sw]...)
			}
		}
		if err := d.writeRows(p.m, n*r0, data, scales); err != nil {
			return err
		}
	}
	return nil
}

// Finish checks that every tensor of the layout has arrived, waits for the uploads, and returns the
// engine. The loader is spent afterwards, whatever the outcome.
func (l *Loader) Finish() (*Engine, error) {
	if l.e == nil {
		return nil, errors.New("webgpu: Finish after the loader finished or closed")
	}
	if m := missing(l.targets); len(m) > 0 {
		l.Close()
		return nil, fmt.Errorf("webgpu: %d tensors never arrived: %s", len(m), listSome(m, 3))
	}
	err := l.e.dev.flush()
	if err == nil {
		err = l.e.dev.lost() // writes to a lost device do nothing and fail nowhere
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("webgpu: uploading the weights: %w", err)
	}
	e := l.e
	l.e, l.targets = nil, nil
	return e, nil
}

// Close releases the GPU memory of an engine that was not finished. It does nothing after Finish.
func (l *Loader) Close() {
	if l.e != nil {
		l.e.Close()
		l.e, l.targets = nil, nil
	}
}

// LoadConverted streams a converted model onto the GPU: the engine is planned and allocated from the
// manifest first, then model.LoadConvertedWith reads the shards in order and hands each tensor to the
// engine as soon as it is complete, keeping none (see model.LoadOptions.Sink), so the CPU holds at most a
// shard and the tensors in flight, never the whole model. The model comes back with its tokenizer, config
// and vectors, and its matrices' shapes but not their weights (Linear.Q is nil): the engine holds those.
// progress is told the shard bytes uploaded so far.
func LoadConverted(d *Device, man *model.Manifest, files map[string][]byte, fetch func(shard int) ([]byte, error),
	progress func(done, total int64), o Options) (*model.Model, *Engine, error) {
	l, err := NewLoader(d, man.ModelConfig, ManifestLayout(man), o)
	if err != nil {
		return nil, nil, err
	}
	m, err := model.LoadConvertedWith(man, files, fetch, model.LoadOptions{
		Progress: progress,
		Sink:     func(name string, q *model.QuantMatrix) (bool, error) { return false, l.Put(name, q) },
	})
	if err == nil && !reflect.DeepEqual(m.Config, man.ModelConfig) {
		err = errors.New("config.json differs from the manifest's config")
	}
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	e, err := l.Finish()
	if err != nil {
		return nil, nil, err
	}
	return m, e, nil
}

// weightsTensor is a tensor of a whole model.Weights: a matrix (its weight or bias) or a norm vector.
type weightsTensor struct {
	name string
	lin  *model.Linear // a weight
	vec  []float32     // a bias or norm weight
}

// weightsTensors lists the tensors w has; a matrix without weights (or a vector without values) is left
// out, for checkLayout to report it missing.
func weightsTensors(w *model.Weights) []weightsTensor {
	var ts []weightsTensor
	lin := func(name string, l *model.Linear) {
		if l.Q != nil || l.W != nil {
			ts = append(ts, weightsTensor{name: name + ".weight", lin: l})
		}
		if l.Bias != nil {
			ts = append(ts, weightsTensor{name: name + ".bias", vec: l.Bias})
		}
	}
	vec := func(name string, v []float32) {
		if v != nil {
			ts = append(ts, weightsTensor{name: name, vec: v})
		}
	}
	lin("model.embed_tokens", &w.Embed)
	for i := range w.Layers {
		l, p := &w.Layers[i], fmt.Sprintf("model.layers.%d.", i)
		vec(p+"input_layernorm.weight", l.InputNorm)
		lin(p+"self_attn.q_proj", &l.Q)
		lin(p+"self_attn.k_proj", &l.K)
		lin(p+"self_attn.v_proj", &l.V)
		lin(p+"self_attn.o_proj", &l.O)
		vec(p+"post_attention_layernorm.weight", l.PostNorm)
		lin(p+"mlp.gate_proj", &l.Gate)
		lin(p+"mlp.up_proj", &l.Up)
		lin(p+"mlp.down_proj", &l.Down)
	}
	vec("model.norm.weight", w.Norm)
	lin("lm_head", &w.LMHead)
	return ts
}

// header is the layout entry of t.
func (t weightsTensor) header() model.QuantMatrix {
	switch {
	case t.lin == nil:
		return model.QuantMatrix{DType: model.DTypeF32, Rows: 1, Cols: len(t.vec)}
	case t.lin.Q != nil:
		q := *t.lin.Q
		q.Data, q.Scales = nil, nil
		return q
	}
	return model.QuantMatrix{DType: model.DTypeF32, Rows: t.lin.Out, Cols: t.lin.In}
}

// matrix is t as the matrix Put takes: its converted form, or its f32 weights.
func (t weightsTensor) matrix() *model.QuantMatrix {
	switch {
	case t.lin == nil:
		return &model.QuantMatrix{DType: model.DTypeF32, Rows: 1, Cols: len(t.vec),
			Data: unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(t.vec))), len(t.vec))}
	case t.lin.Q != nil:
		return t.lin.Q
	}
	return f32Matrix(*t.lin)
}

// f32Matrix is l's weights as a matrix of dtype f32.
func f32Matrix(l model.Linear) *model.QuantMatrix {
	q := &model.QuantMatrix{DType: model.DTypeF32, Rows: l.Out, Cols: l.In, Data: make([]uint32, len(l.W))}
	for i, v := range l.W {
		q.Data[i] = math.Float32bits(v)
	}
	return q
}
