package webgpu

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/oliverbestmann/webgpu/wgpu"
	"github.com/x448/float16"

	"github.com/ilmweb/ilmweb/model"
)

// selfTest runs the q4 product kernels on a small random matrix against their CPU twin, QuantMatrix.DotRow:
// the decode matvec for one token and the prefill matmul for several. Broken drivers exist (miscompiled
// shaders, wrong f16 unpacking), and on them the model would only print gibberish; this turns that into
// an error that says what went wrong.
func (d *Device) selfTest() error {
	const rows, cols, tokens = 37, 320, 5
	rng := rand.New(rand.NewPCG(4, 2))
	q := &model.QuantMatrix{DType: model.DTypeQ4, Rows: rows, Cols: cols, Group: 32}
	q.Data = make([]uint32, rows*q.RowWords())
	q.Scales = make([]uint32, rows*q.ScaleWords())
	for i := range q.Data {
		q.Data[i] = rng.Uint32()
	}
	for i := range q.Scales {
		lo, hi := float16.Fromfloat32(0.1*rng.Float32()-0.05), float16.Fromfloat32(0.1*rng.Float32()-0.05)
		q.Scales[i] = uint32(lo.Bits()) | uint32(hi.Bits())<<16
	}
	x := make([]float32, tokens*cols)
	for i := range x {
		x[i] = 2*rng.Float32() - 1
	}
	want := make([]float32, tokens*rows)
	for t := range tokens {
		for r := range rows {
			want[t*rows+r] = q.DotRow(r, x[t*cols:(t+1)*cols])
		}
	}

	var bufs []*wgpu.Buffer
	defer func() {
		for _, b := range bufs {
			b.Destroy()
		}
	}()
	keep := func(b *wgpu.Buffer, err error) (*wgpu.Buffer, error) {
		if b != nil {
			bufs = append(bufs, b)
		}
		return b, err
	}
	m, err := d.matrix("self-test", q, d.Limits.MaxStorageBufferBindingSize)
	if m != nil {
		for _, b := range m.blocks {
			bufs = append(bufs, b.data, b.scales)
		}
	}
	if err != nil {
		return fmt.Errorf("webgpu: self-test: %w", err)
	}
	for _, c := range []struct {
		family string
		n      int // tokens in the pass
		want   []float32
	}{
		{"matvec", 1, want[:rows]}, // one token: x has one row
		{"matmul", tokens, want},
	} {
		step, err := keep(d.stepBuffer())
		if err == nil {
			err = d.setStep(step, 0, c.n)
		}
		xb, err2 := keep(upload(d, "self-test x", x[:c.n*cols]))
		y, err3 := keep(d.buffer("self-test y", uint64(4*len(c.want)), storage))
		staging, err4 := keep(d.readback("self-test staging", uint64(4*len(c.want))))
		if err := firstError(err, err2, err3, err4); err != nil {
			return fmt.Errorf("webgpu: self-test: %w", err)
		}
		ds, err := d.linear(c.family, m, step, xb, y, nil, fusion{})
		if err == nil {
			err = d.run(c.n, ds...)
		}
		var raw []byte
		if err == nil {
			raw, err = d.read(y, staging, 0, uint64(4*len(c.want)))
		}
		if err != nil {
			return fmt.Errorf("webgpu: self-test: %s: %w", c.family, err)
		}
		if err := compareTwin(d.Adapter, "q4 "+c.family, floats(raw), c.want); err != nil {
			return err
		}
	}
	return nil
}

// compareTwin checks got against the CPU twin's want with DESIGN.md's tolerance, |Δ| ≤ 1e-4 + 1e-3·|want|.
func compareTwin(adapter, what string, got, want []float32) error {
	for i := range want {
		diff := math.Abs(float64(got[i]) - float64(want[i]))
		if !(diff <= 1e-4+1e-3*math.Abs(float64(want[i]))) {
			return fmt.Errorf("webgpu: the GPU driver computed wrong results: %s on %s: value %d is %g, the CPU computes %g; "+
				"this adapter cannot run the model (try another browser, driver or GPU)", what, adapter, i, got[i], want[i])
		}
	}
	return nil
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
