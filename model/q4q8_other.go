//go:build !amd64

package model

// haveQ4Kernels is false: the fast q4 path is amd64 assembly; elsewhere Matmul uses the pure-Go twin.
const haveQ4Kernels = false

func q4q8x4x4(w *uint32, wstride int, s *uint32, sstride int, a *byte, astride int, pairs int, out *float32, ostride int) {
	panic("q4q8x4x4: no kernel on this platform")
}

func q4q8x4x1(w *uint32, wstride int, s *uint32, sstride int, a *byte, pairs int, out *float32) {
	panic("q4q8x4x1: no kernel on this platform")
}
