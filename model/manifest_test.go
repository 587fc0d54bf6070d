package model

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const testConfig = `{"architectures":["InternLM3ForCausalLM"],"model_type":"internlm3","hidden_size":64,
"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":32,
"vocab_size":16,"max_position_embeddings":64,"rope_theta":10000,"rms_norm_eps":1e-5,"hidden_act":"silu"}`

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// validManifest is small but has every feature: a q4 tensor in two parts, an f32 vector, a q8 tensor
// with an odd number of groups, an f16 tensor, two shards.
func validManifest() string {
	m := Manifest{
		Format: ManifestFormat, Version: ManifestVersion, Source: "test", Config: json.RawMessage(testConfig),
		Quant: QuantScheme{Scheme: DTypeQ4, GroupSize: 32, LMHead: DTypeQ8},
		Files: []FileEntry{{Name: "config.json", Bytes: 10, SHA256: sha}, {Name: "tokenizer.model", Bytes: 0, SHA256: sha}},
		Shards: []FileEntry{
			{Name: ShardName(0, sha), Bytes: 1024 + 16, SHA256: sha},
			{Name: ShardName(1, "fedcba9876543210"+sha[16:]), Bytes: 768 + 240, SHA256: "fedcba9876543210" + sha[16:]},
		},
		Tensors: []TensorEntry{
			{Name: "a.weight", DType: DTypeQ4, Shape: []int{4, 64}, Parts: []Part{
				// rows 0-2: data 3·32 bytes at 0, scales 3·4 bytes at 256
				{Rows: RowRange{0, 3}, Shard: 0, Data: Span{0, 96}, Scales: &Span{256, 12}},
				{Rows: RowRange{3, 4}, Shard: 0, Data: Span{512, 32}, Scales: &Span{768, 4}},
			}, Error: TensorError{RelRMSE: 0.08, MaxAbs: 0.01}},
			{Name: "norm.weight", DType: DTypeF32, Shape: []int{4}, Parts: []Part{{Rows: RowRange{0, 1}, Shard: 0, Data: Span{1024, 16}}}},
			{Name: "lm_head.weight", DType: DTypeQ8, Shape: []int{2, 96}, Parts: []Part{
				{Rows: RowRange{0, 2}, Shard: 1, Data: Span{0, 192}, Scales: &Span{256, 16}}, // 3 groups → 2 scale words a row
			}, Error: TensorError{RelRMSE: 0.004, MaxAbs: 0.001}},
			{Name: "h.weight", DType: DTypeF16, Shape: []int{3, 40}, Parts: []Part{{Rows: RowRange{0, 3}, Shard: 1, Data: Span{768, 240}}}},
		},
	}
	m.TotalBytes = m.Shards[0].Bytes + m.Shards[1].Bytes
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParseManifestValid(t *testing.T) {
	m, err := ParseManifest("manifest.json", []byte(validManifest()))
	require.NoError(t, err)
	require.Equal(t, 64, m.ModelConfig.HiddenSize)
	require.Len(t, m.Tensors, 4)
	require.Equal(t, "lm_head.weight", m.Tensor("lm_head.weight").Name)
	require.Nil(t, m.Tensor("nope"))
	d, s := m.Tensor("lm_head.weight").RowBytes(32)
	require.Equal(t, [2]int64{96, 8}, [2]int64{d, s})
}

// manifestEdit changes the generic JSON of validManifest.
type manifestEdit struct {
	name string
	edit func(m map[string]any) // nil: raw replaces the whole text
	raw  string
	want string // substring of the error
}

func tensorAt(m map[string]any, i int) map[string]any {
	return m["tensors"].([]any)[i].(map[string]any)
}
func partAt(m map[string]any, t, p int) map[string]any {
	return tensorAt(m, t)["parts"].([]any)[p].(map[string]any)
}

var manifestEdits = []manifestEdit{
	{"format", func(m map[string]any) { m["format"] = "gguf" }, "", `field "format": want "ilmweb"`},
	{"version", func(m map[string]any) { m["version"] = 2 }, "", "unsupported version 2 (this build reads 1)"},
	{"config not object", func(m map[string]any) { m["config"] = "x" }, "", `field "config"`},
	{"config invalid", func(m map[string]any) { delete(m["config"].(map[string]any), "hidden_size") }, "", `field "config": missing field "hidden_size"`},
	{"scheme", func(m map[string]any) { m["quant"].(map[string]any)["scheme"] = "q3" }, "", `"quant.scheme": unknown dtype "q3"`},
	{"group size", func(m map[string]any) { m["quant"].(map[string]any)["group_size"] = 12 }, "", `"quant.group_size": 12`},
	{"file path", func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["name"] = "../x" }, "", `"../x" is not a plain file name`},
	{"file sha", func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["sha256"] = strings.ToUpper(sha) }, "", "64 lowercase hex"},
	{"file twice", func(m map[string]any) { m["files"].([]any)[1].(map[string]any)["name"] = "config.json" }, "", `"config.json" listed twice`},
	{"file size", func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["bytes"] = -1 }, "", "bad size -1"},
	{"shard name", func(m map[string]any) { m["shards"].([]any)[1].(map[string]any)["name"] = "shard-00001.bin" }, "", `entry 1 is named "shard-00001.bin", want "shard-00001-fedcba9876543210.bin"`},
	{"total", func(m map[string]any) { m["total_bytes"] = 1 }, "", `"total_bytes": 1, but the shards add up to 2048`},
	{"no tensors", func(m map[string]any) { m["tensors"] = []any{} }, "", `"tensors": empty`},
	{"tensor twice", func(m map[string]any) { tensorAt(m, 3)["name"] = "a.weight" }, "", `tensor "a.weight": listed twice`},
	{"dtype", func(m map[string]any) { tensorAt(m, 0)["dtype"] = "q5" }, "", `tensor "a.weight": unknown dtype "q5"`},
	{"1-D not f32", func(m map[string]any) { tensorAt(m, 1)["dtype"] = "f16" }, "", `tensor "norm.weight": 1-D tensors must be f32`},
	{"3-D", func(m map[string]any) { tensorAt(m, 3)["shape"] = []any{1, 3, 40} }, "", `tensor "h.weight": shape [1 3 40]`},
	{"zero dim", func(m map[string]any) { tensorAt(m, 3)["shape"] = []any{0, 40} }, "", `tensor "h.weight": shape [0 40]: dimension 0`},
	{"group", func(m map[string]any) { tensorAt(m, 0)["shape"] = []any{4, 48} }, "", `tensor "a.weight": q4 matrix [4, 48]: columns must be a multiple of the group size 32`},
	{"no parts", func(m map[string]any) { tensorAt(m, 3)["parts"] = nil }, "", `tensor "h.weight": no parts`},
	{"gap", func(m map[string]any) { partAt(m, 0, 1)["rows"] = []any{2, 4} }, "", `tensor "a.weight": part 1: rows [2, 4] do not continue from row 3`},
	{"uncovered", func(m map[string]any) { tensorAt(m, 0)["shape"] = []any{5, 64} }, "", `tensor "a.weight": parts cover rows [0, 4) of 5`},
	{"rows arity", func(m map[string]any) { partAt(m, 0, 1)["rows"] = []any{3, 4, 5} }, "", "rows must be [first, end]"},
	{"shard index", func(m map[string]any) { partAt(m, 3, 0)["shard"] = 2 }, "", `tensor "h.weight": part 0: shard 2 out of range`},
	{"unaligned", func(m map[string]any) { partAt(m, 0, 1)["data"].(map[string]any)["offset"] = 544 }, "", `tensor "a.weight": part 1: data.offset 544 is not a multiple of 256`},
	{"data bytes", func(m map[string]any) { partAt(m, 0, 0)["data"].(map[string]any)["bytes"] = 95 }, "", `part 0: data.bytes 95, want 96 for 3 rows`},
	{"scale bytes", func(m map[string]any) { partAt(m, 2, 0)["scales"].(map[string]any)["bytes"] = 12 }, "", `tensor "lm_head.weight": part 0: scales.bytes 12, want 16`},
	{"past shard", func(m map[string]any) { partAt(m, 1, 0)["data"].(map[string]any)["offset"] = 1280 }, "", `tensor "norm.weight": part 0: data [1280, +16) goes past the end of shard 0 (1040 bytes)`},
	{"no scales", func(m map[string]any) { delete(partAt(m, 0, 0), "scales") }, "", `part 0: q4 needs "scales"`},
	{"stray scales", func(m map[string]any) { partAt(m, 3, 0)["scales"] = map[string]any{"offset": 0, "bytes": 0} }, "", `part 0: f16 has no "scales"`},
	{"overlap", func(m map[string]any) { partAt(m, 1, 0)["data"].(map[string]any)["offset"] = 768 }, "", `tensor "norm.weight": part 0 data overlaps part 1 scales of tensor "a.weight" in shard 0`},
	{"error", func(m map[string]any) { tensorAt(m, 0)["error"].(map[string]any)["rel_rmse"] = -1 }, "", `field "error"`},
	{"unknown field", func(m map[string]any) { m["extra"] = 1 }, "", `unknown field "extra"`},
	{"unknown part field", func(m map[string]any) { partAt(m, 0, 0)["shard_name"] = "x" }, "", `unknown field "shard_name"`},
	{"upper case key", func(m map[string]any) { m["Format"] = m["format"]; delete(m, "format") }, "", `key "Format" in manifest: keys are case-sensitive, the field is "format"`},
	{"duplicate key", nil, `{"format":"ilmweb","format":"ilmweb"}`, `duplicate key "format" in manifest`},
	{"duplicate nested", nil, `{"tensors":[{"parts":[{"rows":[0,1],"rows":[0,1]}]}]}`, `duplicate key "rows" in manifest.tensors[0].parts[0]`},
	{"trailing", nil, `{} {}`, "trailing data"},
	{"truncated", nil, `{"format":`, "unexpected end of JSON"},
	{"not object", nil, `[]`, "invalid manifest JSON"},
	{"deep", nil, strings.Repeat("[", 100) + strings.Repeat("]", 100), "nested deeper than 64"},
	// The limits a hostile model host runs into (the page applies the same ones before fetching anything).
	{"huge manifest", nil, `{"source":"` + strings.Repeat("x", MaxManifestBytes) + `"}`, "bytes, over the limit of 16777216"},
	{"too many files", func(m map[string]any) {
		files := m["files"].([]any)
		for i := len(files); i <= MaxFiles; i++ {
			files = append(files, map[string]any{"name": fmt.Sprintf("f%d", i), "bytes": 1, "sha256": sha})
		}
		m["files"] = files
	}, "", `field "files": 33 entries, over the limit of 32`},
	{"huge file", func(m map[string]any) { m["files"].([]any)[1].(map[string]any)["bytes"] = MaxFileBytes + 1 }, "",
		`field "files": "tokenizer.model": 33554433 bytes, over the limit of 33554432`},
	{"dot-dot file", func(m map[string]any) { m["files"].([]any)[1].(map[string]any)["name"] = ".." }, "", `".." is not a plain file name`},
	{"too many shards", func(m map[string]any) {
		shards := make([]any, MaxShards+1)
		for i := range shards {
			shards[i] = map[string]any{"name": ShardName(i, sha), "bytes": 1, "sha256": sha}
		}
		m["shards"] = shards
	}, "", `field "shards": 4097 entries, over the limit of 4096`},
	{"huge shard", func(m map[string]any) { m["shards"].([]any)[0].(map[string]any)["bytes"] = MaxShardBytes + 1 }, "",
		"134217729 bytes, over the limit of 134217728"},
	{"huge total", func(m map[string]any) {
		shards := make([]any, MaxTotalBytes/MaxShardBytes+1)
		for i := range shards {
			shards[i] = map[string]any{"name": ShardName(i, sha), "bytes": MaxShardBytes, "sha256": sha}
		}
		m["shards"] = shards
	}, "", `field "shards": 68853694464 bytes in all, over the limit of 68719476736`},
	{"size not an integer", func(m map[string]any) { m["shards"].([]any)[0].(map[string]any)["bytes"] = 1.5 }, "", "invalid manifest JSON"},
}

