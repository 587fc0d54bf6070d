package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
)

type testTensor struct {
	info TensorInfo
	data []byte
}

// writeST writes a safetensors file with the Writer, streaming each tensor's
// bytes in small chunks.
func writeST(t *testing.T, path string, tensors []testTensor, meta map[string]string) {
	t.Helper()
	var specs []TensorInfo
	for _, tt := range tensors {
		specs = append(specs, tt.info)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, specs, meta)
	require.NoError(t, err)
	for _, tt := range tensors {
		for p := tt.data; len(p) > 0; {
			n := min(len(p), 7)
			m, err := w.Write(p[:n])
			require.NoError(t, err)
			require.Equal(t, n, m)
			p = p[n:]
		}
	}
	require.NoError(t, w.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

func bf16Bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], BF16FromFloat32(x))
	}
	return b
}

func f16Bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], float16.Fromfloat32(x).Bits())
	}
	return b
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func TestRoundTripFloat32(t *testing.T) {
	vals := []float32{0, 1, -2.5, 0.15625, 3072, -1.0 / 1024, float32(math.Inf(1)), float32(math.Inf(-1))}
	exact := []float32{0, 1, -2.5, 0.15625, 3072, -1.0 / 1024, float32(math.Inf(1)), float32(math.Inf(-1))}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	writeST(t, path, []testTensor{
		{TensorInfo{Name: "bf", DType: BF16, Shape: []int64{2, 4}}, bf16Bytes(vals)},
		{TensorInfo{Name: "h", DType: F16, Shape: []int64{8}}, f16Bytes(vals)},
		{TensorInfo{Name: "f", DType: F32, Shape: []int64{4, 2}}, f32Bytes(vals)},
		{TensorInfo{Name: "i", DType: I32, Shape: []int64{3}}, make([]byte, 12)},
		{TensorInfo{Name: "z", DType: BF16, Shape: []int64{0, 3}}, nil},
	}, map[string]string{"format": "pt"})

	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, path, f.Path)
	require.Equal(t, map[string]string{"format": "pt"}, f.Header.Metadata)
	require.Equal(t, []string{"bf", "f", "h", "i", "z"}, f.Names())
	require.Zero(t, f.Header.DataStart%8, "header padded to 8 bytes")

	for _, name := range []string{"bf", "h", "f"} {
		got, err := f.Float32(name)
		require.NoError(t, err, name)
		require.Equal(t, exact, got, name)
	}
	info, ok := f.Info("h")
	require.True(t, ok)
	require.Equal(t, TensorInfo{Name: "h", DType: F16, Shape: []int64{8}, Begin: 16, End: 32}, info)
	raw, err := f.Bytes("h")
	require.NoError(t, err)
	require.Equal(t, f16Bytes(vals), raw)
	require.Equal(t, len(raw), cap(raw))

	z, err := f.Float32("z")
	require.NoError(t, err)
	require.Empty(t, z)

	_, err = f.Float32("i")
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, `"i"`)
	require.ErrorContains(t, err, "I32")

	_, err = f.Bytes("nope")
	require.ErrorContains(t, err, `"nope"`)
	_, ok = f.Info("nope")
	require.False(t, ok)

	require.NoError(t, f.Close())
	_, err = f.Bytes("h")
	require.ErrorContains(t, err, "closed")
	require.NoError(t, f.Close())
}

func TestFloat32BF16AllPatterns(t *testing.T) {
	// Every BF16 bit pattern widens exactly (NaN payloads included).
	raw := make([]byte, 1<<17)
	for i := 0; i < 1<<16; i++ {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(i))
	}
	out := make([]float32, 1<<16)
	require.NoError(t, convertToFloat32(out, raw, BF16))
	for i, v := range out {
		require.Equal(t, uint32(i)<<16, math.Float32bits(v))
	}
	require.NoError(t, convertToFloat32(out, raw, F16))
	for i, v := range out {
		want := float16.Frombits(uint16(i)).Float32()
		require.Equal(t, math.Float32bits(want), math.Float32bits(v), "f16 %#x", i)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(filepath.Join(dir, "missing.safetensors"))
	require.ErrorContains(t, err, "missing.safetensors")

	short := filepath.Join(dir, "short.safetensors")
	require.NoError(t, os.WriteFile(short, []byte{1, 2}, 0o644))
	_, err = Open(short)
	require.ErrorContains(t, err, short)
	require.ErrorContains(t, err, "shorter than the 8-byte")

	empty := filepath.Join(dir, "empty.safetensors")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	_, err = Open(empty)
	require.ErrorContains(t, err, empty)

	bad := filepath.Join(dir, "bad.safetensors")
	require.NoError(t, os.WriteFile(bad, rawFile(`{"w":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}`, 2), 0o644))
	_, err = Open(bad)
	require.ErrorContains(t, err, bad)
	require.ErrorContains(t, err, `"w"`)
}

