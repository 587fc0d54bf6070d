package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// The CPU cost of recording the GPU's work in the browser: the wasm engine on WebGPU (SwiftShader in
// headless Chromium) answers greedily through the public API, whose usage reports the time spent per
// dispatch encoding the decode passes (Go → syscall/js → WebGPU) and the kernels the autotune chose. The
// floor it is compared with is the same three WebGPU calls per dispatch made from JavaScript alone.
func TestWasmEncodeOverhead(t *testing.T) {
	engineReady(t)
	// tiny as it is (2 layers), and with the 8B model's 36 layers: whether the cost is per dispatch or
	// per pass shows in how it divides over the longer pass
	for _, layers := range []string{"2", "36"} {
		t.Run("layers="+layers, func(t *testing.T) {
			s := newTestServer(t, &fakeModel{dir: tinyModel(t, "-layers", layers)}, false)
			s.isolated = true // fine timers: a pass takes about as long as the 100 µs of a coarse one
			ctx := openHarness(t, s)
			if !eval[bool](t, ctx, `crossOriginIsolated`) {
				t.Fatal("the harness is not cross-origin isolated: its timers are coarse")
			}
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
				Dispatches float64 `json:"dispatches_per_token"`
				Kernels    string  `json:"kernels"`
			}](t, ctx, `chat([{role: 'user', content: 'Hello! Who are you?'}], {temperature: 0, max_tokens: 32}).then((c) => c[c.length - 1].usage)`)
			if u.Completion == 0 || u.Encode <= 0 || !strings.Contains(u.Kernels, "matvec") {
				t.Fatalf("usage after a WebGPU answer: %+v", u)
			}
			floor := eval[float64](t, ctx, fmt.Sprintf("(%s)(%d)", jsDispatchFloor, int(u.Dispatches+0.5)))
			t.Logf("WebGPU in wasm, %s layers: %d tokens decoded, %.0f dispatches per token, %.1f µs of CPU per dispatch encoding, %.0f µs per pass (JavaScript alone, passes as long: %.1f µs, %.2f of it); kernels %s",
				layers, u.Completion, u.Dispatches, u.Encode, u.Encode*u.Dispatches, floor, floor/u.Encode, u.Kernels)
		})
	}
}

// jsDispatchFloor(k) times compute passes of k dispatches (beginComputePass, then setPipeline,
// setBindGroup and dispatchWorkgroups each, then end) from JavaScript on a trivial kernel: µs per
// dispatch, the best of 5 rounds of 200 passes.
const jsDispatchFloor = `(async (k) => {
	const device = await (await navigator.gpu.requestAdapter()).requestDevice();
	const module = device.createShaderModule({ code:
		'@group(0) @binding(0) var<storage, read_write> o: array<u32>; @compute @workgroup_size(64) fn main() { o[0] = 1u; }' });
	const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
	const buffer = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
	const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] });
	let best = Infinity;
	for (let r = 0; r < 5; r++) {
		const encoder = device.createCommandEncoder();
		const t0 = performance.now();
		for (let p = 0; p < 200; p++) {
			const pass = encoder.beginComputePass();
			for (let i = 0; i < k; i++) {
				pass.setPipeline(pipeline);
				pass.setBindGroup(0, group);
				pass.dispatchWorkgroups(1);
			}
			pass.end();
		}
		best = Math.min(best, (performance.now() - t0) * 1000 / (200 * k));
		device.queue.submit([encoder.finish()]);
	}
	device.destroy();
	return best;
})`
