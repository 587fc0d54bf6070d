package model

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// The CPU reference forward pass. Each function below is the twin of one WGSL kernel and carries its name;
// the GPU engine is tested against these, and these against golden data from an independent implementation.

// KVCache holds the keys and values of every position processed so far, per layer.
type KVCache struct {
	K, V   [][]float32 // [layer][ctx*KV]
	MaxCtx int
}

// NewKVCache allocates a cache for up to maxCtx positions.
func NewKVCache(c *Config, maxCtx int) *KVCache {
	kv := &KVCache{K: make([][]float32, c.NumHiddenLayers), V: make([][]float32, c.NumHiddenLayers), MaxCtx: maxCtx}
	for i := range kv.K {
		kv.K[i] = make([]float32, maxCtx*c.KVDim())
		kv.V[i] = make([]float32, maxCtx*c.KVDim())
	}
	return kv
}

// CPU is the reference decoder: plain Go float32, matmuls spread over all cores. On q4 weights it takes
// the fast path of q4q8.go where the CPU has its kernels, unless Reference is set.
type CPU struct {
	Config    *Config
	Weights   *Weights
	Cache     *KVCache
	Reference bool // only the pure-Go f32 twins: the oracle the fast path is measured against
}

// NewCPU returns a CPU decoder with a KV cache for maxCtx positions.
func NewCPU(c *Config, w *Weights, maxCtx int) *CPU {
	return &CPU{Config: c, Weights: w, Cache: NewKVCache(c, maxCtx)}
}

// MaxContext is the number of positions the KV cache holds.
func (m *CPU) MaxContext() int { return m.Cache.MaxCtx }

// Forward runs tokens at positions pos, pos+1, … through the decoder, appending their keys and values to the
// cache (anything cached at or after pos is overwritten). It returns the logits of every token when all is
// set, else only of the last one.
func (m *CPU) Forward(tokens []int, pos int, all bool) ([][]float32, error) {
	c, w := m.Config, m.Weights
	T, D := len(tokens), c.HiddenSize
	if T == 0 {
		return nil, fmt.Errorf("forward: no tokens")
	}
	if pos < 0 || pos+T > m.Cache.MaxCtx {
		return nil, fmt.Errorf("forward: positions %d..%d exceed the context length %d", pos, pos+T-1, m.Cache.MaxCtx)
	}
	for _, t := range tokens {
		if t < 0 || t >= c.VocabSize {
			return nil, fmt.Errorf("forward: token id %d outside vocab of %d", t, c.VocabSize)
		}
	}
	x := make([]float32, T*D) // [T, D] residual stream
	for i, t := range tokens {
		Embedding(x[i*D:(i+1)*D], w.Embed, t)
	}
	invFreq := RopeInvFreq(c, pos+T)
	for i := range w.Layers {
		m.layer(i, x, pos, invFreq)
	}
	rows := x
	if !all {
		rows, T = x[(T-1)*D:], 1
	}
	normed := make([]float32, T*D)
	for i := 0; i < T; i++ {
		RMSNorm(normed[i*D:(i+1)*D], rows[i*D:(i+1)*D], w.Norm, c.RMSNormEps)
	}
	flat := make([]float32, T*c.VocabSize) // [T, vocab]
	m.matmul(flat, &matIn{x: normed}, w.LMHead)
	out := make([][]float32, T)
	for i := range out {
		out[i] = flat[i*c.VocabSize : (i+1)*c.VocabSize]
	}
	return out, nil
}

