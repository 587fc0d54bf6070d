package webgpu

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/oliverbestmann/webgpu/wgpu"
	"github.com/stretchr/testify/require"
	"github.com/x448/float16"

	"github.com/ilmweb/ilmweb/model"
)

// Each kernel against its CPU twin on random inputs whose sizes are not multiples of the workgroup sizes,
// with guard words after every output that must come back untouched.

const guardWords = 16

// guardValue is a NaN pattern no kernel produces.
const guardValue = 0x7fa5a5a5

func randFloats(rng *rand.Rand, n int, scale float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = scale * float32(2*rng.Float64()-1)
	}
	return out
}

// output makes a buffer for n floats followed by guard words, filled with the guard pattern.
func output(t *testing.T, d *Device, label string, n int) *wgpu.Buffer {
	t.Helper()
	init := make([]uint32, n+guardWords)
	for i := range init {
		init[i] = guardValue
	}
	b, err := upload(d, label, init)
	require.NoError(t, err)
	return b
}

// input makes a storage buffer holding data followed by guard words: a kernel reading past the data gets NaN.
func input(t *testing.T, d *Device, label string, data []float32) *wgpu.Buffer {
	t.Helper()
	init := make([]uint32, len(data)+guardWords)
	for i, v := range data {
		init[i] = math.Float32bits(v)
	}
	for i := len(data); i < len(init); i++ {
		init[i] = guardValue
	}
	b, err := upload(d, label, init)
	require.NoError(t, err)
	return b
}

// readOutput reads back n floats of b and checks that the guard words after them are untouched.
func readOutput(t *testing.T, d *Device, b *wgpu.Buffer, n int) []float32 {
	t.Helper()
	size := uint64(4 * (n + guardWords))
	staging, err := d.readback("staging", size)
	require.NoError(t, err)
	raw, err := d.read(b, staging, 0, size)
	require.NoError(t, err)
	for i, w := range words(raw[4*n:]) {
		require.Equalf(t, uint32(guardValue), w, "guard word %d after the %d outputs was overwritten", i, n)
	}
	return floats(raw[:4*n])
}

// requireClose checks |got − want| ≤ 1e-4 + 1e-3·|want| elementwise (DESIGN.md's numerics policy).
func requireClose(t *testing.T, want, got []float32, what string) {
	t.Helper()
	require.Len(t, got, len(want))
	worst, at := 0.0, 0
	for i := range want {
		diff := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(diff) || diff > 1e-4+1e-3*math.Abs(float64(want[i])) {
			t.Fatalf("%s: element %d: got %g, want %g", what, i, got[i], want[i])
		}
		if diff > worst {
			worst, at = diff, i
		}
	}
	t.Logf("%s: %d values, max |Δ| %.3g at %d", what, len(want), worst, at)
}

// requireGuards checks that no kernel wrote to got, which was filled with the guard pattern.
func requireGuards(t *testing.T, got []float32, format string, args ...any) {
	t.Helper()
	for i, w := range got {
		if math.Float32bits(w) != guardValue {
			t.Fatalf("%s: word %d was overwritten with %g", fmt.Sprintf(format, args...), i, w)
		}
	}
}

func testStep(t *testing.T, d *Device, pos, n int) *wgpu.Buffer {
	t.Helper()
	step, err := d.stepBuffer()
	require.NoError(t, err)
	require.NoError(t, d.setStep(step, pos, n))
	return step
}

// testMatrix draws a [rows, cols] matrix of dtype with optional bias: the GPU's form, and the f32 Linear
// (dequantized for q4) the CPU twin multiplies by.
func testMatrix(rng *rand.Rand, dtype string, rows, cols int, bias bool) (*model.QuantMatrix, model.Linear) {
	w := randFloats(rng, rows*cols, 1/float32(math.Sqrt(float64(cols))))
	var q *model.QuantMatrix
	var l model.Linear
	if dtype == model.DTypeQ4 {
		q = quantizeQ4(w, rows, cols)
		l = dequantize(q)
	} else {
		l = model.Linear{Out: rows, In: cols, W: w}
		q = f32Matrix(l)
	}
	if bias {
		l.Bias = randFloats(rng, rows, 1)
	}
	return q, l
}

