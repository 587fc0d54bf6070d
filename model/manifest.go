package model

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/ilmweb/ilmweb/internal/strictjson"
)

// A converted model directory (docs/FORMAT.md): manifest.json, content-addressed weight shards and copies
// of the tokenizer and config files. This file reads and checks the manifest; load_converted.go loads it.

const (
	ManifestFile    = "manifest.json"
	ManifestFormat  = "ilmweb"
	ManifestVersion = 1
	// ArrayAlign is the alignment of every array inside its shard.
	ArrayAlign = 256
	// MaxArrayBytes is the largest array a part may hold: WebGPU's default maxStorageBufferBindingSize.
	MaxArrayBytes = 128 << 20
)

// Limits on a manifest, checked before anything it lists is read or fetched, so a hostile model host cannot
// make a reader hold or store more than these. They are far above InternLM3-8B's needs (a 300 KB manifest,
// 6 files, ~80 shards of 64 MiB in q4, ~500 in f32). The page's download manager applies the same ones
// (MANIFEST_LIMITS in web/download.js; e2e/hostile_test.go checks that they agree).
const (
	MaxManifestBytes = 16 << 20
	MaxFiles         = 32
	MaxFileBytes     = MaxTokenizerModelBytes // the largest of the small files
	MaxShards        = 4096
	MaxShardBytes    = 128 << 20 // the page holds a shard in memory while it hashes and uploads it
	MaxTotalBytes    = 64 << 30  // Σ shards
	MaxTensors       = 1 << 14
)

// Manifest is manifest.json.
type Manifest struct {
	Format     string          `json:"format"`  // "ilmweb"
	Version    int             `json:"version"` // 1
	Source     string          `json:"source"`  // where the weights came from (informational)
	Config     json.RawMessage `json:"config"`  // the HF config.json object, verbatim
	Quant      QuantScheme     `json:"quant"`
	Files      []FileEntry     `json:"files"`  // tokenizer, config and prompt files beside the manifest
	Shards     []FileEntry     `json:"shards"` // weight shards; a part's Shard indexes this list
	Tensors    []TensorEntry   `json:"tensors"`
	TotalBytes int64           `json:"total_bytes"` // Σ shards[].bytes

	ModelConfig *Config `json:"-"` // Config, parsed and validated
}

// QuantScheme records how the converter was asked to store the weights.
type QuantScheme struct {
	Scheme    string `json:"scheme"`     // dtype of 2-D tensors
	GroupSize int    `json:"group_size"` // columns per scale of q4/q8 tensors
	LMHead    string `json:"lm_head"`    // dtype of lm_head.weight
}

// FileEntry is a file of the directory with its size and lowercase hex sha256.
type FileEntry struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// TensorEntry is one tensor: Shape is [n] (1-D, always f32, one row) or [out, in] (rows are outputs).
// Parts are row blocks in row order, each inside one shard.
type TensorEntry struct {
	Name  string      `json:"name"` // HF name
	DType string      `json:"dtype"`
	Shape []int       `json:"shape"`
	Parts []Part      `json:"parts"`
	Error TensorError `json:"error"`
}

// Part holds rows [Rows[0], Rows[1]) of a tensor: Data (and for q4/q8 Scales) at byte spans of a shard.
type Part struct {
	Rows   RowRange `json:"rows"`
	Shard  int      `json:"shard"`
	Data   Span     `json:"data"`
	Scales *Span    `json:"scales,omitempty"`
}

// RowRange is [first row, end row), a JSON array of exactly two integers.
type RowRange [2]int

func (r *RowRange) UnmarshalJSON(b []byte) error {
	var s []int
	if err := json.Unmarshal(b, &s); err != nil || len(s) != 2 {
		return fmt.Errorf("rows must be [first, end], got %s", b)
	}
	*r = RowRange(s)
	return nil
}

// Span is a byte range of a shard.
type Span struct {
	Offset int64 `json:"offset"`
	Bytes  int64 `json:"bytes"`
}

