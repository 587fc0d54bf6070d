package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Writer streams a safetensors file: NewWriter writes the header, then the
// tensors' bytes are written in the order of the specs passed to NewWriter.
type Writer struct {
	w        io.Writer
	tensors  []TensorInfo
	total    int64 // declared data section size
	written  int64
	closed   bool
	writeErr error // sticky error from the underlying writer
}

// NewWriter computes every tensor's offsets from its name, dtype and shape
// (in the order given, packed with no gaps; Begin/End in the specs are
// ignored), writes the 8-byte length and the JSON header (padded with spaces
// to a multiple of 8 bytes, as the reference writer does) to w, and returns
// a Writer expecting exactly the data section's bytes.
func NewWriter(w io.Writer, tensors []TensorInfo, metadata map[string]string) (*Writer, error) {
	const name = "writer"
	out := make([]TensorInfo, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i, t := range tensors {
		if t.Name == metadataKey {
			return nil, errf(name, t.Name, "reserved name")
		}
		if seen[t.Name] {
			return nil, errf(name, t.Name, "duplicate tensor name")
		}
		seen[t.Name] = true
		if !utf8.ValidString(t.Name) {
			return nil, errf(name, t.Name, "name is not valid UTF-8")
		}
		t.Shape = slices.Clone(t.Shape)
		if t.Shape == nil {
			t.Shape = []int64{}
		}
		size, err := checkTensorSize(name, &t, false)
		if err != nil {
			return nil, err
		}
		if off > (1<<63-1)-size {
			return nil, errf(name, t.Name, "total data size overflows int64")
		}
		t.Begin, t.End = off, off+size
		off += size
		out[i] = t
	}

	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, errf(name, "", "metadata entry %q is not valid UTF-8", k)
		}
	}

	var hdr bytes.Buffer
	hdr.WriteByte('{')
	first := true
	comma := func() {
		if !first {
			hdr.WriteByte(',')
		}
		first = false
	}
	if len(metadata) > 0 {
		comma()
		writeJSONString(&hdr, metadataKey)
		hdr.WriteString(":{")
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				hdr.WriteByte(',')
			}
			writeJSONString(&hdr, k)
			hdr.WriteByte(':')
			writeJSONString(&hdr, metadata[k])
		}
		hdr.WriteByte('}')
	}
	for _, t := range out {
		comma()
		writeJSONString(&hdr, t.Name)
		hdr.WriteString(`:{"dtype":`)
		writeJSONString(&hdr, string(t.DType))
		hdr.WriteString(`,"shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(strconv.FormatInt(d, 10))
		}
		fmt.Fprintf(&hdr, `],"data_offsets":[%d,%d]}`, t.Begin, t.End)
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	if hdr.Len() > MaxHeaderSize {
		return nil, errf(name, "", "header of %d bytes is larger than the %d-byte limit", hdr.Len(), MaxHeaderSize)
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(hdr.Len()))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return nil, fmt.Errorf("safetensors: writing header: %w", err)
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return nil, fmt.Errorf("safetensors: writing header: %w", err)
	}
	return &Writer{w: w, tensors: out, total: off}, nil
}

// writeJSONString writes s as a JSON string without HTML escaping.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // cannot fail for a string
	b.Truncate(b.Len() - 1) // Encode appends '\n'
}

// Tensors returns the tensors with their computed offsets, in write order.
func (w *Writer) Tensors() []TensorInfo { return slices.Clone(w.tensors) }

// DataSize returns the declared size of the data section.
func (w *Writer) DataSize() int64 { return w.total }

// Write writes tensor data. A write that would go past the declared total is
// refused whole (nothing is written) with an error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("safetensors: write after Close")
	}
	if w.writeErr != nil {
		return 0, w.writeErr
	}
	if int64(len(p)) > w.total-w.written {
		return 0, fmt.Errorf("safetensors: write of %d bytes exceeds the declared data size %d (%d already written)", len(p), w.total, w.written)
	}
	n, err := w.w.Write(p)
	w.written += int64(n)
	if err != nil {
		w.writeErr = fmt.Errorf("safetensors: %w", err)
		return n, w.writeErr
	}
	return n, nil
}

// Close checks that exactly the declared number of data bytes was written.
// It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.writeErr != nil {
		return w.writeErr
	}
	if w.written != w.total {
		missing := ""
		for _, t := range w.tensors {
			if t.End > w.written {
				missing = t.Name
				break
			}
		}
		return fmt.Errorf("safetensors: only %d of %d declared data bytes were written (tensor %q incomplete)", w.written, w.total, missing)
	}
	return nil
}

// WriteIndex writes a model.safetensors.index.json file:
// {"metadata":{"total_size":N},"weight_map":{tensor:file,...}}.
func WriteIndex(path string, weightMap map[string]string, totalSize int64) error {
	if weightMap == nil {
		weightMap = map[string]string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	type meta struct {
		TotalSize int64 `json:"total_size"`
	}
	err := enc.Encode(struct {
		Metadata  meta              `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{meta{totalSize}, weightMap})
	if err != nil {
		return fmt.Errorf("safetensors: %s: %w", oneLine(path), err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}
