package e2e

import (
	"encoding/json"
	"testing"
	"time"
)

// TestFullSizePage measures the page's engine at full size on WebGPU (SwiftShader here): a cold load (the
// download, the check of the manifest and the device, set-up, the upload with its hash checks), the first
// answer (the official system prompt prefilled), then a reload (the model from storage) and the same
// question (the system prompt's KV cache from storage). It runs only when FULL_MODEL names a converted
// model (tools/page-8b.sh makes InternLM3-8B's); the numbers are in docs/BENCHMARKS.md.
func TestFullSizePage(t *testing.T) {
	s := newTestServer(t, &fakeModel{dir: measuredModel(t, "FULL_MODEL", "tools/page-8b.sh")}, false)
	ctx := openHarnessFor(t, s, 3*time.Hour)
	run := func(label string) {
		start := time.Now()
		loaded := eval[map[string]any](t, ctx, `load({backend: 'webgpu', contextLength: 4096})`)
		if loaded["ok"] != true {
			t.Fatalf("%s load: %v", label, loaded)
		}
		ready := time.Since(start)
		info, _ := json.Marshal(loaded["info"].(map[string]any)["timings"])
		t.Logf("%s: page → engine ready %.1f s; timings (s) %s", label, ready.Seconds(), info)
		res := eval[map[string]any](t, ctx, `(async () => {
			const t0 = performance.now();
			let first, prefill = [];
			for await (const c of engine.chat.completions.create({messages: [{role: 'user', content: 'Hi'}], stream: true,
				temperature: 0, max_tokens: 3, onPrefill: (p) => prefill.push(p)})) {
				if (c.choices[0].delta.content) first ??= performance.now();
				if (c.usage) return {first: ((first ?? performance.now()) - t0) / 1000, total: (performance.now() - t0) / 1000,
					usage: c.usage, prefill: prefill.at(-1), events: prefill.length};
			}
		})()`)
		out, _ := json.Marshal(res)
		t.Logf("%s: 'Hi' → %s", label, out)
	}
	run("cold")
	navigate(t, ctx, s.URL+"/test/harness.html")
	waitFor(t, ctx, `window.harnessReady`, 10*time.Second)
	run("reload")
}