// TensorError is the conversion error: RMSE / RMS of the original tensor, and the largest |error|.
type TensorError struct {
	RelRMSE float64 `json:"rel_rmse"`
	MaxAbs  float64 `json:"max_abs"`
}

// Rows is the number of rows (1 for a 1-D tensor) and Cols the number of values per row.
func (t *TensorEntry) Rows() int {
	if len(t.Shape) == 1 {
		return 1
	}
	return t.Shape[0]
}

func (t *TensorEntry) Cols() int { return t.Shape[len(t.Shape)-1] }

// RowBytes returns the bytes one row takes in the data and scales arrays.
func (t *TensorEntry) RowBytes(group int) (data, scales int64) {
	q := QuantMatrix{DType: t.DType, Cols: t.Cols(), Group: group}
	return 4 * int64(q.RowWords()), 4 * int64(q.ScaleWords())
}

// ShardName is the file name of shard i with the given sha256: shard-NNNNN-<first 16 hex digits>.bin.
func ShardName(i int, sha256 string) string { return fmt.Sprintf("shard-%05d-%s.bin", i, sha256[:16]) }

// Tensor returns the named tensor entry, or nil.
func (m *Manifest) Tensor(name string) *TensorEntry {
	for i := range m.Tensors {
		if m.Tensors[i].Name == name {
			return &m.Tensors[i]
		}
	}
	return nil
}

// ParseManifest decodes and checks manifest.json; name is used in errors, which are one line and name the
// field or tensor at fault. It checks the format and version, that there are no unknown or duplicate
// keys, the config, the file and shard lists (names, sizes, sha256), and for every tensor its dtype
// against its shape and group size, that its parts cover its rows in order, and that every array has the
// size its rows need, starts 256-byte aligned, stays inside its shard, is at most MaxArrayBytes and
// overlaps no other array.
func ParseManifest(name string, data []byte) (*Manifest, error) {
	fail := func(format string, args ...any) (*Manifest, error) {
		return nil, fmt.Errorf("%s: %s", name, oneLine(fmt.Sprintf(format, args...)))
	}
	if len(data) > MaxManifestBytes {
		return fail("%d bytes, over the limit of %d", len(data), MaxManifestBytes)
	}
	if err := strictjson.Check("manifest", data, reflect.TypeFor[Manifest]()); err != nil {
		return fail("%v", err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fail("invalid manifest JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail("invalid manifest JSON: trailing data after the object")
	}
	if m.Format != ManifestFormat {
		return fail("field \"format\": want %q, got %q", ManifestFormat, m.Format)
	}
	if m.Version != ManifestVersion {
		return fail("field \"version\": unsupported version %d (this build reads %d)", m.Version, ManifestVersion)
	}
	if len(m.Config) == 0 || m.Config[0] != '{' {
		return fail("field \"config\": want the config.json object")
	}
	cfg, err := ParseConfig(`field "config"`, m.Config)
	if err != nil {
		return fail("%v", err)
	}
	m.ModelConfig = cfg
	if err := m.checkQuant(); err != nil {
		return fail("%v", err)
	}
	if err := checkFiles("files", m.Files, false, MaxFiles, MaxFileBytes); err != nil {
		return fail("%v", err)
	}
	if err := checkFiles("shards", m.Shards, true, MaxShards, MaxShardBytes); err != nil {
		return fail("%v", err)
	}
	var total int64
	for _, s := range m.Shards {
		total += s.Bytes // at most MaxShards × MaxShardBytes: no overflow
	}
	if total > MaxTotalBytes {
		return fail("field \"shards\": %d bytes in all, over the limit of %d", total, MaxTotalBytes)
	}
	if m.TotalBytes != total {
		return fail("field \"total_bytes\": %d, but the shards add up to %d", m.TotalBytes, total)
	}
	if len(m.Tensors) == 0 {
		return fail("field \"tensors\": empty")
	}
	if len(m.Tensors) > MaxTensors {
		return fail("field \"tensors\": %d tensors, over the limit of %d", len(m.Tensors), MaxTensors)
	}
	seen := map[string]bool{}
	var arrays []array
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if seen[t.Name] {
			return fail("tensor %q: listed twice", t.Name)
		}
		seen[t.Name] = true
		a, err := m.checkTensor(t)
		if err != nil {
			return fail("tensor %q: %v", t.Name, err)
		}
		arrays = append(arrays, a...)
	}
	// No two arrays of a shard may overlap.
	slices.SortFunc(arrays, func(a, b array) int {
		return cmp.Or(cmp.Compare(a.shard, b.shard), cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.tensor, b.tensor), cmp.Compare(a.what, b.what))
	})
	for i := 1; i < len(arrays); i++ {
		p, a := arrays[i-1], arrays[i]
		if p.shard == a.shard && a.Offset < p.Offset+p.Bytes {
			return fail("tensor %q: %s overlaps %s of tensor %q in shard %d", a.tensor, a.what, p.what, p.tensor, a.shard)
		}
	}
	return &m, nil
}