// quantizeQ4 packs w [rows, cols] as symmetric int4 with one f16 scale per 32 columns, in docs/FORMAT.md's
// layout. Test-only: the converter owns quantization.
func quantizeQ4(w []float32, rows, cols int) *model.QuantMatrix {
	q := &model.QuantMatrix{DType: model.DTypeQ4, Rows: rows, Cols: cols, Group: 32}
	q.Data = make([]uint32, rows*q.RowWords())
	q.Scales = make([]uint32, rows*q.ScaleWords())
	for r := 0; r < rows; r++ {
		for g := 0; g < cols/32; g++ {
			vals := w[r*cols+g*32 : r*cols+g*32+32]
			var amax float32
			for _, v := range vals {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			h := float16.Fromfloat32(amax / 7)
			q.Scales[r*q.ScaleWords()+g/2] |= uint32(h.Bits()) << (16 * (g % 2))
			s := h.Float32()
			for i, v := range vals {
				u := 8
				if s > 0 {
					u = min(15, max(0, int(math.Round(float64(v/s)))+8))
				}
				c := g*32 + i
				q.Data[r*q.RowWords()+c/8] |= uint32(u) << (4 * (c % 8))
			}
		}
	}
	return q
}

// dequantize returns q as an f32 Linear, for the CPU reference.
func dequantize(q *model.QuantMatrix) model.Linear {
	l := model.Linear{Out: q.Rows, In: q.Cols, W: make([]float32, q.Rows*q.Cols)}
	for r := 0; r < q.Rows; r++ {
		q.DequantRow(r, l.W[r*q.Cols:(r+1)*q.Cols])
	}
	return l
}

func TestQuantizeQ4(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	w := randFloats(rng, 5*96, 1)
	q := quantizeQ4(w, 5, 96)
	require.NoError(t, q.Check())
	back := dequantize(q)
	for i := range w {
		require.InDelta(t, w[i], back.W[i], 1.0/14+1e-3, "element %d", i)
	}
}

// linearTwin is what matvec and matmul compute, from the CPU twins: for each of the T rows of x, RMSNorm
// with norm (if any), model.Matmul by l, then per mode: y = that, y = y0 + that (model.Add), or
// y = model.SwiGLU of the (even, odd) row pairs.
func linearTwin(x []float32, l model.Linear, norm []float32, mode int, y0 []float32) []float32 {
	T := len(x) / l.In
	h := x
	if norm != nil {
		h = make([]float32, len(x))
		for t := range T {
			model.RMSNorm(h[t*l.In:(t+1)*l.In], x[t*l.In:(t+1)*l.In], norm, 1e-5)
		}
	}
	out := make([]float32, T*l.Out)
	model.Matmul(out, h, l)
	switch mode {
	case add:
		model.Add(out, y0)
	case glu:
		gate, up := make([]float32, len(out)/2), make([]float32, len(out)/2)
		for i := range gate {
			gate[i], up[i] = out[2*i], out[2*i+1]
		}
		model.SwiGLU(gate, gate, up)
		out = gate
	}
	return out
}

var modeNames = map[int]string{store: "store", add: "add", glu: "glu"}

// linearCase is one test of matvec or matmul.
type linearCase struct {
	dtype      string
	rows, cols int
	bias, norm bool
	mode       int
	blockBytes uint64 // forces row blocks when small
	variant    string // of matvec (variants.go); empty: the default
}

func (tc linearCase) String() string {
	return fmt.Sprintf("%s %dx%d bias=%v norm=%v %s block=%d %s", tc.dtype, tc.rows, tc.cols, tc.bias, tc.norm, modeNames[tc.mode], tc.blockBytes, tc.variant)
}

// testLinear runs family ("matvec" or "matmul") on T tokens of random input against linearTwin: matvec
// takes the last token's row only.
func testLinear(t *testing.T, d *Device, rng *rand.Rand, family string, T int, tc linearCase) {
	name := fmt.Sprintf("%s T=%d %v", family, T, tc)
	q, l := testMatrix(rng, tc.dtype, tc.rows, tc.cols, tc.bias)
	x := randFloats(rng, T*tc.cols, 2)
	var norm []float32
	var normBuf, biasBuf *wgpu.Buffer
	if tc.norm {
		norm = randFloats(rng, tc.cols, 1)
		normBuf = input(t, d, "norm", norm)
	}
	if tc.bias {
		biasBuf = input(t, d, "bias", l.Bias)
	}
	outT := T // token rows of the output
	if family == "matvec" {
		x, outT = x[(T-1)*tc.cols:], 1
	}
	width := tc.rows
	if tc.mode == glu {
		width /= 2
	}
	y0 := randFloats(rng, outT*width, 1)
	want := linearTwin(x, l, norm, tc.mode, y0)

	blockBytes := tc.blockBytes
	if blockBytes == 0 {
		blockBytes = d.Limits.MaxStorageBufferBindingSize
	}
	m, err := d.matrix("w", q, blockBytes)
	require.NoError(t, err)
	if tc.blockBytes != 0 {
		require.Greater(t, len(m.blocks), 1)
	}
	xb := input(t, d, "x", randFloats(rng, T*tc.cols, 2))
	if family == "matvec" { // rows before the last are not read: leave them random
		require.NoError(t, write(d, xb, uint64(4*(T-1)*tc.cols), x))
	} else {
		require.NoError(t, write(d, xb, 0, x))
	}
	y := input(t, d, "y", y0)
	cs, err := d.linear(family, m, testStep(t, d, 3, T), xb, y, biasBuf, fusion{norm: normBuf, eps: 1e-5, mode: tc.mode, variant: tc.variant})
	require.NoError(t, err)
	require.NoError(t, d.run(T, cs...))
	got := readOutput(t, d, y, len(want))
	if v, _ := matvecVariantNamed(tc.variant); family == "matvec" && v.q8 && tc.dtype == model.DTypeQ4 {
		requireQ8Close(t, want, got, q8Bounds(x, l, norm, tc.mode, y0), name)
		return
	}
	requireClose(t, want, got, name)
}

var linearCases = []linearCase{
	{dtype: model.DTypeQ4, rows: 77, cols: 352},
	{dtype: model.DTypeQ4, rows: 3, cols: 32, bias: true},
	{dtype: model.DTypeQ4, rows: 1030, cols: 2080, norm: true},
	{dtype: model.DTypeQ4, rows: 77, cols: 352, bias: true, blockBytes: 10 * 352 / 2}, // 10 rows per block
	{dtype: model.DTypeQ4, rows: 90, cols: 160, bias: true, norm: true, mode: glu, blockBytes: 11 * 160 / 2},
	{dtype: model.DTypeQ4, rows: 45, cols: 96, norm: true, mode: add},
	{dtype: model.DTypeF32, rows: 77, cols: 348},
	{dtype: model.DTypeF32, rows: 301, cols: 4, bias: true},
	{dtype: model.DTypeF32, rows: 50, cols: 260, bias: true, mode: add, blockBytes: 7 * 260 * 4},
	{dtype: model.DTypeF32, rows: 66, cols: 100, norm: true, mode: glu},
}

func TestMatvec(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range linearCases {
		testLinear(t, d, rng, "matvec", 1, tc)
	}
	// a pass of several tokens: the lm_head reads the last one
	testLinear(t, d, rng, "matvec", 5, linearCase{dtype: model.DTypeQ4, rows: 77, cols: 352, norm: true})
}

func TestMatmul(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for i, tc := range linearCases {
		T := []int{1, 7, 33, 70}[i%4]
		if tc.rows*tc.cols > 1e6 {
			T = 40
		}
		testLinear(t, d, rng, "matmul", T, tc)
	}
}

func TestEmbedding(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(7, 8))
	const rows, cols = 50, 320
	w := randFloats(rng, rows*cols, 1)
	for _, q := range []*model.QuantMatrix{quantizeQ4(w, rows, cols), f32Matrix(model.Linear{Out: rows, In: cols, W: w})} {
		m, err := d.matrix("embed", q, uint64(4*q.RowWords()*16)) // blocks of 16 rows
		require.NoError(t, err)
		require.Len(t, m.blocks, 4)
		l := dequantize(q)
		tokens := []uint32{0, 17, 49, 17, 33, 16, 15}
		out := output(t, d, "out", len(tokens)*cols)
		cs, err := d.embedding(m, testStep(t, d, 0, len(tokens)), input(t, d, "tokens", floats(asBytes(tokens))), out)
		require.NoError(t, err)
		require.NoError(t, d.run(len(tokens), cs...))
		want := make([]float32, len(tokens)*cols)
		for i, tok := range tokens {
			model.Embedding(want[i*cols:(i+1)*cols], l, int(tok))
		}
		require.Equal(t, want, readOutput(t, d, out, len(want)), q.DType)
	}
}

