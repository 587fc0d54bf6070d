package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
)

// A hostile (or broken) model host, issue 13: a manifest that breaks the Go parser's rules fails with
// bad-manifest, naming the rule, before any file it lists is requested, and nothing is stored.
func TestHostileManifestFailsBeforeDownloading(t *testing.T) {
	m := writeFakeModel(t, 1000, 1000)
	s := newTestServer(t, m, true)
	ctx := openHarness(t, s)

	// The page's limits are the Go parser's.
	limits := eval[map[string]int64](t, ctx, `import('/download.js').then((d) => ({ ...d.MANIFEST_LIMITS }))`)
	require.Equal(t, map[string]int64{
		"maxManifestBytes": model.MaxManifestBytes, "maxFiles": model.MaxFiles, "maxFileBytes": model.MaxFileBytes,
		"maxShards": model.MaxShards, "maxShardBytes": model.MaxShardBytes, "maxTotalBytes": model.MaxTotalBytes,
	}, limits)

	manifest := func() map[string]any {
		var man map[string]any
		raw, err := os.ReadFile(filepath.Join(m.dir, "manifest.json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(raw, &man))
		return man
	}
	shards := func(n int, bytes int64) []any {
		list := make([]any, n)
		for i := range list {
			sha := fmt.Sprintf("%064x", i)
			list[i] = map[string]any{"name": fmt.Sprintf("shard-%05d-%s.bin", i, sha[:16]), "bytes": bytes, "sha256": sha}
		}
		return list
	}
	file := func(man map[string]any, i int) map[string]any { return man["files"].([]any)[i].(map[string]any) }
	setShards := func(man map[string]any, list []any) {
		man["shards"] = list
		var total int64
		for _, e := range list {
			total += int64(e.(map[string]any)["bytes"].(int64))
		}
		man["total_bytes"] = total
	}
	for _, c := range []struct {
		name string
		edit func(man map[string]any)
		raw  string // instead of an edit: the whole manifest
		want string
	}{
		{"a huge shard", func(man map[string]any) { setShards(man, shards(1, 1<<50)) },
			"", `field "shards": entry 0 ("shard-00000-0000000000000000.bin"): 1125899906842624 bytes, over the limit of 134217728`},
		{"a huge file", func(man map[string]any) { file(man, 0)["bytes"] = int64(1) << 40 },
			"", `field "files": entry 0 ("tokenizer.model"): 1099511627776 bytes, over the limit of 33554432`},
		{"huge in all", func(man map[string]any) { setShards(man, shards(600, model.MaxShardBytes)) },
			"", `field "shards": 80530636800 bytes in all, over the limit of 68719476736`},
		{"thousands of shards", func(man map[string]any) { setShards(man, shards(5000, 1)) },
			"", `field "shards": 5000 entries, over the limit of 4096`},
		{"thousands of files", func(man map[string]any) {
			files := make([]any, 3000)
			for i := range files {
				files[i] = map[string]any{"name": fmt.Sprintf("f%d", i), "bytes": 1, "sha256": strings.Repeat("0", 64)}
			}
			man["files"] = files
		}, "", `field "files": 3000 entries, over the limit of 32`},
		{"..", func(man map[string]any) { file(man, 0)["name"] = ".." }, "", `field "files": entry 0 ("..") is not a plain file name`},
		{"a path", func(man map[string]any) { file(man, 0)["name"] = "../../sw.js" }, "", `("../../sw.js") is not a plain file name`},
		{"a size that is no integer", func(man map[string]any) { file(man, 0)["bytes"] = 1.5 }, "", `("tokenizer.model"): bad size 1.5`},
		{"a size that is a string", func(man map[string]any) { file(man, 0)["bytes"] = "20000" }, "", `bad size "20000"`},
		{"a size past 2^53", func(man map[string]any) { file(man, 0)["bytes"] = 1e300 }, "", `bad size 1e+300`},
		{"a total that does not add up", func(man map[string]any) { man["total_bytes"] = 1 }, "", `field "total_bytes": 1, but the shards add up to 2000`},
		{"a shard named for another", func(man map[string]any) {
			man["shards"].([]any)[1].(map[string]any)["name"] = m.shards[0].Name
		}, "", `field "shards": entry 1`},
		{"a huge manifest", nil, `{"format": "ilmweb", "version": 1, "source": "` + strings.Repeat("x", model.MaxManifestBytes) + `"}`,
			"bytes or more, over the limit of 16777216"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := []byte(c.raw)
			if c.edit != nil {
				man := manifest()
				c.edit(man)
				var err error
				raw, err = json.Marshal(man)
				require.NoError(t, err)
			}
			path := filepath.Join(m.dir, "manifest.json")
			good, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, raw, 0o644))
			defer os.WriteFile(path, good, 0o644)

			before := len(s.requests(""))
			r := load(t, ctx)
			require.False(t, r.OK)
			require.Equal(t, "bad-manifest", r.Type, r.Message)
			require.Contains(t, r.Message, c.want)
			require.Contains(t, r.Message, "nothing was downloaded")
			reqs := s.requests("")[before:]
			require.Len(t, reqs, 1, "requests after the manifest: %+v", reqs)
			require.Equal(t, "manifest.json", reqs[0].Name)
			require.Zero(t, storedEntries(t, ctx), "something was stored")
		})
	}

	// The good manifest still loads, and only then is anything fetched.
	mustLoad(t, ctx)
	require.Len(t, s.requests(""), len(m.files)+len(m.shards)+14)
}
