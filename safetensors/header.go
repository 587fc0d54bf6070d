package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header ParseHeader accepts (100 MiB).
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header key holding the string->string metadata.
const metadataKey = "__metadata__"

// TensorInfo describes one tensor. Begin and End are byte offsets relative to
// the start of the data section.
type TensorInfo struct {
	Name       string
	DType      DType
	Shape      []int64
	Begin, End int64
}

// NumElements returns the product of the shape (1 for a scalar). It does not
// check for overflow; headers returned by ParseHeader never overflow.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// ByteSize returns End - Begin.
func (t TensorInfo) ByteSize() int64 { return t.End - t.Begin }

// Header is a parsed and validated safetensors header.
type Header struct {
	Tensors   []TensorInfo      // sorted by Begin (then End, then Name)
	Metadata  map[string]string // never nil
	DataStart int64             // absolute file offset of the data section (8 + N)
}

// Error is the error type of every validation failure of this package. Its
// message is always a single line.
type Error struct {
	File   string // file the problem is in
	Tensor string // tensor concerned, "" if none
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("safetensors: ")
	b.WriteString(oneLine(e.File))
	if e.Tensor != "" {
		b.WriteString(": tensor ")
		b.WriteString(strconv.Quote(e.Tensor))
	}
	b.WriteString(": ")
	b.WriteString(oneLine(e.Msg))
	return b.String()
}

// oneLine quotes s when it holds control characters (newlines included) so
// that error messages always stay on one line.
func oneLine(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return strconv.Quote(s)
		}
	}
	return s
}

func errf(file, tensor, format string, args ...any) error {
	return &Error{File: file, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

// ParseHeader parses and validates the header of a safetensors file.
//
// name is only used in error messages (normally the file path). prefix holds
// the file's first bytes: at least 8+N of them, where N is the header length
// stored in the first 8; extra bytes are ignored. fileSize is the total size
// of the file, against which the tensors' offsets are checked.
//
// The rules are those of the reference implementation (Rust crate
// safetensors, read_metadata + Metadata::validate): header length at most
// MaxHeaderSize and within the file; UTF-8 JSON object; every dtype known;
// shape × dtype size == end - begin without overflow; and, sorted by offsets,
// the tensors tile the data section exactly: the first begins at 0, each
// begins where the previous one ended (no holes, no overlaps) and the last
// ends at the end of the file. Zero-element tensors (begin == end) are
// allowed. Stricter than the reference: duplicate keys anywhere, unknown or
// duplicate tensor fields, non-string metadata values and trailing
// non-whitespace after the header object are errors.
func ParseHeader(name string, prefix []byte, fileSize int64) (*Header, error) {
	if fileSize < 8 {
		return nil, errf(name, "", "file is %d bytes, shorter than the 8-byte header length field", max(fileSize, 0))
	}
	if len(prefix) < 8 {
		return nil, errf(name, "", "only %d bytes of the 8-byte header length field were read", len(prefix))
	}
	n64 := binary.LittleEndian.Uint64(prefix[:8])
	if n64 > MaxHeaderSize {
		return nil, errf(name, "", "header length %d is larger than the %d-byte limit", n64, MaxHeaderSize)
	}
	n := int64(n64)
	if n > fileSize-8 {
		return nil, errf(name, "", "header length %d goes beyond the end of the %d-byte file", n, fileSize)
	}
	if int64(len(prefix)) < 8+n {
		return nil, errf(name, "", "only %d bytes of the %d-byte header were read", int64(len(prefix))-8, n)
	}
	raw := prefix[8 : 8+n]
	if !utf8.Valid(raw) {
		return nil, errf(name, "", "header is not valid UTF-8")
	}
	h := &Header{Metadata: map[string]string{}, DataStart: 8 + n}
	if err := parseHeaderJSON(name, raw, h); err != nil {
		return nil, err
	}
	if err := h.validate(name, fileSize-h.DataStart); err != nil {
		return nil, err
	}
	return h, nil
}

// jsonErr turns a decoder error into a one-line description.
func jsonErr(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON"
	}
	return err.Error()
}

func parseHeaderJSON(name string, raw []byte, h *Header) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return errf(name, "", "header is not valid JSON: %s", jsonErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errf(name, "", "header is not a JSON object (starts with %s)", describeToken(tok))
	}
	seen := map[string]bool{}
	sawMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errf(name, "", "header is not valid JSON: %s", jsonErr(err))
		}
		key, ok := tok.(string)
		if !ok { // cannot happen with encoding/json, kept for safety
			return errf(name, "", "header object key is %s, not a string", describeToken(tok))
		}
		if key == metadataKey {
			if sawMeta {
				return errf(name, "", "duplicate %s key", metadataKey)
			}
			sawMeta = true
			m, err := decodeStringMap(dec, name, "", metadataKey)
			if err != nil {
				return err
			}
			if m != nil {
				h.Metadata = m
			}
			continue
		}
		if seen[key] {
			return errf(name, key, "duplicate tensor name")
		}
		seen[key] = true
		ti, err := decodeTensor(dec, name, key)
		if err != nil {
			return err
		}
		h.Tensors = append(h.Tensors, ti)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return errf(name, "", "header is not valid JSON: %s", jsonErr(err))
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return errf(name, "", "header has trailing data after the JSON object: %s", jsonErr(err))
		}
		return errf(name, "", "header has trailing data after the JSON object (%s)", describeToken(tok))
	}
	return nil
}