// asBytes is the little-endian bytes of words.
func asBytes(words []uint32) []byte {
	out := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(out[4*i:], w)
	}
	return out
}

// f16Round returns x rounded to f16, as an f16 KV cache holds it.
func f16Round(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float16.Fromfloat32(v).Float32()
	}
	return out
}

// kvWords is x as a KV cache holds it: f32 words, or f16 pairs.
func kvWords(x []float32, f16 bool) []uint32 {
	if !f16 {
		return floatWords(x)
	}
	out := make([]uint32, len(x)/2)
	for i := range out {
		out[i] = uint32(float16.Fromfloat32(x[2*i]).Bits()) | uint32(float16.Fromfloat32(x[2*i+1]).Bits())<<16
	}
	return out
}

// kvFloats reads back n values of a KV cache, checking its guard words.
func kvFloats(t *testing.T, d *Device, b *wgpu.Buffer, n int, f16 bool) []float32 {
	if !f16 {
		return readOutput(t, d, b, n)
	}
	got := floatWords(readOutput(t, d, b, n/2))
	out := make([]float32, n)
	for i := range out {
		out[i] = model.F16ToF32(uint16(got[i/2] >> (16 * (i % 2))))
	}
	return out
}

func floatWords(x []float32) []uint32 {
	out := make([]uint32, len(x))
	for i, v := range x {
		out[i] = math.Float32bits(v)
	}
	return out
}