// array is one data or scales array, for the overlap check.
type array struct {
	Span
	shard        int
	tensor, what string
}

func (m *Manifest) checkQuant() error {
	q := m.Quant
	for _, f := range []struct{ name, v string }{{"scheme", q.Scheme}, {"lm_head", q.LMHead}} {
		if ValuesPerWord(f.v) == 0 {
			return fmt.Errorf("field \"quant.%s\": unknown dtype %q (want q4, q8, f16 or f32)", f.name, f.v)
		}
	}
	if q.GroupSize <= 0 || q.GroupSize%8 != 0 || q.GroupSize > 1<<20 {
		return fmt.Errorf("field \"quant.group_size\": %d is not a positive multiple of 8", q.GroupSize)
	}
	return nil
}

// checkFiles checks the count, names (plain file names, unique; shards named by ShardName), sizes and sha256.
func checkFiles(field string, files []FileEntry, shards bool, maxCount int, maxBytes int64) error {
	if len(files) > maxCount {
		return fmt.Errorf("field %q: %d entries, over the limit of %d", field, len(files), maxCount)
	}
	seen := map[string]bool{}
	for i, f := range files {
		if len(f.SHA256) != 64 || strings.ToLower(f.SHA256) != f.SHA256 || !isHex(f.SHA256) {
			return fmt.Errorf("field %q: %q: sha256 %q is not 64 lowercase hex digits", field, f.Name, f.SHA256)
		}
		switch {
		case shards && f.Name != ShardName(i, f.SHA256):
			return fmt.Errorf("field %q: entry %d is named %q, want %q", field, i, f.Name, ShardName(i, f.SHA256))
		case !shards && (f.Name == "" || f.Name != path.Base(f.Name) || f.Name == "." || f.Name == ".." ||
			strings.ContainsAny(f.Name, `\:`) || f.Name == ManifestFile || strings.HasPrefix(f.Name, "shard-")):
			return fmt.Errorf("field %q: %q is not a plain file name", field, f.Name)
		case seen[f.Name]:
			return fmt.Errorf("field %q: %q listed twice", field, f.Name)
		case f.Bytes < 0 || (shards && f.Bytes == 0):
			return fmt.Errorf("field %q: %q: bad size %d", field, f.Name, f.Bytes)
		case f.Bytes > maxBytes:
			return fmt.Errorf("field %q: %q: %d bytes, over the limit of %d", field, f.Name, f.Bytes, maxBytes)
		}
		seen[f.Name] = true
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// checkTensor checks one tensor and returns its arrays.
func (m *Manifest) checkTensor(t *TensorEntry) ([]array, error) {
	if ValuesPerWord(t.DType) == 0 {
		return nil, fmt.Errorf("unknown dtype %q (want q4, q8, f16 or f32)", t.DType)
	}
	const maxDim = 1 << 30
	for i, d := range t.Shape {
		if d <= 0 || d > maxDim {
			return nil, fmt.Errorf("shape %v: dimension %d must be in 1..%d", t.Shape, i, maxDim)
		}
	}
	switch len(t.Shape) {
	case 1:
		if t.DType != DTypeF32 {
			return nil, fmt.Errorf("1-D tensors must be f32, got %s", t.DType)
		}
		if len(t.Parts) != 1 {
			return nil, fmt.Errorf("a 1-D tensor must have exactly one part, has %d", len(t.Parts))
		}
	case 2:
		if err := CheckShape(t.DType, t.Shape[0], t.Shape[1], m.Quant.GroupSize); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("shape %v: want [n] or [out, in]", t.Shape)
	}
	if e := t.Error; !(e.RelRMSE >= 0) || !(e.MaxAbs >= 0) || math.IsInf(e.RelRMSE, 0) || math.IsInf(e.MaxAbs, 0) {
		return nil, fmt.Errorf("field \"error\": rel_rmse %v and max_abs %v must be finite and non-negative", e.RelRMSE, e.MaxAbs)
	}
	if len(t.Parts) == 0 {
		return nil, fmt.Errorf("no parts")
	}
	dataRow, scaleRow := t.RowBytes(m.Quant.GroupSize)
	var arrays []array
	next := 0
	for i, p := range t.Parts {
		r0, r1 := p.Rows[0], p.Rows[1]
		if r0 != next || r1 <= r0 || r1 > t.Rows() {
			return nil, fmt.Errorf("part %d: rows [%d, %d] do not continue from row %d within [0, %d]", i, r0, r1, next, t.Rows())
		}
		next = r1
		if p.Shard < 0 || p.Shard >= len(m.Shards) {
			return nil, fmt.Errorf("part %d: shard %d out of range (%d shards)", i, p.Shard, len(m.Shards))
		}
		shardBytes := m.Shards[p.Shard].Bytes
		check := func(what string, s Span, rowSize int64) error {
			rows := int64(r1 - r0)
			if rows > MaxArrayBytes/rowSize {
				return fmt.Errorf("part %d: %s of %d rows is larger than %d bytes", i, what, rows, MaxArrayBytes)
			}
			switch want := rows * rowSize; {
			case s.Bytes != want:
				return fmt.Errorf("part %d: %s.bytes %d, want %d for %d rows", i, what, s.Bytes, want, rows)
			case s.Offset < 0 || s.Offset%ArrayAlign != 0:
				return fmt.Errorf("part %d: %s.offset %d is not a multiple of %d", i, what, s.Offset, ArrayAlign)
			case s.Offset > shardBytes-s.Bytes:
				return fmt.Errorf("part %d: %s [%d, +%d) goes past the end of shard %d (%d bytes)", i, what, s.Offset, s.Bytes, p.Shard, shardBytes)
			}
			arrays = append(arrays, array{Span: s, shard: p.Shard, tensor: t.Name, what: fmt.Sprintf("part %d %s", i, what)})
			return nil
		}
		if err := check("data", p.Data, dataRow); err != nil {
			return nil, err
		}
		switch {
		case Quantized(t.DType) && p.Scales == nil:
			return nil, fmt.Errorf("part %d: %s needs \"scales\"", i, t.DType)
		case !Quantized(t.DType) && p.Scales != nil:
			return nil, fmt.Errorf("part %d: %s has no \"scales\"", i, t.DType)
		case p.Scales != nil:
			if err := check("scales", *p.Scales, scaleRow); err != nil {
				return nil, err
			}
		}
	}
	if next != t.Rows() {
		return nil, fmt.Errorf("parts cover rows [0, %d) of %d", next, t.Rows())
	}
	return arrays, nil
}

// oneLine quotes s if it holds control characters, so that an error message stays on one line.
func oneLine(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(s)
	}
	return s
}
