package webfiles

import "testing"

func TestIsShard(t *testing.T) {
	for name, want := range map[string]bool{
		"model/shard-00000-3f9c2a41d07be865.bin":    true,
		"model/x/shard-12-0123456789abcdef.bin":     true,
		"model/shard-00000-3F9C2A41D07BE865.bin":    false,
		"model/shard-00000-3f9c2a41d07be86.bin":     false,
		"model/shard--3f9c2a41d07be865.bin":         false,
		"model/shard-0a-3f9c2a41d07be865.bin":       false,
		"model/shard-00000-3f9c2a41d07be865.bin.gz": false,
		"model/manifest.json":                       false,
		"site/shard-00000-3f9c2a41d07be865.bin":     true, // as server: by name, wherever it is
	} {
		if got := IsShard(name); got != want {
			t.Errorf("IsShard(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestHeaders(t *testing.T) {
	for name, want := range map[string][2]string{
		"engine.wasm":                      {"application/wasm", "no-cache"},
		"app.js":                           {"text/javascript; charset=utf-8", "no-cache"},
		"manifest.webmanifest":             {"application/manifest+json", "no-cache"},
		"manifest.json":                    {"application/json", "no-cache"},
		"shard-00001-0123456789abcdef.bin": {"application/octet-stream", "public, max-age=31536000, immutable"},
		"KaTeX_Main-Regular.woff2":         {"font/woff2", "no-cache"},
		"notes.unknown":                    {"", "no-cache"},
	} {
		if got := [2]string{ContentType(name), CacheControl(name)}; got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
