package e2e

import (
	"fmt"
	"slices"
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
				Completion int                      `json:"completion_tokens"`
				Encode     float64                  `json:"encode_us_per_dispatch"`
				Dispatches float64                  `json:"dispatches_per_token"`
				Kernels    string                   `json:"kernels"`
				TuneClock  string                   `json:"tune_clock"`
				Tune       map[string]tuneCandidate `json:"tune"`
			}](t, ctx, `chat([{role: 'user', content: 'Hello! Who are you?'}], {temperature: 0, max_tokens: 32}).then((c) => c[c.length - 1].usage)`)
			if u.Completion == 0 || u.Encode <= 0 || !strings.Contains(u.Kernels, "matvec") {
				t.Fatalf("usage after a WebGPU answer: %+v", u)
			}
			floor := eval[float64](t, ctx, fmt.Sprintf("(%s)(%d)", jsDispatchFloor, int(u.Dispatches+0.5)))
			t.Logf("WebGPU in wasm, %s layers: %d tokens decoded, %.0f dispatches per token, %.1f µs of CPU per dispatch encoding, %.0f µs per pass (JavaScript alone, passes as long: %.1f µs, %.2f of it); kernels %s",
				layers, u.Completion, u.Dispatches, u.Encode, u.Encode*u.Dispatches, floor, floor/u.Encode, u.Kernels)
			// the autotune's candidates against a copy probe on the same adapter (once per page: the engine's
			// tuning is kept in the Cache API, so a later load's usage may list no candidates)
			gbps := eval[float64](t, ctx, jsCopyProbe)
			var ratios []string
			for label, c := range u.Tune {
				r := fmt.Sprintf("%s %.0f µs", label, c.US)
				if c.Bytes > 0 {
					r += fmt.Sprintf(" (%.3f of copy)", c.gbps()/gbps)
				}
				ratios = append(ratios, r)
			}
			slices.Sort(ratios)
			t.Logf("autotune candidates on this adapter (%s), copy probe %.2f GB/s: %s", u.TuneClock, gbps, strings.Join(ratios, "; "))
			// where the adapter has timestamp queries, the autotune times on the GPU's clock
			stamps := eval[bool](t, ctx, `navigator.gpu.requestAdapter().then((a) => a.features.has('timestamp-query'))`)
			if len(u.Tune) > 0 && stamps && u.TuneClock != "gpu timestamps" {
				t.Errorf("the adapter has timestamp-query, the autotune timed with %q", u.TuneClock)
			}
		})
	}
}

// tuneCandidate is one of the autotune's candidates in a chat's usage (wasm/main.go): its best run's time
// and the weight bytes a run reads.
type tuneCandidate struct {
	US    float64 `json:"us"`
	Bytes float64 `json:"bytes"`
}

// gbps is the candidate's weight bytes per second, in GB/s (0 for attention, which reads no weights).
func (c tuneCandidate) gbps() float64 { return c.Bytes / (c.US * 1e-6) / 1e9 }

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

// jsCopyProbe is the engine's copy probe (shaders/copy.wgsl, webgpu.CopyBandwidth) made from JavaScript:
// GB/s read + written copying 32 MiB, after a warm-up, over at least 0.2 s and 3 copies.
const jsCopyProbe = `(async () => {
	const device = await (await navigator.gpu.requestAdapter()).requestDevice();
	const bytes = 32 << 20, words = bytes / 16;
	const module = device.createShaderModule({ code:
		'@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;' +
		'@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;' +
		'@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {' +
		'  for (var i = gid.x; i < ' + words + 'u; i += nwg.x * 256u) { dst[i] = src[i]; } }' });
	const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
	const src = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
	const dst = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
	const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0),
		entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }] });
	const copy = async () => {
		const encoder = device.createCommandEncoder();
		const pass = encoder.beginComputePass();
		pass.setPipeline(pipeline);
		pass.setBindGroup(0, group);
		pass.dispatchWorkgroups(Math.ceil(words / 1024));
		pass.end();
		device.queue.submit([encoder.finish()]);
		await device.queue.onSubmittedWorkDone();
	};
	await copy();
	const t0 = performance.now();
	let reps = 0;
	while (reps < 3 || performance.now() - t0 < 200) { await copy(); reps++; }
	const gbps = 2 * bytes * reps / ((performance.now() - t0) / 1000) / 1e9;
	device.destroy();
	return gbps;
})()`
