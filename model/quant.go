package model

import (
	"fmt"
	"math"

	"github.com/x448/float16"
)

// Weight dtypes of a converted model (docs/FORMAT.md). Every array is a sequence of little-endian u32 words,
// the unit a WGSL shader reads; a row never shares a word with the next row.
const (
	DTypeQ4  = "q4"  // 8 unsigned nibbles u per word, value (u-8)·scale, one f16 scale per group of columns
	DTypeQ8  = "q8"  // 4 int8 q per word, value q·scale, one f16 scale per group of columns
	DTypeF16 = "f16" // 2 IEEE half floats per word, low half first
	DTypeF32 = "f32" // 1 float32 per word
)

// QuantMatrix is a [Rows, Cols] weight matrix in one of the converted dtypes, laid out as the GPU reads it.
// For q4 and q8 each group of Group columns of a row shares one f16 scale; Scales holds them two per word
// (low half = even group), each row's scales padded to an even count. f16 and f32 have no Scales.
type QuantMatrix struct {
	DType        string
	Rows, Cols   int
	Group        int      // columns per scale (q4, q8)
	Data, Scales []uint32 // [Rows * RowWords()], [Rows * ScaleWords()]
}

// ValuesPerWord is how many values of dtype one u32 word holds (0 for an unknown dtype).
func ValuesPerWord(dtype string) int {
	switch dtype {
	case DTypeQ4:
		return 8
	case DTypeQ8:
		return 4
	case DTypeF16:
		return 2
	case DTypeF32:
		return 1
	}
	return 0
}

// Quantized reports whether dtype carries per-group scales.
func Quantized(dtype string) bool { return dtype == DTypeQ4 || dtype == DTypeQ8 }

// RowWords is the number of data words per row.
func (q *QuantMatrix) RowWords() int { return q.Cols / ValuesPerWord(q.DType) }

// ScaleWords is the number of scale words per row (0 for f16 and f32).
func (q *QuantMatrix) ScaleWords() int {
	if !Quantized(q.DType) {
		return 0
	}
	return (q.Cols/q.Group + 1) / 2
}

// CheckShape reports whether a [rows, cols] matrix can be stored as dtype with the given group size.
func CheckShape(dtype string, rows, cols, group int) error {
	vpw := ValuesPerWord(dtype)
	switch {
	case vpw == 0:
		return fmt.Errorf("unknown dtype %q (want q4, q8, f16 or f32)", dtype)
	case rows <= 0 || cols <= 0:
		return fmt.Errorf("%s matrix [%d, %d]: dimensions must be positive", dtype, rows, cols)
	case cols%vpw != 0:
		return fmt.Errorf("%s matrix [%d, %d]: columns must be a multiple of %d", dtype, rows, cols, vpw)
	case Quantized(dtype) && (group <= 0 || group%vpw != 0 || cols%group != 0):
		return fmt.Errorf("%s matrix [%d, %d]: columns must be a multiple of the group size %d", dtype, rows, cols, group)
	}
	return nil
}

// Check verifies the dimensions against the dtype and the lengths of Data and Scales.
func (q *QuantMatrix) Check() error {
	if err := CheckShape(q.DType, q.Rows, q.Cols, q.Group); err != nil {
		return err
	}
	if len(q.Data) != q.Rows*q.RowWords() || len(q.Scales) != q.Rows*q.ScaleWords() {
		return fmt.Errorf("%s matrix [%d, %d]: %d data and %d scale words, want %d and %d", q.DType, q.Rows, q.Cols,
			len(q.Data), len(q.Scales), q.Rows*q.RowWords(), q.Rows*q.ScaleWords())
	}
	return nil
}

// F16ToF32 widens IEEE half-precision bits (what WGSL's unpack2x16float does to each half of a word).
func F16ToF32(h uint16) float32 { return float16.Frombits(h).Float32() }

