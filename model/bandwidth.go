package model

import (
	"sync/atomic"
	"time"
)

// ReadBandwidth measures, in GB/s, how fast all cores stream through 1 GiB of float32 with the dot-product
// loop the CPU matmul uses: the limit a memory-bound CPU decode step is compared against.
func ReadBandwidth() float64 {
	buf := make([]float32, 1<<28)
	for i := range buf {
		buf[i] = 1
	}
	var sink atomic.Int64 // keeps the sums from being optimised away
	best := 0.0
	for rep := 0; rep < 3; rep++ {
		start := time.Now()
		parallelFor(len(buf)/4096, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row := buf[r*4096 : (r+1)*4096]
				sink.Add(int64(dot(row, row)))
			}
		})
		best = max(best, float64(4*len(buf))/time.Since(start).Seconds()/1e9)
	}
	return best
}

// WeightBytesPerToken is how many bytes of weights one decoded token reads: every layer's matrices and
// norms, the final norm and lm_head (the embedding contributes one row, left out), in the form they are
// stored (quantized when loaded from a converted dir).
func (w *Weights) WeightBytesPerToken() int64 {
	mat := func(l Linear) int64 {
		if l.Q != nil {
			return 4 * int64(len(l.Q.Data)+len(l.Q.Scales))
		}
		return 4 * int64(len(l.W))
	}
	n := mat(w.LMHead) + 4*int64(len(w.Norm))
	for _, l := range w.Layers {
		n += mat(l.Q) + mat(l.K) + mat(l.V) + mat(l.O) + mat(l.Gate) + mat(l.Up) + mat(l.Down)
		n += 4 * int64(len(l.InputNorm)+len(l.PostNorm))
	}
	return n
}
