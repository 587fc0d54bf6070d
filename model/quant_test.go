package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
)

func TestF16ToF32(t *testing.T) {
	for bits, want := range map[uint16]float32{
		0x3c00: 1, 0xc000: -2, 0x3800: 0.5, 0x7bff: 65504, 0x0001: 1.0 / (1 << 24), 0x0400: 1.0 / (1 << 14), 0x0000: 0,
	} {
		require.Equal(t, want, F16ToF32(bits), "%#04x", bits)
	}
	require.True(t, math.Signbit(float64(F16ToF32(0x8000))))
}

// The examples of docs/FORMAT.md, word by word.
func TestDequantRowFollowsLayout(t *testing.T) {
	row := make([]float32, 24)

	// q4, 16 columns, groups of 8: nibble c of the row holds u = c; scales 0.5 (group 0, low half) and -2.
	q4 := QuantMatrix{DType: DTypeQ4, Rows: 1, Cols: 16, Group: 8,
		Data: []uint32{0x76543210, 0xfedcba98}, Scales: []uint32{0xc000_3800}}
	require.NoError(t, q4.Check())
	q4.DequantRow(0, row)
	for c := 0; c < 16; c++ {
		s := float32(0.5)
		if c >= 8 {
			s = -2
		}
		require.Equal(t, float32(c-8)*s, row[c], "column %d", c)
	}

	// q4 with an odd number of groups: each row's scales are padded to an even count (2 words for 3 groups),
	// and row 1 starts at word 1·ceil(3/2) = 2.
	q4odd := QuantMatrix{DType: DTypeQ4, Rows: 2, Cols: 24, Group: 8,
		Data:   []uint32{0x88888888, 0x88888888, 0x88888888, 0x99999999, 0x99999999, 0x99999999},
		Scales: []uint32{0x3c00_3c00, 0x0000_3c00, 0x4000_3800, 0x0000_4400}}
	require.NoError(t, q4odd.Check())
	q4odd.DequantRow(1, row)
	require.Equal(t, []float32{0.5, 2, 4}, []float32{row[0], row[8], row[16]}) // u = 9: q = 1 times 0.5, 2, 4

	// q8: byte c%4 of word c/4 is q as int8.
	q8 := QuantMatrix{DType: DTypeQ8, Rows: 1, Cols: 8, Group: 8, Data: []uint32{0x80ff7f01, 0x00000002}, Scales: []uint32{0x3800}}
	require.NoError(t, q8.Check())
	q8.DequantRow(0, row)
	require.Equal(t, []float32{0.5, 63.5, -0.5, -64, 1, 0, 0, 0}, row[:8])

	// f16: low half first.
	f16 := QuantMatrix{DType: DTypeF16, Rows: 1, Cols: 2, Data: []uint32{0xc000_3c00}}
	require.NoError(t, f16.Check())
	f16.DequantRow(0, row)
	require.Equal(t, []float32{1, -2}, row[:2])

	f32 := QuantMatrix{DType: DTypeF32, Rows: 1, Cols: 1, Data: []uint32{math.Float32bits(-3.25)}}
	require.NoError(t, f32.Check())
	f32.DequantRow(0, row)
	require.Equal(t, float32(-3.25), row[0])
}

// randomMatrix fills a matrix of dtype with random words and scales of magnitude about 0.01.
func randomMatrix(rng *rand.Rand, dtype string, rows, cols, group int) *QuantMatrix {
	q := &QuantMatrix{DType: dtype, Rows: rows, Cols: cols, Group: group}
	q.Data = make([]uint32, rows*q.RowWords())
	for i := range q.Data {
		q.Data[i] = rng.Uint32()
		if dtype == DTypeF16 { // keep halves finite and moderate
			q.Data[i] = uint32(float16.Fromfloat32(float32(rng.NormFloat64())).Bits()) |
				uint32(float16.Fromfloat32(float32(rng.NormFloat64())).Bits())<<16
		}
		if dtype == DTypeF32 {
			q.Data[i] = math.Float32bits(float32(rng.NormFloat64()))
		}
	}
	q.Scales = make([]uint32, rows*q.ScaleWords())
	for i := range q.Scales {
		lo := float16.Fromfloat32(float32(rng.NormFloat64() * 0.01)).Bits()
		hi := float16.Fromfloat32(float32(rng.NormFloat64() * 0.01)).Bits()
		q.Scales[i] = uint32(lo) | uint32(hi)<<16
	}
	return q
}

func TestDotRowMatchesDequantRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		dtype             string
		rows, cols, group int
	}{
		{DTypeQ4, 5, 96, 32}, {DTypeQ4, 3, 40, 8}, {DTypeQ4, 2, 4096, 32}, {DTypeQ4, 4, 128, 128},
		{DTypeQ8, 5, 96, 32}, {DTypeQ8, 3, 44, 4}, {DTypeF16, 3, 70, 0}, {DTypeF32, 3, 33, 0},
	} {
		q := randomMatrix(rng, c.dtype, c.rows, c.cols, c.group)
		require.NoError(t, q.Check())
		x := make([]float32, c.cols)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		row := make([]float32, c.cols)
		for r := 0; r < c.rows; r++ {
			q.DequantRow(r, row)
			var ref, mag float64
			for i := range row {
				ref += float64(row[i]) * float64(x[i])
				mag += math.Abs(float64(row[i]) * float64(x[i]))
			}
			got := float64(q.DotRow(r, x))
			require.InDelta(t, ref, got, 1e-6+1e-5*mag, "%+v row %d", c, r)
		}
	}
}

func TestQuantMatrixCheck(t *testing.T) {
	for _, c := range []struct {
		q    QuantMatrix
		want string
	}{
		{QuantMatrix{DType: "q3", Rows: 1, Cols: 8}, "unknown dtype"},
		{QuantMatrix{DType: DTypeQ4, Rows: 0, Cols: 8, Group: 8}, "positive"},
		{QuantMatrix{DType: DTypeQ4, Rows: 1, Cols: 12, Group: 4}, "multiple of 8"},
		{QuantMatrix{DType: DTypeQ4, Rows: 1, Cols: 48, Group: 32}, "multiple of the group size 32"},
		{QuantMatrix{DType: DTypeF16, Rows: 1, Cols: 3}, "multiple of 2"},
		{QuantMatrix{DType: DTypeQ8, Rows: 2, Cols: 8, Group: 8, Data: make([]uint32, 4), Scales: make([]uint32, 1)}, "1 scale words, want 4 and 2"},
	} {
		require.ErrorContains(t, c.q.Check(), c.want, "%+v", c.q)
	}
}

func BenchmarkDotRowQ4(b *testing.B) {
	q := randomMatrix(rand.New(rand.NewPCG(1, 1)), DTypeQ4, 64, 4096, 32)
	x := make([]float32, q.Cols)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	b.SetBytes(int64(4 * (q.RowWords() + q.ScaleWords()) * q.Rows))
	var sink float32
	for b.Loop() {
		for r := 0; r < q.Rows; r++ {
			sink += q.DotRow(r, x)
		}
	}
	_ = sink
}
