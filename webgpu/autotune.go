package webgpu

import (
	"fmt"
	"time"

	"github.com/oliverbestmann/webgpu/wgpu"

	"github.com/ilmweb/ilmweb/model"
)

// The autotune picks, at load, the fastest admissible variant (the exact ones: not q8) of each kernel family (variants.go) on the
// device itself, with the model's shapes: a decode token's matvecs (the q, k, v, gate/up and down
// projections of one layer) and its attention at half the context window. The binding exposes no
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
	Skipped []string                 // candidates left unmeasured once tuneBudget was spent
}

func (t Tuning) String() string {
	return fmt.Sprintf("%v (%s, %.0f ms)", t.Kernels, t.Source, float64(t.Took.Microseconds())/1000)
}

const (
	tuneRuns = 3                    // timed runs per candidate, after one warm-up; the best counts
	tuneRun  = 5 * time.Millisecond // the work a timed run aims at
	// tuneBudget bounds the measuring: candidates are tried default first, and once it is spent the rest
	// are skipped (and reported), so a slow device does not pay for an exhaustive search.
	tuneBudget = 2 * time.Second
)

// tuneKey names the adapter and the shapes a choice holds for.
func (d *Device) tuneKey(c *model.Config, dtype string, maxCtx int, kvF16 bool) string {
	return fmt.Sprintf("v1|%s|%s|%s|D%d F%d H%d/%d HD%d %s ctx%d f16=%v", d.Vendor, d.Architecture, d.Driver,
		c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, dtype, maxCtx, kvF16)
}

