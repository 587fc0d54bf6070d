package safetensors

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

const testFile = "ckpt/model-00001-of-00002.safetensors"

// rawFile builds a file: 8-byte length, header bytes, dataLen zero bytes.
func rawFile(header string, dataLen int) []byte {
	b := make([]byte, 8, 8+len(header)+dataLen)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

// requireBad asserts ParseHeader fails with a one-line error naming the file,
// the tensor (when tensor != "") and containing want.
func requireBad(t *testing.T, prefix []byte, fileSize int64, tensor, want string) {
	t.Helper()
	h, err := ParseHeader(testFile, prefix, fileSize)
	require.Error(t, err)
	require.Nil(t, h)
	msg := err.Error()
	require.NotContains(t, msg, "\n")
	require.NotContains(t, msg, "\r")
	require.Contains(t, msg, testFile)
	if tensor != "" {
		require.Contains(t, msg, `"`+tensor+`"`)
	}
	require.Contains(t, msg, want)
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, testFile, e.File)
	require.Equal(t, tensor, e.Tensor)
}

func requireBadFile(t *testing.T, file []byte, tensor, want string) {
	t.Helper()
	requireBad(t, file, int64(len(file)), tensor, want)
}

func TestParseHeaderValid(t *testing.T) {
	hdr := `{"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},` +
		`"__metadata__":{"format":"pt","x":"y"},` +
		`"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},` +
		`"empty":{"dtype":"I64","shape":[0,5],"data_offsets":[16,16]},` +
		`"scalar":{"dtype":"U8","shape":[],"data_offsets":[16,17]}}` + "     "
	file := rawFile(hdr, 17)
	h, err := ParseHeader(testFile, file, int64(len(file)))
	require.NoError(t, err)
	require.Equal(t, int64(8+len(hdr)), h.DataStart)
	require.Equal(t, map[string]string{"format": "pt", "x": "y"}, h.Metadata)
	require.Equal(t, []TensorInfo{
		{Name: "a", DType: BF16, Shape: []int64{2, 2}, Begin: 0, End: 8},
		{Name: "b", DType: F32, Shape: []int64{2}, Begin: 8, End: 16},
		{Name: "empty", DType: I64, Shape: []int64{0, 5}, Begin: 16, End: 16},
		{Name: "scalar", DType: U8, Shape: []int64{}, Begin: 16, End: 17},
	}, h.Tensors)
	require.Equal(t, int64(1), h.Tensors[3].NumElements())
	require.Equal(t, int64(0), h.Tensors[2].NumElements())
}

func TestParseHeaderEmpty(t *testing.T) {
	for _, hdr := range []string{`{}`, ` { } `, `{"__metadata__":null}`, `{"__metadata__":{}}`} {
		file := rawFile(hdr, 0)
		h, err := ParseHeader(testFile, file, int64(len(file)))
		require.NoError(t, err, hdr)
		require.Empty(t, h.Tensors)
		require.NotNil(t, h.Metadata)
	}
}

func TestParseHeaderPrefixLongerThanHeader(t *testing.T) {
	// Passing the whole file (or any prefix covering 8+N) works; the data
	// section is only checked against fileSize.
	file := rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 4)
	_, err := ParseHeader(testFile, file[:len(file)-4], int64(len(file)))
	require.NoError(t, err)
	_, err = ParseHeader(testFile, file, int64(len(file)))
	require.NoError(t, err)
}

func TestParseHeaderAllDTypes(t *testing.T) {
	for _, d := range []DType{BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8E4M3, F8E5M2} {
		size := d.Size()
		require.NotZero(t, size, d)
		hdr := `{"t":{"dtype":"` + string(d) + `","shape":[3],"data_offsets":[0,` + strconv.Itoa(3*size) + `]}}`
		file := rawFile(hdr, 3*size)
		h, err := ParseHeader(testFile, file, int64(len(file)))
		require.NoError(t, err, d)
		require.Equal(t, d, h.Tensors[0].DType)
	}
	require.Zero(t, DType("F4").Size())
	require.Zero(t, DType("bf16").Size())
}

