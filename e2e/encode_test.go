package e2e

import (
	"strings"
	"testing"
)

// The CPU cost of recording the GPU's work in the browser: the wasm engine on WebGPU (SwiftShader in
// headless Chromium) answers greedily through the public API, whose usage reports the time spent per
// dispatch encoding the decode passes (Go → syscall/js → WebGPU) and the kernels the autotune chose.
func TestWasmEncodeOverhead(t *testing.T) {
	engineReady(t)
	s := newTestServer(t, &fakeModel{dir: tinyModel(t)}, false)
	ctx := openHarness(t, s)
	r := eval[loadResult](t, ctx, `load({backend: 'webgpu'})`)
	if !r.OK {
		if r.Type == "no-webgpu" && !mustRun() {
			t.Skipf("this Chromium offers no WebGPU: %s", r.Message)
		}
		t.Fatalf("load on WebGPU failed: %s: %s", r.Type, r.Message)
	}
	u := eval[struct {
		Completion int     `json:"completion_tokens"`
		Encode     float64 `json:"encode_us_per_dispatch"`
		Kernels    string  `json:"kernels"`
	}](t, ctx, `chat([{role: 'user', content: 'Hello! Who are you?'}], {temperature: 0, max_tokens: 32}).then((c) => c[c.length - 1].usage)`)
	if u.Completion == 0 || u.Encode <= 0 || !strings.Contains(u.Kernels, "matvec") {
		t.Fatalf("usage after a WebGPU answer: %+v", u)
	}
	t.Logf("WebGPU in wasm: %d tokens decoded, %.1f µs of CPU per dispatch encoding; kernels %s", u.Completion, u.Encode, u.Kernels)
}