func TestRope(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(9, 10))
	cfg := &model.Config{HeadDim: 128, RopeTheta: 5e7, MaxPositionEmbeddings: 32768, RopeScaling: &model.RopeScaling{Factor: 6}}
	const heads, kvHeads = 3, 2
	for _, tc := range []struct {
		pos, n, seqLen int
		f16            bool
	}{{0, 1, 1, false}, {1, 1, 2, true}, {77, 1, 78, false}, {70, 9, 79, true}, {4090, 5, 5000, false},
		{32760, 8, 32768, false}, {40000, 3, 40003, true}} {
		hd := cfg.HeadDim
		Q, KV := heads*hd, kvHeads*hd
		stride := Q + 2*KV
		inv := model.RopeInvFreq(cfg, tc.seqLen)
		qkv := randFloats(rng, tc.n*stride, 2)
		// the twin: model.Rope on the queries and keys of the n tokens
		q, k, v := make([]float32, tc.n*Q), make([]float32, tc.n*KV), make([]float32, tc.n*KV)
		for i := range tc.n {
			copy(q[i*Q:], qkv[i*stride:i*stride+Q])
			copy(k[i*KV:], qkv[i*stride+Q:i*stride+Q+KV])
			copy(v[i*KV:], qkv[i*stride+Q+KV:(i+1)*stride])
		}
		model.Rope(q, heads, hd, tc.pos, inv)
		model.Rope(k, kvHeads, hd, tc.pos, inv)
		if tc.f16 {
			k, v = f16Round(k), f16Round(v)
		}

		b := input(t, d, "qkv", qkv)
		ctx := tc.pos + tc.n + 1 // one position after the tokens', which must stay untouched
		words := ctx * KV
		if tc.f16 {
			words /= 2
		}
		kc, vc := output(t, d, "k", words), output(t, d, "v", words)
		c, err := d.rope(testStep(t, d, tc.pos, tc.n), input(t, d, "inv_freq", inv), b, kc, vc, heads, kvHeads, hd, tc.f16)
		require.NoError(t, err)
		require.NoError(t, d.run(tc.n, c))
		name := fmt.Sprintf("rope pos=%d n=%d f16=%v", tc.pos, tc.n, tc.f16)
		got := readOutput(t, d, b, len(qkv))
		gotQ := make([]float32, 0, len(q))
		for i := range tc.n {
			gotQ = append(gotQ, got[i*stride:i*stride+Q]...)
			require.Equal(t, qkv[i*stride+Q:(i+1)*stride], got[i*stride+Q:(i+1)*stride], "%s: k and v are left in the qkv rows", name)
		}
		requireClose(t, q, gotQ, name+" q")
		for _, c := range []struct {
			buf  *wgpu.Buffer
			want []float32
			what string
		}{{kc, k, "k"}, {vc, v, "v"}} {
			raw := readOutput(t, d, c.buf, words)
			first, end := tc.pos*KV, (tc.pos+tc.n)*KV // in values
			if tc.f16 {
				first, end = first/2, end/2
			}
			requireGuards(t, raw[:first], "%s: %s cache before the tokens", name, c.what)
			requireGuards(t, raw[end:], "%s: %s cache after the tokens", name, c.what)
			requireClose(t, c.want, kvFloats(t, d, c.buf, ctx*KV, tc.f16)[tc.pos*KV:(tc.pos+tc.n)*KV], name+" "+c.what)
		}
	}
}