// autotune resolves the variants of o.Kernels left empty.
func (d *Device) autotune(c *model.Config, dtype string, o Options) (Tuning, error) {
	start := time.Now()
	forced := o.Kernels
	if err := d.checkKernels(forced); err != nil {
		return Tuning{}, err
	}
	if forced.Matvec != "" && forced.Attention != "" {
		return Tuning{Kernels: forced, Source: "forced"}, nil
	}
	key := d.tuneKey(c, dtype, o.MaxContext, o.KVF16)
	t := Tuning{Source: "device"}
	k, ok := d.tuned[key]
	if !ok {
		if k, ok = loadTuning(key); ok && d.checkKernels(k) == nil {
			t.Source = "cache"
		} else {
			var err error
			if k, t.Times, t.Skipped, err = d.measure(c, dtype, o); err != nil {
				return Tuning{}, fmt.Errorf("webgpu: autotune: %w", err)
			}
			t.Source = "measured"
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
	t.Kernels, t.Took = k, time.Since(start)
	return t, nil
}

// measure times every admissible variant of each family on scratch buffers of the model's shapes (their
// contents do not matter to the time) and returns the fastest.
func (d *Device) measure(c *model.Config, dtype string, o Options) (Kernels, map[string]time.Duration, []string, error) {
	start := time.Now()
	var skipped []string
	D, F, Q, KV := c.HiddenSize, c.IntermediateSize, c.QDim(), c.KVDim()
	var bufs []*wgpu.Buffer
	defer func() {
		for _, b := range bufs {
			b.Destroy() // the device releases them at Close; their memory goes back now
		}
	}()
	keep := func(b *wgpu.Buffer, err error) (*wgpu.Buffer, error) {
		if b != nil {
			bufs = append(bufs, b)
		}
		return b, err
	}
	step, err := keep(d.stepBuffer())
	if err != nil {
		return Kernels{}, nil, nil, err
	}
	pos := max(0, o.MaxContext/2-1)
	if err := d.setStep(step, pos, 1); err != nil {
		return Kernels{}, nil, nil, err
	}
	// one layer's matrices: q, k, v; gate and up; down
	var mats []*matrix
	for _, s := range [][2]int{{Q + 2*KV, D}, {2 * F, D}, {D, F}} {
		h := &model.QuantMatrix{DType: dtype, Rows: s[0], Cols: s[1], Group: 32}
		m, err := d.newMatrix("autotune", h, d.Limits.MaxStorageBufferBindingSize)
		if m != nil {
			for _, b := range m.blocks {
				bufs = append(bufs, b.data)
				if b.scales != nil {
					bufs = append(bufs, b.scales)
				}
			}
		}
		if err != nil {
			return Kernels{}, nil, nil, err
		}
		mats = append(mats, m)
	}
	x, err1 := keep(d.buffer("autotune x", uint64(4*max(D, F)), storage))
	y, err2 := keep(d.buffer("autotune y", uint64(4*max(2*F, Q+2*KV)), storage))
	norm, err3 := keep(d.buffer("autotune norm", uint64(4*D), storage))
	if err := firstError(err1, err2, err3); err != nil {
		return Kernels{}, nil, nil, err
	}
	times := map[string]time.Duration{}
	var best Kernels
	bestTime := time.Duration(1<<63 - 1)
	for _, v := range matvecVariants {
		if v.q8 {
			continue
		}
		if best.Matvec != "" && time.Since(start) > tuneBudget/2 { // half for each family, compiling included
			skipped = append(skipped, "matvec "+v.name)
			continue
		}
		if d.checkKernels(Kernels{Matvec: v.name}) != nil {
			continue
		}
		var ds []dispatch
		for i, m := range mats {
			f := fusion{variant: v.name, eps: 1e-5}
			if i < 2 {
				f.norm = norm
			}
			cs, err := d.linear("matvec", m, step, x, y, nil, f)
			if err != nil {
				return Kernels{}, nil, nil, err
			}
			ds = append(ds, cs...)
		}
		took, err := d.time(ds, start.Add(tuneBudget/2))
		if err != nil {
			return Kernels{}, nil, nil, fmt.Errorf("matvec %s: %w", v.name, err)
		}
		times["matvec "+v.name] = took
		if took < bestTime {
			best.Matvec, bestTime = v.name, took
		}
	}

	H, KVH, HD := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	kvWords := o.MaxContext * KV
	if o.KVF16 {
		kvWords /= 2
	}
	kc, err1 := keep(d.buffer("autotune k", uint64(4*kvWords), storage))
	vc, err2 := keep(d.buffer("autotune v", uint64(4*kvWords), storage))
	qkv, err3 := keep(d.buffer("autotune qkv", uint64(4*(Q+2*KV)), storage))
	scores, err4 := keep(d.buffer("autotune scores", uint64(4*max(H*o.MaxContext, partialsFloats(H, HD))), storage))
	att, err5 := keep(d.buffer("autotune att", uint64(4*Q), storage))
	if err := firstError(err1, err2, err3, err4, err5); err != nil {
		return Kernels{}, nil, nil, err
	}
	bestTime = time.Duration(1<<63 - 1)
	for _, name := range AttentionVariants() {
		if best.Attention != "" && time.Since(start) > tuneBudget {
			skipped = append(skipped, "attention "+name)
			continue
		}
		var ds []dispatch
		if splits := attentionSplits(name); splits > 0 {
			ds, err = d.attentionSplit(step, qkv, kc, vc, scores, att, H, KVH, HD, Q+2*KV, splits, o.KVF16)
		} else {
			var c dispatch
			c, err = d.attention(step, qkv, kc, vc, scores, att, H, KVH, HD, Q+2*KV, o.MaxContext, o.KVF16)
			ds = []dispatch{c}
		}
		if err != nil {
			return Kernels{}, nil, nil, err
		}
		took, err := d.time(ds, start.Add(tuneBudget))
		if err != nil {
			return Kernels{}, nil, nil, fmt.Errorf("attention %s: %w", name, err)
		}
		times["attention "+name] = took
		if took < bestTime {
			best.Attention, bestTime = name, took
		}
	}
	return best, times, skipped, nil
}

// time returns the wall time from submit to done of ds, per repeat: one untimed warm-up run sizes the
// timed runs to about tuneRun of work (ds repeated up to 64 times, so that the submit's own latency does
// not decide on a fast GPU), then up to tuneRuns of them, fewer once deadline has passed; the fastest counts.
func (d *Device) time(ds []dispatch, deadline time.Time) (time.Duration, error) {
	once := func(repeat int) (time.Duration, error) {
		var pass []dispatch
		for range repeat {
			pass = append(pass, ds...)
		}
		start := time.Now()
		if err := d.run(1, pass...); err != nil {
			return 0, err
		}
		if err := d.flush(); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	warm, err := once(1)
	if err != nil {
		return 0, err
	}
	repeat := int(min(64, max(1, tuneRun/max(warm, time.Microsecond))))
	best := time.Duration(1<<63 - 1)
	for i := 0; i < tuneRuns && (i == 0 || time.Now().Before(deadline)); i++ {
		took, err := once(repeat)
		if err != nil {
			return 0, err
		}
		best = min(best, took/time.Duration(repeat))
	}
	return best, nil
}
