package model

import "golang.org/x/sys/cpu"

// The assembly kernels (q4q8_amd64.s, f32_amd64.s) and whether this CPU runs them.

// haveQ4Kernels reports whether the AVX-512 VNNI kernels of q4q8_amd64.s can run here.
var haveQ4Kernels = cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VNNI

//go:noescape
func q4q8x4x4(w *uint32, wstride int, s *uint32, sstride int, a *byte, astride int, pairs int, out *float32, ostride int)

//go:noescape
func q4q8x4x1(w *uint32, wstride int, s *uint32, sstride int, a *byte, pairs int, out *float32)

// haveF32Kernels reports whether the AVX-512 kernels of f32_amd64.s can run here.
var haveF32Kernels = cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ

//go:noescape
func dotF32(a, b *float32, n int) float32

//go:noescape
func axpyF32(y, x *float32, a float32, n int)