func describeToken(tok any) string {
	switch v := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

// decodeStringMap reads a JSON object of string values (or null, returning a
// nil map), rejecting duplicate keys. what names the object in errors.
func decodeStringMap(dec *json.Decoder, file, tensor, what string) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, errf(file, tensor, "%s: invalid JSON: %s", what, jsonErr(err))
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errf(file, tensor, "%s must be an object of strings, got %s", what, describeToken(tok))
	}
	m := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errf(file, tensor, "%s: invalid JSON: %s", what, jsonErr(err))
		}
		k, _ := tok.(string)
		if _, dup := m[k]; dup {
			return nil, errf(file, tensor, "%s: duplicate key %q", what, k)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, errf(file, tensor, "%s: invalid JSON: %s", what, jsonErr(err))
		}
		v, ok := tok.(string)
		if !ok {
			return nil, errf(file, tensor, "%s: value of %q must be a string, got %s", what, k, describeToken(tok))
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, errf(file, tensor, "%s: invalid JSON: %s", what, jsonErr(err))
	}
	return m, nil
}

func decodeTensor(dec *json.Decoder, file, name string) (TensorInfo, error) {
	ti := TensorInfo{Name: name}
	bad := func(format string, args ...any) (TensorInfo, error) {
		return TensorInfo{}, errf(file, name, format, args...)
	}
	tok, err := dec.Token()
	if err != nil {
		return bad("invalid JSON: %s", jsonErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return bad("entry must be an object, got %s", describeToken(tok))
	}
	var haveDType, haveShape, haveOffsets bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad("invalid JSON: %s", jsonErr(err))
		}
		field, _ := tok.(string)
		switch field {
		case "dtype":
			if haveDType {
				return bad("duplicate field %q", field)
			}
			haveDType = true
			tok, err := dec.Token()
			if err != nil {
				return bad("invalid JSON: %s", jsonErr(err))
			}
			s, ok := tok.(string)
			if !ok {
				return bad("dtype must be a string, got %s", describeToken(tok))
			}
			if !DType(s).Valid() {
				return bad("unknown dtype %q", s)
			}
			ti.DType = DType(s)
		case "shape":
			if haveShape {
				return bad("duplicate field %q", field)
			}
			haveShape = true
			dims, err := decodeIntArray(dec, file, name, "shape")
			if err != nil {
				return TensorInfo{}, err
			}
			for i, d := range dims {
				if d < 0 {
					return bad("negative shape dimension %d at index %d", d, i)
				}
			}
			ti.Shape = dims
		case "data_offsets":
			if haveOffsets {
				return bad("duplicate field %q", field)
			}
			haveOffsets = true
			offs, err := decodeIntArray(dec, file, name, "data_offsets")
			if err != nil {
				return TensorInfo{}, err
			}
			if len(offs) != 2 {
				return bad("data_offsets must have 2 elements, has %d", len(offs))
			}
			if offs[0] < 0 || offs[1] < 0 {
				return bad("negative data_offsets [%d, %d]", offs[0], offs[1])
			}
			ti.Begin, ti.End = offs[0], offs[1]
		default:
			return bad("unknown field %q", field)
		}
	}
	if _, err := dec.Token(); err != nil {
		return bad("invalid JSON: %s", jsonErr(err))
	}
	switch {
	case !haveDType:
		return bad("missing field \"dtype\"")
	case !haveShape:
		return bad("missing field \"shape\"")
	case !haveOffsets:
		return bad("missing field \"data_offsets\"")
	}
	return ti, nil
}