func TestParseHeaderFileTooShort(t *testing.T) {
	requireBadFile(t, nil, "", "shorter than the 8-byte")
	requireBadFile(t, []byte{1, 0, 0}, "", "file is 3 bytes")
}

func TestParseHeaderPrefixTooShortForLengthField(t *testing.T) {
	requireBad(t, []byte{1, 0, 0}, 100, "", "only 3 bytes of the 8-byte header length field were read")
}

func TestParseHeaderLengthBeyondFile(t *testing.T) {
	file := rawFile(`{}`, 0)
	binary.LittleEndian.PutUint64(file, 3)
	requireBadFile(t, file, "", "header length 3 goes beyond the end of the 10-byte file")
}

func TestParseHeaderLengthAbsurd(t *testing.T) {
	p := make([]byte, 8)
	binary.LittleEndian.PutUint64(p, 200<<20)
	requireBad(t, p, 1<<40, "", "larger than the 104857600-byte limit")
	binary.LittleEndian.PutUint64(p, 1<<63+5) // would be negative as int64
	requireBad(t, p, 1<<40, "", "larger than the")
}

func TestParseHeaderPrefixTooShortForHeader(t *testing.T) {
	file := rawFile(`{}`, 0)
	requireBad(t, file[:9], 1000, "", "only 1 bytes of the 2-byte header were read")
}

func TestParseHeaderInvalidUTF8(t *testing.T) {
	requireBadFile(t, rawFile("{\"a\xff\":{}}", 0), "", "not valid UTF-8")
}

func TestParseHeaderInvalidJSON(t *testing.T) {
	requireBadFile(t, rawFile(`{"a":`, 0), "a", "invalid JSON: unexpected end of JSON")
	requireBadFile(t, rawFile(``, 0), "", "not valid JSON")
	requireBadFile(t, rawFile(`{"a" 1}`, 0), "a", "invalid JSON")
	requireBadFile(t, rawFile(`{1:2}`, 0), "", "not valid JSON")
	requireBadFile(t, rawFile("{\n\"a\":{\"dtype\":\"U8\",,}}", 0), "a", "invalid JSON")
}

func TestParseHeaderNotObject(t *testing.T) {
	requireBadFile(t, rawFile(`[1,2]`, 0), "", "not a JSON object")
	requireBadFile(t, rawFile(`"x"`, 0), "", "not a JSON object")
	requireBadFile(t, rawFile(`null`, 0), "", "not a JSON object")
}

func TestParseHeaderTrailingData(t *testing.T) {
	requireBadFile(t, rawFile(`{} {}`, 0), "", "trailing data")
	requireBadFile(t, rawFile(`{}x`, 0), "", "trailing data")
	requireBadFile(t, rawFile("{}\x00\x00", 0), "", "trailing data")
}

func TestParseHeaderEntryNotObject(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":[1]}`, 0), "w", "entry must be an object")
	requireBadFile(t, rawFile(`{"w":"F32"}`, 0), "w", "entry must be an object")
}

func TestParseHeaderUnknownField(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"offsets":[0,1]}}`, 1), "w", `unknown field "offsets"`)
}

func TestParseHeaderDuplicateField(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}`, 1), "w", `duplicate field "dtype"`)
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]}}`, 1), "w", `duplicate field "shape"`)
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"data_offsets":[0,1]}}`, 1), "w", `duplicate field "data_offsets"`)
}

