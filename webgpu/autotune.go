package webgpu

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oliverbestmann/webgpu/wgpu"

	"github.com/ilmweb/ilmweb/model"
)

// The autotune picks, at load, the fastest admissible variant (the exact ones: not q8) of each kernel family (variants.go) on the
// device itself, with the model's shapes: a decode token's matvecs (the q, k, v, gate/up and down
// projections of one layer) and its attention at half the context window, and a prefill chunk's matmuls
// of the same projections. The binding exposes no
// timestamp queries (its compute pass descriptor has no timestampWrites), so each candidate is timed as the
// wall time of a submit and a wait, the best of a few. Its choice is kept per adapter and shapes: on the
// device for later engines, and in the platform's storage (the user cache dir natively, the Cache API in
// the browser: autotune_native.go, autotune_js.go) so that a second load costs nothing.

// Tuning is what the autotune chose, and what it cost.
type Tuning struct {
	Kernels Kernels
	Source  string                   // "forced" (Options.Kernels), "device" (chosen earlier on this device), "cache" or "measured"
	Took    time.Duration            // the whole autotune, measuring included
	Times   map[string]time.Duration // per measured candidate ("matvec wg64"), the best of its runs
	Bytes   map[string]uint64        // per measured candidate, the weight bytes one run reads (0 for attention)
	Skipped []string                 // candidates left unmeasured once the budget was spent
	Clock   string                   // what timed them: "gpu timestamps", or "wall time of a submit"
}

func (t Tuning) String() string {
	return fmt.Sprintf("%v (%s, %.0f ms)", t.Kernels, t.Source, float64(t.Took.Microseconds())/1000)
}

