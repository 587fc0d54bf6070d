//go:build js

package webgpu

import (
	"fmt"
	"syscall/js"
	"unsafe"

	"github.com/oliverbestmann/webgpu/wgpu"
)

// In the browser each binding call is a crossing from wasm into JavaScript, with its arguments converted
// on the way (setBindGroup also builds an empty offsets array): three per dispatch, and two more per pass.
// Instead, every dispatch's (pipeline, bind group) pair is kept once in a JavaScript table, and a whole
// compute pass is recorded by one call of replay, begin and end included, with the commands (table index
// and grid) in a Uint32Array that one copy fills: two crossings per pass, whatever its length. replay
// also skips setPipeline when the pipeline does not change. (Measured in TestWasmEncodeOverhead: the
// crossings, not the WebGPU calls, were most of a short pass's cost.)
const replaySource = `
	const pass = encoder.beginComputePass();
	for (let i = 0, last = null; i < n; i++) {
		const [pipeline, group] = table[cmds[3 * i]];
		if (pipeline !== last) pass.setPipeline(last = pipeline);
		pass.setBindGroup(0, group);
		pass.dispatchWorkgroups(cmds[3 * i + 1], cmds[3 * i + 2]);
	}
	pass.end();`

// replayer is a device's table of pairs, its replay function and the commands' buffers.
type replayer struct {
	table, replay js.Value // Array of [pipeline, bind group]; Function(encoder, table, cmds, n)
	cmds, bytes   js.Value // a Uint32Array, and a Uint8Array over the same memory for the copy
	words         []uint32
}

// jsValue is the GPU object under a binding object, which the binding does not export: on js each of its
// types used here is exactly one js.Value (the array lengths below fail to compile if not).
func jsValue[T wgpu.ComputePipeline | wgpu.BindGroup | wgpu.CommandEncoder](obj *T) js.Value {
	return *(*js.Value)(unsafe.Pointer(obj))
}

const valueSize = unsafe.Sizeof(js.Value{})

var (
	_ [unsafe.Sizeof(wgpu.ComputePipeline{}) - valueSize]struct{}
	_ [valueSize - unsafe.Sizeof(wgpu.ComputePipeline{})]struct{}
	_ [unsafe.Sizeof(wgpu.BindGroup{}) - valueSize]struct{}
	_ [valueSize - unsafe.Sizeof(wgpu.BindGroup{})]struct{}
	_ [unsafe.Sizeof(wgpu.CommandEncoder{}) - valueSize]struct{}
	_ [valueSize - unsafe.Sizeof(wgpu.CommandEncoder{})]struct{}
)

// register adds k's pipeline and bg to the device's table and returns its index.
func (d *Device) register(k *kernel, bg *wgpu.BindGroup) int {
	r := &d.plat.replay
	if r.table.IsUndefined() {
		r.table = js.Global().Get("Array").New()
		r.replay = js.Global().Get("Function").New("encoder", "table", "cmds", "n", replaySource)
	}
	r.table.Call("push", []any{jsValue(k.pipe), jsValue(bg)})
	return r.table.Length() - 1
}

// record records cmds as one compute pass of enc, in one call of replay. An exception there (a
// validation error the browser throws at once) comes back as the error.
func (d *Device) record(enc *wgpu.CommandEncoder, cmds []command) (err error) {
	r := &d.plat.replay
	r.words = r.words[:0]
	for _, c := range cmds {
		r.words = append(r.words, uint32(c.id), c.x, c.y)
	}
	if r.cmds.IsUndefined() || r.cmds.Length() < len(r.words) {
		r.cmds = js.Global().Get("Uint32Array").New(max(len(r.words), 1024))
		r.bytes = js.Global().Get("Uint8Array").New(r.cmds.Get("buffer"))
	}
	js.CopyBytesToJS(r.bytes, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(r.words))), 4*len(r.words)))
	defer func() {
		if p := recover(); p != nil {
			jsErr, ok := p.(js.Error)
			if !ok {
				panic(p)
			}
			err = fmt.Errorf("recording a compute pass of %d dispatches: %w", len(cmds), jsErr)
		}
	}()
	r.replay.Invoke(jsValue(enc), r.table, r.cmds, len(cmds))
	return nil
}