// attentionCase sets up n queries at positions pos… in qkv rows, and a KV cache of maxCtx positions whose
// positions after the last query hold NaN, which a causal kernel must never read.
type attentionCase struct {
	heads, kvHeads, hd, pos, n, maxCtx int
	f16                                bool // the cache holds f16 pairs
}

// run runs the decode kernel (decode; with splits > 0 its split-KV variant) or the prefill kernel.
func (tc attentionCase) run(t *testing.T, d *Device, rng *rand.Rand, decode bool, splits int) {
	name := fmt.Sprintf("heads=%d/%d hd=%d pos=%d n=%d f16=%v splits=%d", tc.heads, tc.kvHeads, tc.hd, tc.pos, tc.n, tc.f16, splits)
	Q, KV := tc.heads*tc.hd, tc.kvHeads*tc.hd
	stride := Q + 2*KV
	qkv := randFloats(rng, tc.n*stride, 1)
	k := randFloats(rng, tc.maxCtx*KV, 1)
	v := randFloats(rng, tc.maxCtx*KV, 1)
	for i := (tc.pos + tc.n) * KV; i < len(k); i++ {
		k[i], v[i] = float32(math.NaN()), float32(math.NaN())
	}
	if tc.f16 { // the twin reads what the cache holds
		k, v = f16Round(k), f16Round(v)
	}
	q := make([]float32, tc.n*Q)
	for i := range tc.n {
		copy(q[i*Q:], qkv[i*stride:i*stride+Q])
	}
	want := make([]float32, len(q))
	model.Attention(want, q, k, v, tc.pos, tc.heads, tc.kvHeads, tc.hd)

	out := output(t, d, "out", len(q))
	var c dispatch
	scoresLen := tc.heads * tc.maxCtx
	if splits > 0 {
		scoresLen = tc.heads * splits * (2 + tc.hd)
	}
	scores := output(t, d, "scores", scoresLen)
	kb, err := upload(d, "k", append(kvWords(k, tc.f16), guardValue))
	require.NoError(t, err)
	vb, err := upload(d, "v", append(kvWords(v, tc.f16), guardValue))
	require.NoError(t, err)
	cs := []dispatch{}
	switch {
	case decode && splits > 0:
		cs, err = d.attentionSplit(testStep(t, d, tc.pos, tc.n), input(t, d, "qkv", qkv), kb, vb,
			scores, out, tc.heads, tc.kvHeads, tc.hd, stride, splits, tc.f16)
	case decode:
		c, err = d.attention(testStep(t, d, tc.pos, tc.n), input(t, d, "qkv", qkv), kb, vb,
			scores, out, tc.heads, tc.kvHeads, tc.hd, stride, tc.maxCtx, tc.f16)
		cs = []dispatch{c}
	default:
		c, err = d.attentionPrefill(testStep(t, d, tc.pos, tc.n), input(t, d, "qkv", qkv), kb, vb,
			out, tc.heads, tc.kvHeads, tc.hd, stride, tc.f16)
		cs = []dispatch{c}
	}
	require.NoError(t, err)
	require.NoError(t, d.run(tc.n, cs...))
	requireClose(t, want, readOutput(t, d, out, len(q)), name)
	readOutput(t, d, scores, scoresLen) // its guard words
}