// decodeIntArray reads a JSON array of integers that fit in int64.
func decodeIntArray(dec *json.Decoder, file, tensor, what string) ([]int64, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, errf(file, tensor, "%s: invalid JSON: %s", what, jsonErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errf(file, tensor, "%s must be an array of integers, got %s", what, describeToken(tok))
	}
	out := []int64{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errf(file, tensor, "%s: invalid JSON: %s", what, jsonErr(err))
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, errf(file, tensor, "%s must be an array of integers, element %d is %s", what, len(out), describeToken(tok))
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return nil, errf(file, tensor, "%s element %d (%s) is out of range", what, len(out), num)
			}
			return nil, errf(file, tensor, "%s element %d (%s) is not an integer", what, len(out), num)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, errf(file, tensor, "%s: invalid JSON: %s", what, jsonErr(err))
	}
	return out, nil
}

// checkTensorSize verifies that shape × dtype size fits in int64 and, when
// checkOffsets, equals End - Begin. It returns the byte size.
func checkTensorSize(file string, t *TensorInfo, checkOffsets bool) (int64, error) {
	size := int64(t.DType.Size())
	if size == 0 {
		return 0, errf(file, t.Name, "unknown dtype %q", string(t.DType))
	}
	n := int64(1)
	for i, d := range t.Shape {
		if d < 0 {
			return 0, errf(file, t.Name, "negative shape dimension %d at index %d", d, i)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, errf(file, t.Name, "shape %v: element count overflows int64", t.Shape)
		}
		n *= d
	}
	if n > math.MaxInt64/size {
		return 0, errf(file, t.Name, "shape %v × %d bytes (%s) overflows int64", t.Shape, size, t.DType)
	}
	bytes := n * size
	if checkOffsets && t.End-t.Begin != bytes {
		return 0, errf(file, t.Name, "shape %v of %s needs %d bytes but data_offsets [%d, %d] span %d",
			t.Shape, t.DType, bytes, t.Begin, t.End, t.End-t.Begin)
	}
	return bytes, nil
}

// validate checks the tensors against each other and the data section
// length, then sorts them by offsets. See ParseHeader for the rules.
func (h *Header) validate(file string, dataLen int64) error {
	for i := range h.Tensors {
		t := &h.Tensors[i]
		if t.Begin > t.End {
			return errf(file, t.Name, "data_offsets begin %d > end %d", t.Begin, t.End)
		}
		if t.End > dataLen {
			return errf(file, t.Name, "data_offsets [%d, %d] go beyond the %d-byte data section", t.Begin, t.End, dataLen)
		}
		if _, err := checkTensorSize(file, t, true); err != nil {
			return err
		}
	}
	slices.SortFunc(h.Tensors, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Begin, b.Begin), cmp.Compare(a.End, b.End), strings.Compare(a.Name, b.Name))
	})
	// Reference rule (Metadata::validate): sorted by offsets, each tensor
	// starts exactly where the previous one ended, starting at 0.
	var pos int64
	prev := ""
	for i, t := range h.Tensors {
		switch {
		case t.Begin < pos:
			return errf(file, t.Name, "data_offsets [%d, %d] overlap tensor %q which ends at %d", t.Begin, t.End, prev, pos)
		case t.Begin > pos && i == 0:
			return errf(file, t.Name, "data section has a %d-byte hole at [0, %d) before this first tensor", t.Begin, t.Begin)
		case t.Begin > pos:
			return errf(file, t.Name, "data section has a %d-byte hole at [%d, %d) after tensor %q", t.Begin-pos, pos, t.Begin, prev)
		}
		pos = t.End
		prev = t.Name
	}
	if pos != dataLen {
		return errf(file, "", "tensors cover %d bytes but the data section has %d (trailing bytes not covered by any tensor)", pos, dataLen)
	}
	return nil
}
