//go:build !amd64

package model

// The fast path is amd64 assembly; elsewhere the CPU engine runs the pure-Go twins.

// haveQ4Kernels is false: the fast q4 path is amd64 assembly; elsewhere Matmul uses the pure-Go twin.
const haveQ4Kernels = false

func q4q8x4x4(w *uint32, wstride int, s *uint32, sstride int, a *byte, astride int, pairs int, out *float32, ostride int) {
	panic("q4q8x4x4: no kernel on this platform")
}

func q4q8x4x1(w *uint32, wstride int, s *uint32, sstride int, a *byte, pairs int, out *float32) {
	panic("q4q8x4x1: no kernel on this platform")
}

const haveF32Kernels = false

func dotF32(a, b *float32, n int) float32 { panic("dotF32: no kernel on this platform") }

func axpyF32(y, x *float32, a float32, n int) { panic("axpyF32: no kernel on this platform") }
