#include "textflag.h"

// AVX-512 VNNI kernels of the fast q4 matmul (q4q8.go has the data layouts and the pure-Go twin).
// One step covers a pair of 32-column blocks of 4 weight rows: 2×16 bytes of nibbles per row become one
// zmm of unsigned bytes [block 0 low nibbles | block 0 high | block 1 low | block 1 high], matching the
// activation record's [even columns | odd columns] per block. VPDPBUSD sums u·q in 16 int32 lanes starting
// from the record's bias (-8·Σq per lane), so each lane holds Σ(u-8)·q exactly; lanes 0-7 belong to block
// 0 and 8-15 to block 1, and are scaled by the per-lane product of the weight and activation scales.

// qword shifts that move the high nibbles down in the odd 128-bit lanes
DATA q4shift<>+0(SB)/8, $0
DATA q4shift<>+8(SB)/8, $0
DATA q4shift<>+16(SB)/8, $4
DATA q4shift<>+24(SB)/8, $4
DATA q4shift<>+32(SB)/8, $0
DATA q4shift<>+40(SB)/8, $0
DATA q4shift<>+48(SB)/8, $4
DATA q4shift<>+56(SB)/8, $4
GLOBL q4shift<>(SB), RODATA|NOPTR, $64

DATA q4nibble<>+0(SB)/4, $0x0f0f0f0f
GLOBL q4nibble<>(SB), RODATA|NOPTR, $4

// VPERMPS indices spreading the alternating [s0, s1, s0, s1, …] scales into [s0 ×8, s1 ×8]
DATA q4scaleidx<>+0(SB)/8, $0
DATA q4scaleidx<>+8(SB)/8, $0
DATA q4scaleidx<>+16(SB)/8, $0
DATA q4scaleidx<>+24(SB)/8, $0
DATA q4scaleidx<>+32(SB)/8, $0x0000000100000001
DATA q4scaleidx<>+40(SB)/8, $0x0000000100000001
DATA q4scaleidx<>+48(SB)/8, $0x0000000100000001
DATA q4scaleidx<>+56(SB)/8, $0x0000000100000001
GLOBL q4scaleidx<>(SB), RODATA|NOPTR, $64

// WEIGHTS(addr, Z): Z = the unpacked nibbles of one row's block pair at addr
#define WEIGHTS(addr, Z, Y) \
	VMOVDQU addr, Y \
	VSHUFI64X2 $0x50, Z, Z, Z \
	VPSRLVQ Z29, Z, Z \
	VPANDD Z30, Z, Z

// SCALES(addr, Z, Y): Z = [s0 ×8, s1 ×8] from the f16 scale word at addr
#define SCALES(addr, Z, Y) \
	VPBROADCASTD addr, Y \
	VCVTPH2PS Y, Z \
	VPERMPS Z, Z31, Z

// DOT(P, W, S, I, F, ACC): ACC += float(bias + Σ W·q) · S·dx for the activation record at P
#define DOT(P, W, S, I, F, ACC) \
	VMOVDQU32 64(P), I \
	VPDPBUSD (P), W, I \
	VCVTDQ2PS I, I \
	VMULPS 128(P), S, F \
	VFMADD231PS F, I, ACC

// SUM(ACC, dst): dst = the sum of ACC's 16 lanes (Y8, Y9 as scratch)
#define SUM(ACC, dst) \
	VEXTRACTF32X8 $1, ACC, Y8 \
	VADDPS ACC, Z8, Z8 \
	VEXTRACTF128 $1, Y8, X9 \
	VADDPS X8, X9, X9 \
	VHADDPS X9, X9, X9 \
	VHADDPS X9, X9, X9 \
	VMOVSS X9, dst

#define CONSTS \
	VMOVDQU64 q4shift<>(SB), Z29 \
	VPBROADCASTD q4nibble<>(SB), Z30 \
	VMOVDQU64 q4scaleidx<>(SB), Z31

// func q4q8x4x4(w *uint32, wstride int, s *uint32, sstride int, a *byte, astride int, pairs int, out *float32, ostride int)
// out[t*ostride + r*4] = row r · token t for 4 rows (data and scales wstride, sstride bytes apart) and 4
// tokens (records astride bytes apart), over pairs block pairs.
TEXT ·q4q8x4x4(SB), NOSPLIT, $0-72
	MOVQ w+0(FP), SI
	MOVQ wstride+8(FP), R8
	LEAQ (R8)(R8*2), R9
	MOVQ s+16(FP), DI
	MOVQ sstride+24(FP), R10
	LEAQ (R10)(R10*2), R11
	MOVQ a+32(FP), AX
	MOVQ astride+40(FP), DX
	LEAQ (AX)(DX*1), BX
	LEAQ (AX)(DX*2), CX
	ADDQ CX, DX
	MOVQ pairs+48(FP), R14
	CONSTS
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25