func TestAttention(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(11, 12))
	for _, tc := range []attentionCase{
		{4, 2, 32, 0, 1, 5, false},
		{4, 2, 32, 70, 1, 100, true},
		{6, 1, 20, 300, 1, 301, false}, // head_dim not dividing the workgroup
		{32, 2, 128, 600, 1, 700, false},
		{32, 2, 128, 600, 1, 700, true},
	} {
		tc.run(t, d, rng, true, 0)
	}
}

func TestAttentionPrefill(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(13, 14))
	for _, tc := range []attentionCase{
		{4, 2, 32, 0, 1, 5, false},
		{4, 2, 32, 0, 7, 9, false},   // a prompt from position 0, fewer queries than a block
		{6, 3, 20, 5, 19, 30, false}, // after cached positions; head_dim not dividing anything
		{4, 1, 16, 40, 37, 77, true}, // blocks of queries and keys cut at the edges
		{32, 2, 128, 90, 20, 111, false},
		{32, 2, 128, 90, 20, 111, true},
	} {
		tc.run(t, d, rng, false, 0)
	}
}

// penaltyTwin applies model.Sampler's repetition penalty to logits in place (greedy sampling applies it
// and then only picks the maximum).
func penaltyTwin(logits []float32, context []int, p float32) {
	model.NewSampler(model.SamplingParams{RepetitionPenalty: float64(p)}).Sample(logits, context)
}

// topkTwin returns the k largest logits, largest first, equal ones in id order.
func topkTwin(logits []float32, k int) ([]int, []float32) {
	ids := make([]int, len(logits))
	for i := range ids {
		ids[i] = i
	}
	slices.SortStableFunc(ids, func(a, b int) int { return cmp.Compare(logits[b], logits[a]) })
	vals := make([]float32, k)
	for i, id := range ids[:k] {
		vals[i] = logits[id]
	}
	return ids[:k], vals
}

