package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
)

// manifest8B rewrites dir/manifest.json (a converted tiny model's) to describe InternLM3-8B: its config
// (testdata/internlm3-8b) and every tensor in q4 (group 32), packed into 64 MiB shards as convert packs
// them, about 4.95 GB in all. The tiny model's small files stay; the shards exist only in the manifest.
func manifest8B(t *testing.T, dir string) int64 {
	t.Helper()
	cfgJSON, err := os.ReadFile("../testdata/internlm3-8b/config.json")
	require.NoError(t, err)
	cfg, err := model.ParseConfig("config.json", cfgJSON)
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	require.NoError(t, err)
	var man model.Manifest
	require.NoError(t, json.Unmarshal(data, &man))
	man.Config, man.Quant = cfgJSON, model.QuantScheme{Scheme: "q4", GroupSize: 32, LMHead: "q4"}
	man.Tensors, man.Shards = nil, nil

	const shardMax = 64 << 20
	var used int64 // bytes in the shard being filled
	align := func(n int64) int64 { return (n + model.ArrayAlign - 1) / model.ArrayAlign * model.ArrayAlign }
	closeShard := func() {
		i := len(man.Shards)
		hash := fmt.Sprintf("%064x", i+1)
		man.Shards = append(man.Shards, model.FileEntry{Name: model.ShardName(i, hash), Bytes: used, SHA256: hash})
		used = 0
	}
	for _, spec := range model.CheckpointTensors(cfg) {
		te := model.TensorEntry{Name: spec.Name, DType: "q4", Shape: spec.Shape}
		if len(spec.Shape) == 1 {
			te.DType = "f32"
		}
		dataRow, scaleRow := te.RowBytes(32)
		for r0 := 0; r0 < te.Rows(); {
			room := (shardMax - used) / (dataRow + scaleRow + 2*model.ArrayAlign)
			if room < 1 || (len(spec.Shape) == 1 && used+align(dataRow) > shardMax) {
				closeShard()
				continue
			}
			rows := min(int64(te.Rows()-r0), room)
			p := model.Part{Rows: model.RowRange{r0, r0 + int(rows)}, Shard: len(man.Shards)}
			p.Data = model.Span{Offset: used, Bytes: rows * dataRow}
			used = align(used + p.Data.Bytes)
			if scaleRow > 0 {
				p.Scales = &model.Span{Offset: used, Bytes: rows * scaleRow}
				used = align(used + p.Scales.Bytes)
			}
			te.Parts = append(te.Parts, p)
			r0 += int(rows)
		}
		man.Tensors = append(man.Tensors, te)
	}
	closeShard()
	man.TotalBytes = 0
	for _, s := range man.Shards {
		man.TotalBytes += s.Bytes
	}
	out, err := json.Marshal(&man)
	require.NoError(t, err)
	_, err = model.ParseManifest(model.ManifestFile, out)
	require.NoError(t, err, "the synthetic 8B manifest must be one the engine accepts")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "manifest.json"), out, 0o644))
	return man.TotalBytes
}

// The browser's CPU path cannot hold InternLM3-8B in wasm32's 4 GiB: the engine says so from the manifest,
// in one sentence, before a single shard is requested; through the JS API and on the page.
func TestCPUPathRefusesTooLargeModelBeforeDownloading(t *testing.T) {
	engineReady(t)
	dir := tinyModel(t)
	total := manifest8B(t, dir)
	require.InDelta(t, 4.95e9, float64(total), 0.03e9)
	s := newTestServer(t, &fakeModel{dir: dir}, false)
	ctx := openHarness(t, s)
	shardRequests := func() int {
		n := 0
		for _, r := range s.requests("") {
			if strings.HasPrefix(r.Name, "shard-") {
				n++
			}
		}
		return n
	}

	res := load(t, ctx)
	require.False(t, res.OK)
	require.Equal(t, "too-large", res.Type, res.Message)
	require.True(t, res.EngineError)
	require.Regexp(t, `^the model is too large for the browser's CPU path: it needs 5\.\d\d GB of memory \(weights 4\.9\d GB, KV cache 0\.40 GB for 4096 positions\), more than the 4 GiB a WebAssembly engine can address; open the page in a browser with WebGPU to run it on the GPU$`, res.Message)
	require.Zero(t, shardRequests(), "no shard may be fetched for a model that cannot run")

	// The page: the notice names the problem and what to do; still nothing downloaded.
	navigate(t, ctx, s.URL+"/?backend=cpu")
	waitFor(t, ctx, `document.getElementById('notice').dataset.type === 'too-large' && !document.getElementById('notice').hidden`, 60*time.Second)
	title := eval[string](t, ctx, `document.getElementById('notice-title').textContent`)
	text := eval[string](t, ctx, `document.getElementById('notice-text').textContent`)
	require.Equal(t, "This model is too large for the CPU fallback", title)
	require.Contains(t, text, "Open the page in a browser with WebGPU")
	require.Contains(t, text, "more than the 4 GiB a WebAssembly engine can address")
	require.NotContains(t, text, "runtime", "no Go trace")
	require.Zero(t, shardRequests())
	t.Logf("notice: %s — %s", title, text)
}