func TestParseHeaderMissingField(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"shape":[1],"data_offsets":[0,1]}}`, 1), "w", `missing field "dtype"`)
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","data_offsets":[0,1]}}`, 1), "w", `missing field "shape"`)
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1]}}`, 1), "w", `missing field "data_offsets"`)
}

func TestParseHeaderWrongFieldType(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":4,"shape":[1],"data_offsets":[0,1]}}`, 1), "w", "dtype must be a string, got a number")
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":"1","data_offsets":[0,1]}}`, 1), "w", "shape must be an array of integers")
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, 1), "w", "shape element 0 (1.5) is not an integer")
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1e0],"data_offsets":[0,1]}}`, 1), "w", "is not an integer")
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[null],"data_offsets":[0,1]}}`, 1), "w", "element 0 is null")
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999]}}`, 1), "w", "out of range")
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}}`, 1), "w", "data_offsets must have 2 elements")
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":{"a":1}}}`, 1), "w", "data_offsets must be an array")
}

func TestParseHeaderUnknownDType(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16), "w", `unknown dtype "F128"`)
	requireBadFile(t, rawFile(`{"w":{"dtype":"bf16","shape":[1],"data_offsets":[0,2]}}`, 2), "w", `unknown dtype "bf16"`)
}

func TestParseHeaderNegativeDim(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[2,-1],"data_offsets":[0,0]}}`, 0), "w", "negative shape dimension -1 at index 1")
}

func TestParseHeaderNegativeOffsets(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, 0), "w", "negative data_offsets")
}

func TestParseHeaderShapeOverflow(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, 0), "w", "element count overflows")
	requireBadFile(t, rawFile(`{"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}`, 0), "w", "overflows int64")
}

func TestParseHeaderSizeMismatch(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,6]}}`, 6), "w", "needs 12 bytes but data_offsets [0, 6] span 6")
}

func TestParseHeaderBeginAfterEnd(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}`, 4), "w", "begin 4 > end 0")
}

func TestParseHeaderOffsetsBeyondData(t *testing.T) {
	requireBadFile(t, rawFile(`{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`, 4), "w", "go beyond the 4-byte data section")
}

func TestParseHeaderOverlap(t *testing.T) {
	requireBadFile(t, rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, 6), "b", `overlap tensor "a"`)
	// Zero-size tensor inside another one's range.
	requireBadFile(t, rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}`, 4), "b", `overlap tensor "a"`)
}

func TestParseHeaderHole(t *testing.T) {
	requireBadFile(t, rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, 6), "a", "hole at [0, 2) before this first tensor")
	requireBadFile(t, rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}`, 6), "b", `hole at [2, 4) after tensor "a"`)
}

func TestParseHeaderUncoveredTrailingData(t *testing.T) {
	requireBadFile(t, rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, 5), "", "tensors cover 2 bytes but the data section has 5")
	requireBadFile(t, rawFile(`{}`, 1), "", "tensors cover 0 bytes but the data section has 1")
}

func TestParseHeaderDuplicateTensor(t *testing.T) {
	requireBadFile(t, rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, 4), "a", "duplicate tensor name")
}

func TestParseHeaderBadMetadata(t *testing.T) {
	requireBadFile(t, rawFile(`{"__metadata__":{"format":1}}`, 0), "", `__metadata__: value of "format" must be a string, got a number`)
	requireBadFile(t, rawFile(`{"__metadata__":{"a":{"b":"c"}}}`, 0), "", `must be a string`)
	requireBadFile(t, rawFile(`{"__metadata__":["a"]}`, 0), "", `__metadata__ must be an object of strings`)
	requireBadFile(t, rawFile(`{"__metadata__":{"a":"b","a":"c"}}`, 0), "", `__metadata__: duplicate key "a"`)
	requireBadFile(t, rawFile(`{"__metadata__":{},"__metadata__":{}}`, 0), "", `duplicate __metadata__ key`)
}

func TestParseHeaderErrorStaysOneLine(t *testing.T) {
	// Tensor names and file names with newlines are quoted.
	name := "a\nb"
	file := rawFile(`{"a\nb":{"dtype":"X","shape":[1],"data_offsets":[0,1]}}`, 1)
	_, err := ParseHeader("dir\n/x.safetensors", file, int64(len(file)))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "\n")
	require.Contains(t, err.Error(), `"a\nb"`)
	require.Contains(t, err.Error(), `"dir\n/x.safetensors"`)
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, name, e.Tensor)
}