func TestWriterLimits(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, []TensorInfo{
		{Name: "a", DType: F32, Shape: []int64{2}},
		{Name: "b", DType: U8, Shape: []int64{3}},
	}, nil)
	require.NoError(t, err)
	require.Equal(t, int64(11), w.DataSize())
	require.Equal(t, []TensorInfo{
		{Name: "a", DType: F32, Shape: []int64{2}, Begin: 0, End: 8},
		{Name: "b", DType: U8, Shape: []int64{3}, Begin: 8, End: 11},
	}, w.Tensors())
	n, err := w.Write(make([]byte, 12))
	require.Error(t, err)
	require.Zero(t, n)
	_, err = w.Write(make([]byte, 9))
	require.NoError(t, err)
	err = w.Close()
	require.ErrorContains(t, err, "only 9 of 11")
	require.ErrorContains(t, err, `"b"`)
	_, err = w.Write([]byte{1})
	require.Error(t, err)

	// Over-long single write after partial data.
	buf.Reset()
	w, err = NewWriter(&buf, []TensorInfo{{Name: "a", DType: U8, Shape: []int64{2}}}, nil)
	require.NoError(t, err)
	_, err = w.Write([]byte{1})
	require.NoError(t, err)
	_, err = w.Write([]byte{1, 2})
	require.ErrorContains(t, err, "exceeds the declared data size 2")
	_, err = w.Write([]byte{2})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	h, err := ParseHeader("buf", buf.Bytes(), int64(buf.Len()))
	require.NoError(t, err)
	require.Len(t, h.Tensors, 1)
}

func TestWriterRejectsBadSpecs(t *testing.T) {
	for _, tc := range []struct {
		specs []TensorInfo
		want  string
	}{
		{[]TensorInfo{{Name: "a", DType: "F128", Shape: []int64{1}}}, `unknown dtype "F128"`},
		{[]TensorInfo{{Name: "a", DType: U8, Shape: []int64{-1}}}, "negative shape"},
		{[]TensorInfo{{Name: "a", DType: U8}, {Name: "a", DType: U8}}, "duplicate"},
		{[]TensorInfo{{Name: "__metadata__", DType: U8}}, "reserved"},
		{[]TensorInfo{{Name: "a\xff", DType: U8}}, "UTF-8"},
		{[]TensorInfo{{Name: "a", DType: F64, Shape: []int64{1 << 62}}}, "overflows"},
		{[]TensorInfo{{Name: "a", DType: U8, Shape: []int64{1 << 62}}, {Name: "b", DType: U8, Shape: []int64{1 << 62}}}, "overflows"},
	} {
		_, err := NewWriter(&bytes.Buffer{}, tc.specs, nil)
		require.ErrorContains(t, err, tc.want)
		require.ErrorContains(t, err, strconv.Quote(tc.specs[len(tc.specs)-1].Name))
	}
}

func TestWriterEscapesNames(t *testing.T) {
	var buf bytes.Buffer
	names := []string{`q"uote`, "new\nline", "<html>&", "ünï"}
	var specs []TensorInfo
	for _, n := range names {
		specs = append(specs, TensorInfo{Name: n, DType: U8, Shape: []int64{1}})
	}
	w, err := NewWriter(&buf, specs, map[string]string{"k\"": "v\n"})
	require.NoError(t, err)
	_, err = w.Write([]byte{1, 2, 3, 4})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	h, err := ParseHeader("buf", buf.Bytes(), int64(buf.Len()))
	require.NoError(t, err)
	for i, n := range names {
		require.Equal(t, n, h.Tensors[i].Name)
	}
	require.Equal(t, map[string]string{"k\"": "v\n"}, h.Metadata)
}

func BenchmarkFloat32(b *testing.B) {
	const n = 1 << 24 // 16M elements
	for _, dt := range []DType{BF16, F16, F32} {
		raw := make([]byte, n*dt.Size())
		for i := range raw {
			raw[i] = byte(i * 7)
		}
		dst := make([]float32, n)
		b.Run(string(dt), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if err := convertToFloat32(dst, raw, dt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