func (e manifestEdit) apply(t testing.TB) []byte {
	if e.edit == nil {
		return []byte(e.raw)
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(validManifest()), &m))
	e.edit(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestParseManifestRejects(t *testing.T) {
	for _, e := range manifestEdits {
		_, err := ParseManifest("dir/manifest.json", e.apply(t))
		require.Error(t, err, e.name)
		require.True(t, strings.HasPrefix(err.Error(), "dir/manifest.json: "), "%s: %v", e.name, err)
		require.NotContains(t, err.Error(), "\n", e.name)
		require.Contains(t, err.Error(), e.want, e.name)
	}
}

// FuzzParseManifest: no input panics; errors are one line naming the file; what parses obeys the
// layout rules and survives a round trip through encoding/json. Seeds: testdata/fuzz/FuzzParseManifest
// holds validManifest, each manifestEdits case and the manifest of a converted tiny model.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(validManifest()))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest("fuzz/manifest.json", data)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "fuzz/manifest.json: ") {
				t.Fatalf("bad error message: %q", msg)
			}
			return
		}
		var total int64
		for _, s := range m.Shards {
			total += s.Bytes
		}
		if total != m.TotalBytes {
			t.Fatalf("total_bytes %d, shards %d", m.TotalBytes, total)
		}
		for _, te := range m.Tensors {
			next := 0
			dataRow, scaleRow := te.RowBytes(m.Quant.GroupSize)
			for _, p := range te.Parts {
				if p.Rows[0] != next || p.Rows[1] <= p.Rows[0] {
					t.Fatalf("%s: parts out of order", te.Name)
				}
				next = p.Rows[1]
				spans := []Span{p.Data}
				sizes := []int64{dataRow}
				if p.Scales != nil {
					spans, sizes = append(spans, *p.Scales), append(sizes, scaleRow)
				}
				for i, s := range spans {
					if s.Offset%ArrayAlign != 0 || s.Offset+s.Bytes > m.Shards[p.Shard].Bytes || s.Bytes != int64(p.Rows[1]-p.Rows[0])*sizes[i] {
						t.Fatalf("%s: bad span %+v", te.Name, s)
					}
				}
			}
			if next != te.Rows() {
				t.Fatalf("%s: rows not covered", te.Name)
			}
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest("fuzz/manifest.json", again)
		if err != nil {
			t.Fatalf("re-encoded manifest rejected: %v", err)
		}
		third, _ := json.Marshal(m2)
		if string(third) != string(again) {
			t.Fatal("round trip changed the manifest")
		}
	})
}