loop4x4:
	WEIGHTS((SI), Z0, Y0)
	WEIGHTS((SI)(R8*1), Z1, Y1)
	WEIGHTS((SI)(R8*2), Z2, Y2)
	WEIGHTS((SI)(R9*1), Z3, Y3)
	SCALES((DI), Z4, Y4)
	SCALES((DI)(R10*1), Z5, Y5)
	SCALES((DI)(R10*2), Z6, Y6)
	SCALES((DI)(R11*1), Z7, Y7)
	// token 0
	DOT(AX, Z0, Z4, Z8, Z9, Z10)
	DOT(AX, Z1, Z5, Z26, Z27, Z11)
	DOT(AX, Z2, Z6, Z8, Z9, Z12)
	DOT(AX, Z3, Z7, Z26, Z27, Z13)
	// token 1
	DOT(BX, Z0, Z4, Z8, Z9, Z14)
	DOT(BX, Z1, Z5, Z26, Z27, Z15)
	DOT(BX, Z2, Z6, Z8, Z9, Z16)
	DOT(BX, Z3, Z7, Z26, Z27, Z17)
	// token 2
	DOT(CX, Z0, Z4, Z8, Z9, Z18)
	DOT(CX, Z1, Z5, Z26, Z27, Z19)
	DOT(CX, Z2, Z6, Z8, Z9, Z20)
	DOT(CX, Z3, Z7, Z26, Z27, Z21)
	// token 3
	DOT(DX, Z0, Z4, Z8, Z9, Z22)
	DOT(DX, Z1, Z5, Z26, Z27, Z23)
	DOT(DX, Z2, Z6, Z8, Z9, Z24)
	DOT(DX, Z3, Z7, Z26, Z27, Z25)
	ADDQ $32, SI
	ADDQ $4, DI
	ADDQ $192, AX
	ADDQ $192, BX
	ADDQ $192, CX
	ADDQ $192, DX
	DECQ R14
	JNZ loop4x4

	MOVQ out+56(FP), DX
	MOVQ ostride+64(FP), BX
	LEAQ (BX)(BX*2), CX
	SUM(Z10, 0(DX))
	SUM(Z11, 4(DX))
	SUM(Z12, 8(DX))
	SUM(Z13, 12(DX))
	SUM(Z14, 0(DX)(BX*1))
	SUM(Z15, 4(DX)(BX*1))
	SUM(Z16, 8(DX)(BX*1))
	SUM(Z17, 12(DX)(BX*1))
	SUM(Z18, 0(DX)(BX*2))
	SUM(Z19, 4(DX)(BX*2))
	SUM(Z20, 8(DX)(BX*2))
	SUM(Z21, 12(DX)(BX*2))
	SUM(Z22, 0(DX)(CX*1))
	SUM(Z23, 4(DX)(CX*1))
	SUM(Z24, 8(DX)(CX*1))
	SUM(Z25, 12(DX)(CX*1))
	VZEROUPPER
	RET

// func q4q8x4x1(w *uint32, wstride int, s *uint32, sstride int, a *byte, pairs int, out *float32)
// out[r] = row r · the token at a, for 4 rows.
TEXT ·q4q8x4x1(SB), NOSPLIT, $0-56
	MOVQ w+0(FP), SI
	MOVQ wstride+8(FP), R8
	LEAQ (R8)(R8*2), R9
	MOVQ s+16(FP), DI
	MOVQ sstride+24(FP), R10
	LEAQ (R10)(R10*2), R11
	MOVQ a+32(FP), AX
	MOVQ pairs+40(FP), R14
	CONSTS
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13

loop4x1:
	WEIGHTS((SI), Z0, Y0)
	WEIGHTS((SI)(R8*1), Z1, Y1)
	WEIGHTS((SI)(R8*2), Z2, Y2)
	WEIGHTS((SI)(R9*1), Z3, Y3)
	SCALES((DI), Z4, Y4)
	SCALES((DI)(R10*1), Z5, Y5)
	SCALES((DI)(R10*2), Z6, Y6)
	SCALES((DI)(R11*1), Z7, Y7)
	DOT(AX, Z0, Z4, Z8, Z9, Z10)
	DOT(AX, Z1, Z5, Z26, Z27, Z11)
	DOT(AX, Z2, Z6, Z16, Z17, Z12)
	DOT(AX, Z3, Z7, Z18, Z19, Z13)
	ADDQ $32, SI
	ADDQ $4, DI
	ADDQ $192, AX
	DECQ R14
	JNZ loop4x1

	MOVQ out+48(FP), DX
	SUM(Z10, 0(DX))
	SUM(Z11, 4(DX))
	SUM(Z12, 8(DX))
	SUM(Z13, 12(DX))
	VZEROUPPER
	RET