// layer applies decoder block i to the residual stream x [T, D] in place.
func (m *CPU) layer(i int, x []float32, pos int, invFreq []float32) {
	c, l := m.Config, &m.Weights.Layers[i]
	D, Q, KV, F := c.HiddenSize, c.QDim(), c.KVDim(), c.IntermediateSize
	T := len(x) / D

	// attention rmsnorm
	h := make([]float32, T*D)
	parallelFor(T, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			RMSNorm(h[t*D:(t+1)*D], x[t*D:(t+1)*D], l.InputNorm, c.RMSNormEps)
		}
	})
	// q, k, v projections; k and v go straight into the cache
	q := make([]float32, T*Q)
	k := m.Cache.K[i][pos*KV : (pos+T)*KV]
	v := m.Cache.V[i][pos*KV : (pos+T)*KV]
	in := &matIn{x: h}
	m.matmul(q, in, l.Q)
	m.matmul(k, in, l.K)
	m.matmul(v, in, l.V)
	// rotary position embedding on q and the new keys
	Rope(q, c.NumAttentionHeads, c.HeadDim, pos, invFreq)
	Rope(k, c.NumKeyValueHeads, c.HeadDim, pos, invFreq)
	// causal grouped-query attention over the cache
	att := make([]float32, T*Q)
	attention(att, q, m.Cache.K[i], m.Cache.V[i], pos, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, m.kernels())
	// output projection and residual connection
	o := make([]float32, T*D)
	m.matmul(o, &matIn{x: att}, l.O)
	Add(x, o)

	// ffn rmsnorm
	parallelFor(T, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			RMSNorm(h[t*D:(t+1)*D], x[t*D:(t+1)*D], l.PostNorm, c.RMSNormEps)
		}
	})
	// SwiGLU: down(silu(gate(h)) * up(h))
	gate := make([]float32, T*F)
	up := make([]float32, T*F)
	in = &matIn{x: h}
	m.matmul(gate, in, l.Gate)
	m.matmul(up, in, l.Up)
	parallelFor(T, func(lo, hi int) { // elementwise: the split changes no result
		SwiGLU(gate[lo*F:hi*F], gate[lo*F:hi*F], up[lo*F:hi*F])
	})
	m.matmul(o, &matIn{x: gate}, l.Down)
	// residual connection
	Add(x, o)
}

// Embedding copies token t's row of the embedding table into dst [D].
func Embedding(dst []float32, embed Linear, t int) {
	if embed.W == nil {
		embed.Q.DequantRow(t, dst)
		return
	}
	copy(dst, embed.W[t*embed.In:(t+1)*embed.In])
}

// RMSNorm: dst = x * rsqrt(mean(x²) + eps) * weight, accumulated in float64 for a stable reference.
func RMSNorm(dst, x, weight []float32, eps float64) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := float32(1 / math.Sqrt(ss/float64(len(x))+eps))
	for i, v := range x {
		dst[i] = v * scale * weight[i]
	}
}

// matIn is a matmul's input x [T, In], quantized once for all the matmuls that share it.
type matIn struct {
	x []float32
	q *q8Acts // nil until a fast q4 matmul needs it
}

// kernels returns the f32 kernels of this pass: the fast ones where they run, unless m.Reference.
func (m *CPU) kernels() f32Kernels {
	if haveF32Kernels && !m.Reference {
		return fastKernels
	}
	return twinKernels
}

// matmul is Matmul, or its fast path (q4q8.go, f32.go) where that applies.
func (m *CPU) matmul(dst []float32, in *matIn, l Linear) {
	if m.Reference || !fastQ4(l) {
		matmul(dst, in.x, l, m.kernels().dot)
		return
	}
	if in.q == nil {
		in.q = quantizeQ8(in.x, l.In)
	}
	matmulQ4(dst, in.q, l)
}

// Matmul: dst [T, Out] = x [T, In] · lᵀ (+ bias), from the f32 weights or, when no f32 copy is loaded,
// from the stored (quantized) form. Rows of the weight are split across cores so each weight row is read
// once for all T tokens, as the GPU's tiled matmul does.
func Matmul(dst, x []float32, l Linear) { matmul(dst, x, l, dot) }

// matmul is Matmul with the f32 dot product dotf.
func matmul(dst, x []float32, l Linear, dotf func(a, b []float32) float32) {
	T := len(x) / l.In
	parallelFor(l.Out, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			var b float32
			if l.Bias != nil {
				b = l.Bias[r]
			}
			for t := 0; t < T; t++ {
				xt := x[t*l.In : (t+1)*l.In]
				if l.W == nil { // stored quantized: the twin of the GPU's q4 matvec
					dst[t*l.Out+r] = l.Q.DotRow(r, xt) + b
				} else {
					dst[t*l.Out+r] = dotf(l.W[r*l.In:(r+1)*l.In], xt) + b
				}
			}
		}
	})
}