func TestTopK(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(17, 18))
	for _, tc := range []struct {
		n, k    int
		penalty float32
		ties    bool // the top logits come in runs of equal values
	}{
		{1, 1, 1, false}, {1000, 1, 1, true}, {1000, 40, 1.3, false}, {5000, 64, 0.7, true},
		{128512, 1, 1, true}, {128512, 40, 1.005, false}, {128512, 64, 1.2, true},
	} {
		name := fmt.Sprintf("top-%d of %d penalty %g ties %v", tc.k, tc.n, tc.penalty, tc.ties)
		logits := randFloats(rng, tc.n, 10)
		if tc.ties {
			// a few values repeated many times, among them the maximum
			vals := []float32{9.5, 9.5, 8, 7.25, -1}
			for range 300 {
				logits[rng.IntN(tc.n)] = vals[rng.IntN(len(vals))]
			}
		}
		context := make([]int, 0, 3*tc.n/4)
		for range cap(context) {
			context = append(context, rng.IntN(tc.n)) // repeats, so ids must be penalised once
		}
		want := slices.Clone(logits)
		penaltyTwin(want, context, tc.penalty)
		wantIDs, wantVals := topkTwin(want, tc.k)

		lb := input(t, d, "logits", logits)
		s, err := d.newSampling(lb, tc.n)
		require.NoError(t, err)
		var p penalized
		m, err := p.upload(d, s.ids, context, tc.n)
		require.NoError(t, err)
		require.NoError(t, s.set(d, tc.k, m, tc.penalty))
		require.NoError(t, d.run(1, append([]dispatch{s.penalty}, s.topk...)...))
		require.Equal(t, want, readOutput(t, d, lb, tc.n), "%s: penalised logits", name)
		staging, err := d.readback("staging", uint64(8*tc.k))
		require.NoError(t, err)
		raw, err := d.read(s.result, staging, 0, uint64(8*tc.k))
		require.NoError(t, err)
		pairs := words(raw)
		var gotIDs []int
		var gotVals []float32
		for i := range tc.k {
			gotIDs = append(gotIDs, int(pairs[2*i]))
			gotVals = append(gotVals, math.Float32frombits(pairs[2*i+1]))
		}
		require.Equal(t, wantIDs, gotIDs, name)
		require.Equal(t, wantVals, gotVals, name)
	}
}

// The ids buffer of the penalty follows a growing context incrementally and starts over when it changes.
func TestPenalizedIDs(t *testing.T) {
	d := testDevice(t)
	ids, err := d.buffer("ids", 4*10, storage)
	require.NoError(t, err)
	var p penalized
	check := func(context []int, want ...uint32) {
		t.Helper()
		n, err := p.upload(d, ids, context, 10)
		require.NoError(t, err)
		require.Equal(t, len(want), n)
		staging, err := d.readback("staging", 40)
		require.NoError(t, err)
		raw, err := d.read(ids, staging, 0, 40)
		require.NoError(t, err)
		require.Equal(t, want, words(raw)[:n:n][:len(want):len(want)])
	}
	check([]int{3, 3, 5}, 3, 5)
	check([]int{3, 3, 5, 5, 9, 3, 12, -1}, 3, 5, 9) // ids outside the vocab are ignored, as model.Sampler does
	check([]int{3, 3, 5, 5, 9, 3, 12, -1, 0}, 3, 5, 9, 0)
	check([]int{4, 3}, 4, 3) // not a continuation: starts over
	check(nil, []uint32{}...)
}

func TestCopyBandwidth(t *testing.T) {
	d := testDevice(t)
	data := make([]uint32, 4*1001)
	for i := range data {
		data[i] = uint32(i*2654435761) ^ 0x5bd1e995
	}
	src, err := upload(d, "src", data)
	require.NoError(t, err)
	dst := output(t, d, "dst", len(data))
	c, err := d.copyWords(src, dst, uint64(len(data)/4))
	require.NoError(t, err)
	require.NoError(t, d.run(1, c))
	got := readOutput(t, d, dst, len(data))
	for i, w := range got {
		require.Equal(t, data[i], math.Float32bits(w), "word %d", i)
	}
	gbps, err := d.CopyBandwidth(16 << 20)
	require.NoError(t, err)
	require.Greater(t, gbps, 0.0)
	t.Logf("copy bandwidth (read + write) on %s: %.2f GB/s", d.Adapter, gbps)
}

func TestSelfTestReportsWrongResults(t *testing.T) {
	d := testDevice(t)
	require.NoError(t, d.selfTest())
	err := compareTwin("some GPU", "q4 matvec", []float32{1, 2.5, 3}, []float32{1, 2, 3})
	require.ErrorContains(t, err, "the GPU driver computed wrong results: q4 matvec on some GPU: value 1 is 2.5, the CPU computes 2")
	require.Error(t, compareTwin("some GPU", "q4 matvec", []float32{float32(math.NaN())}, []float32{0}))
	require.NoError(t, compareTwin("some GPU", "q4 matvec", []float32{1.0005}, []float32{1}))
}
