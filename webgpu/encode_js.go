//go:build js

package webgpu

import (
	"syscall/js"
	"unsafe"

	"github.com/oliverbestmann/webgpu/wgpu"
)

// In the browser each binding call is a crossing from wasm into JavaScript, with its arguments converted
// on the way (setBindGroup also builds an empty offsets array): three per dispatch. Instead, every
// dispatch's (pipeline, bind group) pair is kept once in a JavaScript table, and a pass is recorded by one
// call of replay with the commands (table index and grid) in a Uint32Array, copied over in one go; replay
// also skips setPipeline when the pipeline does not change.
const replaySource = `
	for (let i = 0, last = null; i < n; i++) {
		const [pipeline, group] = table[cmds[3 * i]];
		if (pipeline !== last) pass.setPipeline(last = pipeline);
		pass.setBindGroup(0, group);
		pass.dispatchWorkgroups(cmds[3 * i + 1], cmds[3 * i + 2]);
	}`

// replayer is a device's table of pairs, its replay function and the commands' buffers.
type replayer struct {
	table, replay, cmds js.Value // Array of [pipeline, bind group]; Function(pass, table, cmds, n); Uint32Array
	words               []uint32
}

// jsValue is the GPU object under a binding object, which the binding does not export: on js each of its
// types used here is exactly one js.Value (the array lengths below fail to compile if not).
func jsValue[T wgpu.ComputePipeline | wgpu.BindGroup | wgpu.ComputePassEncoder](obj *T) js.Value {
	return *(*js.Value)(unsafe.Pointer(obj))
}

const valueSize = unsafe.Sizeof(js.Value{})

var (
	_ [unsafe.Sizeof(wgpu.ComputePipeline{}) - valueSize]struct{}
	_ [valueSize - unsafe.Sizeof(wgpu.ComputePipeline{})]struct{}
	_ [unsafe.Sizeof(wgpu.BindGroup{}) - valueSize]struct{}
	_ [valueSize - unsafe.Sizeof(wgpu.BindGroup{})]struct{}
	_ [unsafe.Sizeof(wgpu.ComputePassEncoder{}) - valueSize]struct{}
	_ [valueSize - unsafe.Sizeof(wgpu.ComputePassEncoder{})]struct{}
)

// register adds k's pipeline and bg to the device's table and returns its index.
func (d *Device) register(k *kernel, bg *wgpu.BindGroup) int {
	r := &d.plat.replay
	if r.table.IsUndefined() {
		r.table = js.Global().Get("Array").New()
		r.replay = js.Global().Get("Function").New("pass", "table", "cmds", "n", replaySource)
	}
	r.table.Call("push", []any{jsValue(k.pipe), jsValue(bg)})
	return r.table.Length() - 1
}

// record replays cmds into pass in one call.
func (d *Device) record(pass *wgpu.ComputePassEncoder, cmds []command) {
	r := &d.plat.replay
	r.words = r.words[:0]
	for _, c := range cmds {
		r.words = append(r.words, uint32(c.id), c.x, c.y)
	}
	if r.cmds.IsUndefined() || r.cmds.Length() < len(r.words) {
		r.cmds = js.Global().Get("Uint32Array").New(max(len(r.words), 1024))
	}
	js.CopyBytesToJS(js.Global().Get("Uint8Array").New(r.cmds.Get("buffer"), 0, 4*len(r.words)),
		unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(r.words))), 4*len(r.words)))
	r.replay.Invoke(jsValue(pass), r.table, r.cmds, len(cmds))
}
