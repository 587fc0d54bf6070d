package model

import (
	"encoding/binary"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The fast q4 path: activations quantized to int8 per block of 32 (as llama.cpp's Q4_0 × Q8_0), integer dot
// products per block, one float multiply-add per block. It deviates from the f32 twin (QuantMatrix.DotRow) by
// the activation rounding alone, at most Σ_blocks d/2·Σ|w| for a block's activation step d (TestQ4Q8Bound);
// CPU.Reference turns it off.

// q4Block is the group size the fast path handles (the converter's default); other groups use the twin.
const q4Block = 32

// q8Acts holds T rows of K activations quantized for the fast path. Blocks come in pairs, one 192-byte
// record per pair and token: q (64 int8: each block's 16 even columns, then its 16 odd ones, the order in
// which a word's low and high nibbles come out), bias (16 int32: -8·Σq of the 4 bytes of each 32-bit lane,
// which turns Σu·q into Σ(u-8)·q) and dx (16 float32: each block's step, once per lane). A last odd block
// goes to tailQ and tailD.
type q8Acts struct {
	T, K, pairs int
	rec         []byte    // [T][pairs][192]
	tailQ       []int8    // [T][32] when K/32 is odd
	tailD       []float32 // [T]
}

const q8Record = 192

// fastQ4 reports whether Matmul takes the fast path for l.
func fastQ4(l Linear) bool {
	return haveQ4Kernels && l.W == nil && l.Q != nil && l.Q.DType == DTypeQ4 && l.Q.Group == q4Block
}

// quantizeQ8 quantizes x [T, K] (K a multiple of 32) to q8Acts: step d = max|x|/127 per block, q = round(x/d).
func quantizeQ8(x []float32, K int) *q8Acts {
	T := len(x) / K
	a := &q8Acts{T: T, K: K, pairs: K / 64}
	a.rec = aligned64(T * a.pairs * q8Record)
	if K/32%2 == 1 {
		a.tailQ, a.tailD = make([]int8, T*32), make([]float32, T)
	}
	parallelFor(T, func(lo, hi int) {
		var q [32]int8
		for t := lo; t < hi; t++ {
			for b := 0; b < K/32; b++ {
				d := quantizeBlock(x[t*K+b*32:t*K+b*32+32], &q)
				if b/2 == a.pairs { // the odd last block
					copy(a.tailQ[t*32:], q[:])
					a.tailD[t] = d
					continue
				}
				r := a.rec[(t*a.pairs+b/2)*q8Record:][:q8Record]
				half := 32 * (b % 2)
				for i, v := range q {
					r[half+i] = byte(v)
				}
				for lane := half / 4; lane < half/4+8; lane++ {
					s := int32(q[lane*4-half]) + int32(q[lane*4-half+1]) + int32(q[lane*4-half+2]) + int32(q[lane*4-half+3])
					binary.LittleEndian.PutUint32(r[64+4*lane:], uint32(-8*s))
					binary.LittleEndian.PutUint32(r[128+4*lane:], math.Float32bits(d))
				}
			}
		}
	})
	return a
}

// quantizeBlock writes 32 values to q, even columns first, and returns their step.
func quantizeBlock(x []float32, q *[32]int8) float32 {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	for i := 0; i < 16; i++ {
		q[i] = round8(x[2*i] * id)
		q[16+i] = round8(x[2*i+1] * id)
	}
	return d
}

// round8 rounds v (|v| ≤ 127.5) to the nearest integer, halves away from zero, as math.Round does.
func round8(v float32) int8 {
	return int8(v + float32(math.Copysign(0.5, float64(v))))
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// aligned64 returns n zero bytes starting on a 64-byte boundary (one cache line, one zmm load).
func aligned64(n int) []byte {
	b := make([]byte, n+64)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) & 63)
	return b[off : off+n : off+n]
}

// block returns token t's block b of a: its 32 values (even columns first) and step.
func (a *q8Acts) block(t, b int) ([]int8, float32) {
	if b/2 == a.pairs {
		return a.tailQ[t*32 : t*32+32], a.tailD[t]
	}
	r := a.rec[(t*a.pairs+b/2)*q8Record:]
	q := unsafe.Slice((*int8)(unsafe.Pointer(&r[32*(b%2)])), 32)
	return q, math.Float32frombits(binary.LittleEndian.Uint32(r[128+32*(b%2):]))
}

// dotQ4Q8 is the pure-Go twin of the kernels over blocks [b0, b1) of row r and token t: Σ_b w_b·d_b·Σ(u-8)·q.
func dotQ4Q8(m *QuantMatrix, r int, a *q8Acts, t, b0, b1 int) float32 {
	data := m.Data[r*m.RowWords():]
	scales := m.Scales[r*m.ScaleWords():]
	var sum float32
	for b := b0; b < b1; b++ {
		q, d := a.block(t, b)
		var acc int32
		for i, w := range data[b*4 : b*4+4] {
			for k := 0; k < 4; k++ { // byte k of word i: columns 8i+2k (low nibble) and 8i+2k+1 (high)
				by := int32(w >> (8 * k) & 0xff)
				acc += (by&15-8)*int32(q[4*i+k]) + (by>>4-8)*int32(q[16+4*i+k])
			}
		}
		sum += float32(acc) * (scale(scales, b) * d)
	}
	return sum
}

// matmulQ4 is Matmul's fast path: dst [T, Out] = a · lᵀ (+ bias). Cores take blocks of 64 rows from a
// shared counter (the machine is shared, so a fixed split would wait on the slowest core); within a block,
// 4 rows × 4 tokens per kernel call keep 16 sums in registers and read each weight once per 4 tokens, and
// a token block of 16 keeps the activations in L2 while the block's rows stay in L1/L2.
func matmulQ4(dst []float32, a *q8Acts, l Linear) {
	const rowBlock, tokBlock = 64, 16
	m := l.Q
	T, Out := a.T, l.Out
	rw, sw := 4*m.RowWords(), 4*m.ScaleWords()
	astride := a.pairs * q8Record
	items := (Out + rowBlock - 1) / rowBlock
	var next atomic.Int64
	work := func() {
		for {
			it := int(next.Add(1) - 1)
			if it >= items {
				return
			}
			r0, r1 := it*rowBlock, min(it*rowBlock+rowBlock, Out)
			r4 := r0 + (r1-r0)&^3
			if a.pairs > 0 {
				for t0 := 0; t0 < T; t0 += tokBlock {
					t1 := min(t0+tokBlock, T)
					t4 := t0 + (t1-t0)&^3
					for r := r0; r < r4; r += 4 {
						w, s := &m.Data[r*m.RowWords()], &m.Scales[r*m.ScaleWords()]
						for t := t0; t < t4; t += 4 {
							q4q8x4x4(w, rw, s, sw, &a.rec[t*astride], astride, a.pairs, &dst[t*Out+r], 4*Out)
						}
						for t := t4; t < t1; t++ {
							q4q8x4x1(w, rw, s, sw, &a.rec[t*astride], a.pairs, &dst[t*Out+r])
						}
					}
				}
			}
			for r := r0; r < r1; r++ {
				for t := 0; t < T; t++ {
					i := t*Out + r
					switch nb := a.K / 32; {
					case r >= r4 || a.pairs == 0: // rows past the last 4-row tile, or a single block: all in Go
						dst[i] = dotQ4Q8(m, r, a, t, 0, nb)
					case a.tailQ != nil: // the odd last block
						dst[i] += dotQ4Q8(m, r, a, t, nb-1, nb)
					}
					if l.Bias != nil {
						dst[i] += l.Bias[r]
					}
				}
			}
		}
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), items) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}
