// Package safetensors is a strict reader (and a streaming writer) of
// Hugging Face safetensors checkpoints.
//
// File layout: an 8-byte little-endian u64 header length N, N bytes of JSON
// header (possibly padded with trailing spaces), then the data section. Every
// tensor's data_offsets are relative to the start of the data section.
//
// Validation follows the reference Rust implementation
// (huggingface/safetensors, safetensors/src/tensor.rs: read_metadata and
// Metadata::validate): once sorted by offsets the tensors must cover the data
// section contiguously from 0 with no holes and no overlaps, and the last end
// must equal the data section's length. On top of that this package rejects
// things serde accepts silently: duplicate keys, unknown tensor fields,
// invalid UTF-8 and trailing garbage after the header object.
package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/x448/float16"
)

// DType is a safetensors element type name as it appears in the header.
type DType string

const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
)

// Size returns the number of bytes per element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E4M3, F8E5M2:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// Valid reports whether d is a dtype this package knows.
func (d DType) Valid() bool { return d.Size() > 0 }

// BF16FromFloat32 converts f to bfloat16 bits, rounding to nearest with ties
// to even. Infinities stay infinities, finite values too large for bfloat16
// round to infinity, and NaNs stay NaN (sign and top payload bits kept, the
// quiet bit forced so that a payload living only in the dropped low bits does
// not turn into infinity).
func BF16FromFloat32(f float32) uint16 {
	bits := math.Float32bits(f)
	if bits&0x7fffffff > 0x7f800000 { // NaN
		return uint16(bits>>16) | 0x0040
	}
	bias := uint32(0x7fff) + (bits>>16)&1
	return uint16((bits + bias) >> 16)
}

// Float32FromBF16 widens bfloat16 bits to float32 (exact).
func Float32FromBF16(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

var (
	f16TableOnce sync.Once
	f16Table     []float32
)

// f16ToF32Table returns a 65536-entry table mapping every F16 bit pattern to
// its float32 value (built once from github.com/x448/float16).
func f16ToF32Table() []float32 {
	f16TableOnce.Do(func() {
		t := make([]float32, 1<<16)
		for i := range t {
			t[i] = float16.Frombits(uint16(i)).Float32()
		}
		f16Table = t
	})
	return f16Table
}

// convertToFloat32 decodes raw little-endian bytes of dtype dt into dst,
// which must have len(raw)/dt.Size() elements.
func convertToFloat32(dst []float32, raw []byte, dt DType) error {
	switch dt {
	case BF16:
		raw = raw[:2*len(dst)]
		for i := range dst {
			lo, hi := raw[2*i], raw[2*i+1]
			dst[i] = math.Float32frombits(uint32(lo)<<16 | uint32(hi)<<24)
		}
	case F16:
		t := f16ToF32Table()
		raw = raw[:2*len(dst)]
		for i := range dst {
			dst[i] = t[binary.LittleEndian.Uint16(raw[2*i:])]
		}
	case F32:
		raw = raw[:4*len(dst)]
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	default:
		return fmt.Errorf("dtype %s cannot be converted to float32 (only BF16, F16, F32)", dt)
	}
	return nil
}
