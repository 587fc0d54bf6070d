package safetensors

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// fuzzSeeds are whole files: valid ones and one of each kind of bad header.
// The same inputs are committed under testdata/fuzz/FuzzParseHeader.
func fuzzSeeds() [][]byte {
	withLen := func(n uint64, rest string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, n)
		return append(b, rest...)
	}
	return [][]byte{
		// valid
		rawFile(`{}`, 0),
		rawFile(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}    `, 12),
		rawFile(`{"z":{"dtype":"I64","shape":[0],"data_offsets":[0,0]},"s":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"e":{"dtype":"F8_E4M3","shape":[1,1],"data_offsets":[1,2]}}`, 2),
		// bad
		nil,
		{1, 2, 3},
		withLen(100, `{}`),
		withLen(200<<20, `{}`),
		rawFile("{\"\xff\":1}", 0),
		rawFile(`{"a":`, 0),
		rawFile(`[]`, 0),
		rawFile(`{}x`, 0),
		rawFile(`{"a":1}`, 0),
		rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":0}}`, 1),
		rawFile(`{"a":{"dtype":"U8","shape":[1]}}`, 1),
		rawFile(`{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1),
		rawFile(`{"a":{"dtype":1,"shape":[1],"data_offsets":[0,1]}}`, 1),
		rawFile(`{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, 1),
		rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, 1),
		rawFile(`{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, 1),
		rawFile(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, 1),
		rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,1]}}`, 1),
		rawFile(`{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, 0),
		rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4),
		rawFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}`, 1),
		rawFile(`{"a":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}}`, 4),
		rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, 6),
		rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}`, 6),
		rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, 4),
		rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, 3),
		rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2),
		rawFile(`{"__metadata__":{"a":1}}`, 0),
		rawFile(`{"__metadata__":{"a":"b","a":"c"}}`, 0),
		rawFile(`{"__metadata__":{},"__metadata__":{}}`, 0),
	}
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	const name = "fuzz.safetensors"
	f.Fuzz(func(t *testing.T, file []byte) {
		size := int64(len(file))
		h, err := ParseHeader(name, file, size)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("multi-line error: %q", msg)
			}
			if !strings.Contains(msg, name) {
				t.Fatalf("error does not name the file: %q", msg)
			}
			return
		}
		if h.DataStart < 8 || h.DataStart > size {
			t.Fatalf("DataStart %d outside file of %d bytes", h.DataStart, size)
		}
		if h.Metadata == nil {
			t.Fatal("nil Metadata")
		}
		dataLen := size - h.DataStart
		seen := map[string]bool{}
		var pos int64
		for i, ti := range h.Tensors {
			if seen[ti.Name] {
				t.Fatalf("duplicate tensor %q", ti.Name)
			}
			seen[ti.Name] = true
			if ti.Begin < 0 || ti.Begin > ti.End || ti.End > dataLen {
				t.Fatalf("tensor %q [%d,%d) outside data section of %d bytes", ti.Name, ti.Begin, ti.End, dataLen)
			}
			if i > 0 && ti.Begin < h.Tensors[i-1].Begin {
				t.Fatalf("tensors not sorted by Begin")
			}
			if ti.Begin < pos {
				t.Fatalf("tensor %q [%d,%d) overlaps the previous one ending at %d", ti.Name, ti.Begin, ti.End, pos)
			}
			if ti.Begin != pos {
				t.Fatalf("hole before tensor %q", ti.Name)
			}
			pos = ti.End
			if ti.NumElements()*int64(ti.DType.Size()) != ti.ByteSize() {
				t.Fatalf("tensor %q size mismatch", ti.Name)
			}
		}
		if pos != dataLen {
			t.Fatalf("tensors cover %d of %d data bytes", pos, dataLen)
		}

		// Rewriting with the Writer must give back the same header.
		var buf bytes.Buffer
		w, err := NewWriter(&buf, h.Tensors, h.Metadata)
		if err != nil {
			t.Fatalf("NewWriter rejects a parsed header: %v", err)
		}
		if _, err := w.Write(file[h.DataStart:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		h2, err := ParseHeader(name, buf.Bytes(), int64(buf.Len()))
		if err != nil {
			t.Fatalf("re-parse of rewritten file: %v", err)
		}
		if len(h2.Tensors) != len(h.Tensors) || len(h2.Metadata) != len(h.Metadata) {
			t.Fatalf("rewritten header differs")
		}
		for i := range h.Tensors {
			a, b := h.Tensors[i], h2.Tensors[i]
			if a.Name != b.Name || a.DType != b.DType || a.Begin != b.Begin || a.End != b.End || len(a.Shape) != len(b.Shape) {
				t.Fatalf("rewritten tensor %d differs: %+v vs %+v", i, a, b)
			}
			for j := range a.Shape {
				if a.Shape[j] != b.Shape[j] {
					t.Fatalf("rewritten tensor %q shape differs", a.Name)
				}
			}
		}
		for k, v := range h.Metadata {
			if h2.Metadata[k] != v {
				t.Fatalf("rewritten metadata %q differs", k)
			}
		}
		if !bytes.Equal(buf.Bytes()[h2.DataStart:], file[h.DataStart:]) {
			t.Fatal("rewritten data differs")
		}
	})
}
