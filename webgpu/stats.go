package webgpu

import "time"

// Stats counts the work the engine recorded and submitted since New, by phase: Forward and ForwardTopK
// calls of one token (decoding) and of several (prefill).
type Stats struct {
	Decode, Prefill Counts
}

// Counts are totals over the calls of one phase.
type Counts struct {
	Calls, Tokens       int
	Dispatches, Submits int
	WeightBytes         uint64 // bytes of weights the dispatches read: a matrix once per dispatch, or once per tile of tokens
	ReadbackBytes       uint64 // bytes copied back to the CPU (logits, or top-k pairs)
	// Encoding is the time spent recording the passes' dispatches (in the browser: Go → syscall/js →
	// WebGPU calls), the CPU cost per dispatch that the GPU cannot hide.
	Encoding time.Duration
}

// EncodingPerDispatch is the average time spent recording one dispatch.
func (c Counts) EncodingPerDispatch() time.Duration {
	if c.Dispatches == 0 {
		return 0
	}
	return c.Encoding / time.Duration(c.Dispatches)
}

// DispatchesPerToken is the average number of compute dispatches per token.
func (c Counts) DispatchesPerToken() float64 { return perToken(float64(c.Dispatches), c.Tokens) }

// SubmitsPerToken is the average number of queue submits per token.
func (c Counts) SubmitsPerToken() float64 { return perToken(float64(c.Submits), c.Tokens) }

// WeightBytesPerToken is the average number of bytes of weights read per token.
func (c Counts) WeightBytesPerToken() float64 { return perToken(float64(c.WeightBytes), c.Tokens) }

func perToken(v float64, tokens int) float64 {
	if tokens == 0 {
		return 0
	}
	return v / float64(tokens)
}

// Stats returns the counts so far.
func (e *Engine) Stats() Stats { return e.stats }

// count is the phase a call of n tokens counts in.
func (e *Engine) count(n int) *Counts {
	if n == 1 {
		return &e.stats.Decode
	}
	return &e.stats.Prefill
}
