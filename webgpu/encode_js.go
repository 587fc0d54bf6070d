//go:build js

package webgpu

import (
	"fmt"
	"syscall/js"
	"time"
	"unsafe"

	"github.com/oliverbestmann/webgpu/jsx"
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
	const pass = encoder.beginComputePass(desc);
	for (let i = 0, last = null; i < n; i++) {
		const [pipeline, group] = table[cmds[3 * i]];
		if (pipeline !== last) pass.setPipeline(last = pipeline);
		pass.setBindGroup(0, group);
		pass.dispatchWorkgroups(cmds[3 * i + 1], cmds[3 * i + 2]);
	}
	pass.end();`

// replayer is a device's table of pairs, its replay function and the commands' buffers.
type replayer struct {
	table, replay js.Value // Array of [pipeline, bind group]; Function(encoder, table, cmds, n, pass descriptor)
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
		r.replay = js.Global().Get("Function").New("encoder", "table", "cmds", "n", "desc", replaySource)
	}
	r.table.Call("push", []any{jsValue(k.pipe), jsValue(bg)})
	return r.table.Length() - 1
}

// record records cmds as one compute pass of enc, in one call of replay. An exception there (a
// validation error the browser throws at once) comes back as the error.
func (d *Device) record(enc *wgpu.CommandEncoder, cmds []command) (err error) {
	return d.recordPass(jsValue(enc), cmds, js.Undefined())
}

// recordPass is record on a GPUCommandEncoder, the pass begun with desc (a GPUComputePassDescriptor, or
// undefined).
func (d *Device) recordPass(enc js.Value, cmds []command, desc js.Value) (err error) {
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
	r.replay.Invoke(enc, r.table, r.cmds, len(cmds), desc)
	return nil
}

// gpuTime runs ds as one pass of n tokens with timestamp queries at its beginning and end, and returns
// the GPU's time between them; ok is false when the device has no timestamp-query feature or its
// timestamps say nothing (zero, or going backwards), and the caller times the submit instead. Browsers may
// round timestamps (Chromium to 100 µs without its developer features): the autotune's runs are
// milliseconds long.
func (d *Device) gpuTime(ds []dispatch, n int) (took time.Duration, ok bool, err error) {
	t := &d.plat.timer
	if !d.plat.timestamps {
		return 0, false, nil
	}
	if t.queries.IsUndefined() {
		t.queries = d.plat.dev.Call("createQuerySet", map[string]any{"type": "timestamp", "count": 2})
		usage := js.Global().Get("GPUBufferUsage")
		t.resolve = d.plat.dev.Call("createBuffer", map[string]any{"size": 16,
			"usage": usage.Get("QUERY_RESOLVE").Int() | usage.Get("COPY_SRC").Int()})
		t.read = d.plat.dev.Call("createBuffer", map[string]any{"size": 16,
			"usage": usage.Get("MAP_READ").Int() | usage.Get("COPY_DST").Int()})
		t.elapsed = js.Global().Get("Function").New("b", "const t = new BigInt64Array(b); return Number(t[1] - t[0]);")
	}
	err = d.scoped(func() error {
		enc := d.plat.dev.Call("createCommandEncoder")
		desc := map[string]any{"timestampWrites": map[string]any{
			"querySet": t.queries, "beginningOfPassWriteIndex": 0, "endOfPassWriteIndex": 1}}
		if err := d.recordPass(enc, commands(n, ds), js.ValueOf(desc)); err != nil {
			return err
		}
		enc.Call("resolveQuerySet", t.queries, 0, 2, t.resolve, 0)
		enc.Call("copyBufferToBuffer", t.resolve, 0, t.read, 0, 16)
		d.plat.queue.Call("submit", []any{enc.Call("finish")})
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	if _, mapped := jsx.Await(t.read.Call("mapAsync", js.Global().Get("GPUMapMode").Get("READ"))); !mapped {
		return 0, false, d.uncaptured()
	}
	ns := t.elapsed.Invoke(t.read.Call("getMappedRange")).Float()
	t.read.Call("unmap")
	if ns <= 0 {
		return 0, false, nil
	}
	return time.Duration(ns), true, nil
}

// timer is the query set and buffers gpuTime uses, made on its first call.
type timer struct {
	queries, resolve, read js.Value
	elapsed                js.Value // Function(ArrayBuffer of the two timestamps) → nanoseconds between them
}