// dot is a float32 dot product with four independent accumulators (what a GPU thread's partial sums look like).
func dot(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	n := len(a) &^ 3
	b = b[:len(a)]
	for i := 0; i < n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for i := n; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// RopeInvFreq returns inv_freq[i] = theta^(-2i/head_dim) for i < head_dim/2, with dynamic NTK scaling of
// theta when seqLen (the highest position of this call + 1) exceeds max_position_embeddings. It follows
// HF's float32 arithmetic: the exponent and the power are rounded to float32 before the reciprocal.
func RopeInvFreq(c *Config, seqLen int) []float32 {
	base := c.RopeTheta
	if rs := c.RopeScaling; rs != nil && seqLen > c.MaxPositionEmbeddings {
		dim := float64(c.HeadDim)
		base *= math.Pow(rs.Factor*float64(seqLen)/float64(c.MaxPositionEmbeddings)-(rs.Factor-1), dim/(dim-2))
	}
	inv := make([]float32, c.HeadDim/2)
	for i := range inv {
		e := float32(2*i) / float32(c.HeadDim)
		inv[i] = 1 / float32(math.Pow(base, float64(e)))
	}
	return inv
}

// Rope rotates x [T, heads, headDim] in place, token t at position pos+t, rotate_half style: dimension i
// pairs with i+headDim/2. The angle is a float32 product, as in HF.
func Rope(x []float32, heads, headDim, pos int, invFreq []float32) {
	half := headDim / 2
	T := len(x) / (heads * headDim)
	for t := 0; t < T; t++ {
		p := float32(pos + t)
		for i := 0; i < half; i++ {
			angle := float64(p * invFreq[i])
			cos, sin := float32(math.Cos(angle)), float32(math.Sin(angle))
			for h := 0; h < heads; h++ {
				v := x[(t*heads+h)*headDim:]
				a, b := v[i], v[i+half]
				v[i] = a*cos - b*sin
				v[i+half] = b*cos + a*sin
			}
		}
	}
}

// Attention: out [T, heads*hd] for queries q [T, heads*hd] at positions pos.. against the cached keys and
// values [ctx, kvHeads*hd], causal, query head h reading kv head h/(heads/kvHeads), softmax in float32.
func Attention(out, q, kc, vc []float32, pos, heads, kvHeads, hd int) {
	attention(out, q, kc, vc, pos, heads, kvHeads, hd, twinKernels)
}

// attention is Attention with the dot and axpy of k.
func attention(out, q, kc, vc []float32, pos, heads, kvHeads, hd int, k f32Kernels) {
	T := len(q) / (heads * hd)
	group := heads / kvHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	kvDim := kvHeads * hd
	parallelFor(T*heads, func(lo, hi int) {
		scores := make([]float32, pos+T)
		for th := lo; th < hi; th++ {
			t, h := th/heads, th%heads
			n := pos + t + 1 // keys visible to this query
			qh := q[(t*heads+h)*hd : (t*heads+h+1)*hd]
			off := (h / group) * hd
			maxS := float32(math.Inf(-1))
			for j := 0; j < n; j++ {
				s := k.dot(qh, kc[j*kvDim+off:j*kvDim+off+hd]) * scale
				scores[j] = s
				maxS = max(maxS, s)
			}
			var sum float32
			for j := 0; j < n; j++ {
				e := float32(math.Exp(float64(scores[j] - maxS)))
				scores[j] = e
				sum += e
			}
			o := out[(t*heads+h)*hd : (t*heads+h+1)*hd]
			clear(o)
			for j := 0; j < n; j++ {
				k.axpy(o, vc[j*kvDim+off:j*kvDim+off+hd], scores[j]/sum)
			}
		}
	})
}

// SwiGLU: dst = silu(gate) * up, silu(x) = x / (1 + e^-x).
func SwiGLU(dst, gate, up []float32) {
	for i, g := range gate {
		dst[i] = g / (1 + float32(math.Exp(-float64(g)))) * up[i]
	}
}

// Add: x += y (the residual connection).
func Add(x, y []float32) {
	for i := range x {
		x[i] += y[i]
	}
}

// parallelFor splits [0, n) into contiguous chunks, one per core, and waits for them.
func parallelFor(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, min(lo+chunk, n))
	}
	wg.Wait()
}