// Ratios is each measured candidate's weight bytes per second as a ratio to gbps (a copy probe's GB/s on
// the same device), formatted "matvec wg64 0.61, …" in sorted order; attention, which reads no weights,
// is left out.
func (t Tuning) Ratios(gbps float64) string {
	var out []string
	for label, took := range t.Times {
		if b := t.Bytes[label]; b > 0 && took > 0 {
			out = append(out, fmt.Sprintf("%s %.3f", label, float64(b)/took.Seconds()/1e9/gbps))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

const (
	tuneRuns = 3                    // timed runs per candidate, after one warm-up; the best counts
	tuneRun  = 5 * time.Millisecond // the work a timed run aims at
	// tuneBudget bounds the measuring: candidates are tried default first, and once it is spent the rest
	// are skipped (and reported), so a slow device does not pay for an exhaustive search.
	tuneBudget = 2 * time.Second
	// tuneTokens bounds the prefill pass the matmuls are timed on: one tile of the tiled matmul, four of the
	// subgroup one. A whole 128-token chunk of one 8B layer took 10 s a run on lavapipe, past any budget.
	tuneTokens = 32
)

// tuneKey names the adapter and the shapes a choice holds for.
func (d *Device) tuneKey(c *model.Config, dtype string, o Options) string {
	return fmt.Sprintf("v2|%s|%s|%s|D%d F%d H%d/%d HD%d %s ctx%d chunk%d f16=%v", d.Vendor, d.Architecture, d.Driver,
		c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, dtype, o.MaxContext,
		o.PrefillChunk, o.KVF16)
}

// autotune resolves the variants of o.Kernels left empty.
func (d *Device) autotune(c *model.Config, dtype string, o Options) (Tuning, error) {
	start := time.Now()
	forced := o.Kernels
	if err := d.checkKernels(forced); err != nil {
		return Tuning{}, err
	}
	if forced.complete() {
		return Tuning{Kernels: forced, Source: "forced"}, nil
	}
	key := d.tuneKey(c, dtype, o)
	t := Tuning{Source: "device"}
	remeasure := o.TuneBudget != 0 // a budget of its own: measure now, whatever is stored
	k, ok := d.tuned[key]
	if !ok || remeasure {
		if k, ok = loadTuning(key); ok && !remeasure && d.checkKernels(k) == nil {
			t.Source = "cache"
		} else {
			var err error
			if t, err = d.measure(c, dtype, o); err != nil {
				return Tuning{}, fmt.Errorf("webgpu: autotune: %w", err)
			}
			k, t.Source = t.Kernels, "measured"
			saveTuning(key, k) // best effort: without storage the next load measures again
		}
		if d.tuned == nil {
			d.tuned = map[string]Kernels{}
		}
		d.tuned[key] = k
	}
	if forced.Matvec != "" {
		k.Matvec, t.Source = forced.Matvec, "forced"
	}
	if forced.Attention != "" {
		k.Attention, t.Source = forced.Attention, "forced"
	}
	if forced.Matmul != "" {
		k.Matmul, t.Source = forced.Matmul, "forced"
	}
	t.Kernels, t.Took = k, time.Since(start)
	return t, nil
}

// measure times every admissible variant of each family on scratch buffers of the model's shapes (their
// contents do not matter to the time) and returns the fastest. Each family has its share of the budget
// (o.TuneBudget, else tuneBudget).
func (d *Device) measure(c *model.Config, dtype string, o Options) (Tuning, error) {
	start := time.Now()
	budget := cmp.Or(o.TuneBudget, tuneBudget)
	deadline := func(family int) time.Time { return start.Add(budget * time.Duration(family+1) / 3) }
	s := &scratch{d: d}
	defer s.free()
	t := Tuning{Times: map[string]time.Duration{}, Bytes: map[string]uint64{}, Clock: "wall time of a submit"}
	best := &t.Kernels
	// try times one candidate of a family (unless its share of the budget is spent and one was measured)
	// and keeps it in *chosen when it is the fastest so far.
	var bestTime [3]time.Duration
	try := func(family int, chosen *string, name string, n int, ds func() ([]dispatch, error)) error {
		label := [...]string{"matvec", "attention", "matmul"}[family] + " " + name
		if *chosen != "" && time.Now().After(deadline(family)) {
			t.Skipped = append(t.Skipped, label)
			return nil
		}
		cs, err := ds()
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		took, onGPU, err := d.time(cs, n, deadline(family))
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		if onGPU {
			t.Clock = "gpu timestamps"
		}
		t.Times[label] = took
		for _, c := range cs {
			t.Bytes[label] += c.weightBytes(n)
		}
		if *chosen == "" || took < bestTime[family] {
			*chosen, bestTime[family] = name, took
		}
		return nil
	}

	D, F, Q, KV := c.HiddenSize, c.IntermediateSize, c.QDim(), c.KVDim()
	mats, err := s.layer(dtype, [][2]int{{Q + 2*KV, D}, {2 * F, D}, {D, F}}) // q, k, v; gate and up; down
	if err != nil {
		return Tuning{}, err
	}
	norm := s.buffer("autotune norm", 4*D)
	// a decoded token at half the context window
	step := s.step(max(0, o.MaxContext/2-1), 1)
	x := s.buffer("autotune x", 4*max(D, F))
	y := s.buffer("autotune y", 4*max(2*F, Q+2*KV))
	if s.err != nil {
		return Tuning{}, s.err
	}
	for _, v := range matvecVariants {
		if v.q8 || d.checkKernels(Kernels{Matvec: v.name}) != nil {
			continue
		}
		err := try(0, &best.Matvec, v.name, 1, func() ([]dispatch, error) {
			var ds []dispatch
			for i, m := range mats {
				f := fusion{variant: v.name, eps: 1e-5}
				if i < 2 {
					f.norm = norm
				}
				cs, err := d.linear("matvec", m, step, x, y, nil, f)
				ds = append(ds, cs...)
				if err != nil {
					return nil, err
				}
			}
			return ds, nil
		})
		if err != nil {
			return Tuning{}, err
		}
	}

	H, KVH, HD := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	kvWords := o.MaxContext * KV
	if o.KVF16 {
		kvWords /= 2
	}
	kc, vc := s.buffer("autotune k", 4*kvWords), s.buffer("autotune v", 4*kvWords)
	qkv := s.buffer("autotune qkv", 4*(Q+2*KV))
	scores := s.buffer("autotune scores", 4*max(H*o.MaxContext, partialsFloats(H, HD)))
	att := s.buffer("autotune att", 4*Q)
	if s.err != nil {
		return Tuning{}, s.err
	}
	for _, name := range AttentionVariants() {
		err := try(1, &best.Attention, name, 1, func() ([]dispatch, error) {
			if splits := attentionSplits(name); splits > 0 {
				return d.attentionSplit(step, qkv, kc, vc, scores, att, H, KVH, HD, Q+2*KV, splits, o.KVF16)
			}
			c, err := d.attention(step, qkv, kc, vc, scores, att, H, KVH, HD, Q+2*KV, o.MaxContext, o.KVF16)
			return []dispatch{c}, err
		})
		if err != nil {
			return Tuning{}, err
		}
	}
	s.freeBuffers(kc, vc, scores) // the largest: room for the prefill's activations

	// a prefill pass of a chunk, with the fusions the engine uses, cut to tuneTokens
	n := max(1, min(o.PrefillChunk, o.MaxContext, tuneTokens))
	pstep := s.step(0, n)
	px := s.buffer("autotune prefill x", 4*n*max(D, F))
	py := s.buffer("autotune prefill y", 4*n*max(F, Q+2*KV, D))
	if s.err != nil {
		return Tuning{}, s.err
	}
	fusions := []fusion{{norm: norm, eps: 1e-5}, {norm: norm, eps: 1e-5, mode: glu}, {mode: add}}
	for _, v := range matmulVariants {
		if d.checkKernels(Kernels{Matmul: v.name}) != nil {
			continue
		}
		err := try(2, &best.Matmul, v.name, n, func() ([]dispatch, error) {
			var ds []dispatch
			for i, m := range mats {
				f := fusions[i]
				f.variant = v.name
				cs, err := d.linear("matmul", m, pstep, px, py, nil, f)
				ds = append(ds, cs...)
				if err != nil {
					return nil, err
				}
			}
			return ds, nil
		})
		if err != nil {
			return Tuning{}, err
		}
	}
	return t, nil
}

// scratch makes the autotune's buffers and destroys them when it is done (the device would release them
// only at Close; their memory goes back now). Its first error sticks.
type scratch struct {
	d    *Device
	bufs []*wgpu.Buffer
	err  error
}

func (s *scratch) keep(b *wgpu.Buffer, err error) *wgpu.Buffer {
	if b != nil {
		s.bufs = append(s.bufs, b)
	}
	if s.err == nil {
		s.err = err
	}
	return b
}

func (s *scratch) buffer(name string, bytes int) *wgpu.Buffer {
	if s.err != nil {
		return nil
	}
	return s.keep(s.d.buffer(name, uint64(bytes), storage))
}

// step is a step buffer for a pass of n tokens at pos.
func (s *scratch) step(pos, n int) *wgpu.Buffer {
	if s.err != nil {
		return nil
	}
	b := s.keep(s.d.stepBuffer())
	if s.err == nil {
		s.err = s.d.setStep(b, pos, n)
	}
	return b
}

// layer makes one layer's matrices of the given [rows, cols] (zeroed: their values do not matter).
func (s *scratch) layer(dtype string, shapes [][2]int) ([]*matrix, error) {
	var mats []*matrix
	for _, sh := range shapes {
		h := &model.QuantMatrix{DType: dtype, Rows: sh[0], Cols: sh[1], Group: 32}
		m, err := s.d.newMatrix("autotune", h, s.d.Limits.MaxStorageBufferBindingSize)
		if m != nil {
			for _, b := range m.buffers() {
				s.keep(b, nil)
			}
		}
		if err != nil {
			return nil, err
		}
		mats = append(mats, m)
	}
	return mats, nil
}

// freeBuffers destroys bs now.
func (s *scratch) freeBuffers(bs ...*wgpu.Buffer) {
	for _, b := range bs {
		b.Destroy()
		s.bufs = slices.DeleteFunc(s.bufs, func(k *wgpu.Buffer) bool { return k == b })
	}
}

func (s *scratch) free() {
	for _, b := range s.bufs {
		b.Destroy()
	}
	s.bufs = nil
}

// time returns the time ds takes as a pass of n tokens, per repeat: on the GPU's clock where the device
// has timestamp queries (onGPU; only in the browser), else the wall time from submit to done. One untimed
// warm-up run sizes the timed runs to about tuneRun of work (ds repeated up to 64 times, so that the
// submit's own latency does not decide on a fast GPU), then up to tuneRuns of them, fewer once deadline
// has passed; the fastest counts (the warm-up's own time if it ended past the deadline).
func (d *Device) time(ds []dispatch, n int, deadline time.Time) (best time.Duration, onGPU bool, err error) {
	once := func(repeat int) (time.Duration, error) {
		var pass []dispatch
		for range repeat {
			pass = append(pass, ds...)
		}
		if took, ok, err := d.gpuTime(pass, n); ok || err != nil {
			onGPU = ok
			return took, err
		}
		start := time.Now()
		if err := d.run(n, pass...); err != nil {
			return 0, err
		}
		if err := d.flush(); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	warm, err := once(1)
	if err != nil {
		return 0, false, err
	}
	if time.Now().After(deadline) { // a slow device: the warm-up is all the budget allows
		return warm, onGPU, nil
	}
	repeat := int(min(64, max(1, tuneRun/max(warm, time.Microsecond))))
	best = time.Duration(1<<63 - 1)
	for i := 0; i < tuneRuns && (i == 0 || time.Now().Before(deadline)); i++ {
		took, err := once(repeat)
		if err != nil {
			return 0, false, err
		}
		best = min(best, took/time.Duration(repeat))
	}
	return best, onGPU, nil
}