// scale returns the f16 scale of group g from a row's scale words.
func scale(scales []uint32, g int) float32 {
	return F16ToF32(uint16(scales[g/2] >> (16 * (g % 2))))
}

// DequantRow writes row r, Cols values, to dst.
func (q *QuantMatrix) DequantRow(r int, dst []float32) {
	dst = dst[:q.Cols]
	data := q.Data[r*q.RowWords() : (r+1)*q.RowWords()]
	switch q.DType {
	case DTypeQ4:
		scales := q.Scales[r*q.ScaleWords():]
		for c0 := 0; c0 < q.Cols; c0 += q.Group {
			s := scale(scales, c0/q.Group)
			for c := c0; c < c0+q.Group; c++ {
				u := data[c/8] >> (4 * (c % 8)) & 15
				dst[c] = float32(int(u)-8) * s
			}
		}
	case DTypeQ8:
		scales := q.Scales[r*q.ScaleWords():]
		for c0 := 0; c0 < q.Cols; c0 += q.Group {
			s := scale(scales, c0/q.Group)
			for c := c0; c < c0+q.Group; c++ {
				dst[c] = float32(int8(data[c/4]>>(8*(c%4)))) * s
			}
		}
	case DTypeF16:
		for c := range dst {
			dst[c] = F16ToF32(uint16(data[c/2] >> (16 * (c % 2))))
		}
	case DTypeF32:
		for c, w := range data {
			dst[c] = math.Float32frombits(w)
		}
	default:
		panic("DequantRow: unknown dtype " + q.DType)
	}
}

// DotRow returns the dot product of row r with x [Cols] without materialising the row: the CPU twin of
// the GPU matvec kernels. Each q4/q8 group is summed in integer steps times x, then scaled once.
func (q *QuantMatrix) DotRow(r int, x []float32) float32 {
	x = x[:q.Cols]
	data := q.Data[r*q.RowWords() : (r+1)*q.RowWords()]
	var sum float32
	switch q.DType {
	case DTypeQ4:
		scales := q.Scales[r*q.ScaleWords():]
		wpg := q.Group / 8 // words per group
		for g := 0; g < q.Cols/q.Group; g++ {
			var acc float32
			for i, w := range data[g*wpg : (g+1)*wpg] {
				xs := x[(g*wpg+i)*8 : (g*wpg+i)*8+8]
				// (u-8)·x summed over the word's 8 nibbles; two partial sums for a shorter dependency chain
				a := float32(int(w&15)-8)*xs[0] + float32(int(w>>8&15)-8)*xs[2] +
					float32(int(w>>16&15)-8)*xs[4] + float32(int(w>>24&15)-8)*xs[6]
				b := float32(int(w>>4&15)-8)*xs[1] + float32(int(w>>12&15)-8)*xs[3] +
					float32(int(w>>20&15)-8)*xs[5] + float32(int(w>>28)-8)*xs[7]
				acc += a + b
			}
			sum += acc * scale(scales, g)
		}
	case DTypeQ8:
		scales := q.Scales[r*q.ScaleWords():]
		wpg := q.Group / 4
		for g := 0; g < q.Cols/q.Group; g++ {
			var acc float32
			for i, w := range data[g*wpg : (g+1)*wpg] {
				xs := x[(g*wpg+i)*4 : (g*wpg+i)*4+4]
				acc += float32(int8(w))*xs[0] + float32(int8(w>>8))*xs[1] +
					float32(int8(w>>16))*xs[2] + float32(int8(w>>24))*xs[3]
			}
			sum += acc * scale(scales, g)
		}
	case DTypeF16:
		for i, w := range data {
			sum += F16ToF32(uint16(w))*x[2*i] + F16ToF32(uint16(w>>16))*x[2*i+1]
		}
	case DTypeF32:
		for i, w := range data {
			sum += math.Float32frombits(w) * x[i]
		}
	default:
		panic("DotRow: unknown dtype " + q.DType)
	}
	return sum
}
