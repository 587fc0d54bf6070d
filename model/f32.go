package model

// The fast path's float32 kernels: dot and axpy on AVX-512 (f32_amd64.s) for attention and the f32 matmul.
// They differ from their twins (dot, and the plain loop in Attention) in summation order alone.

// fastDot is dot on the kernel: 16-wide lanes in four accumulators, the last len(a)%16 terms in Go.
func fastDot(a, b []float32) float32 {
	b = b[:len(a)]
	n := len(a) &^ 15
	var s float32
	if n > 0 {
		s = dotF32(&a[0], &b[0], n)
	}
	for i := n; i < len(a); i++ {
		s += a[i] * b[i]
	}
	return s
}

// fastAxpy: y += a·x.
func fastAxpy(y, x []float32, a float32) {
	x = x[:len(y)]
	n := len(y) &^ 15
	if n > 0 {
		axpyF32(&y[0], &x[0], a, n)
	}
	for i := n; i < len(y); i++ {
		y[i] += a * x[i]
	}
}

// axpy is fastAxpy's twin.
func axpy(y, x []float32, a float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// f32Kernels are the dot and axpy a pass uses: the kernels, or the pure-Go twins for the reference.
type f32Kernels struct {
	dot  func(a, b []float32) float32
	axpy func(y, x []float32, a float32)
}

var (
	twinKernels = f32Kernels{dot, axpy}
	fastKernels = f32Kernels{fastDot, fastAxpy}
)
