//go:build js

package webgpu

import (
	"encoding/binary"
	"fmt"
	"syscall/js"
	"time"
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
func jsValue[T wgpu.ComputePipeline | wgpu.BindGroup | wgpu.CommandEncoder | wgpu.Buffer](obj *T) js.Value {
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
	_ [unsafe.Sizeof(wgpu.Buffer{}) - valueSize]struct{}
	_ [valueSize - unsafe.Sizeof(wgpu.Buffer{})]struct{}
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
	if t.resolve == nil {
		t.queries = d.plat.dev.Call("createQuerySet", map[string]any{"type": "timestamp", "count": 2})
		if t.resolve, err = d.buffer("timestamps", 16, wgpu.BufferUsageQueryResolve|wgpu.BufferUsageCopySrc); err != nil {
			return 0, false, err
		}
		if t.staging, err = d.readback("timestamps staging", 16); err != nil {
			return 0, false, err
		}
	}
	desc := js.ValueOf(map[string]any{"timestampWrites": map[string]any{
		"querySet": t.queries, "beginningOfPassWriteIndex": 0, "endOfPassWriteIndex": 1}})
	err = d.submit(func(enc *wgpu.CommandEncoder) error {
		if err := d.recordPass(jsValue(enc), commands(n, ds), desc); err != nil {
			return err
		}
		jsValue(enc).Call("resolveQuerySet", t.queries, 0, 2, jsValue(t.resolve), 0)
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	stamps, err := d.read(t.resolve, t.staging, 0, 16)
	if err != nil {
		return 0, false, err
	}
	ns := int64(binary.LittleEndian.Uint64(stamps[8:])) - int64(binary.LittleEndian.Uint64(stamps[:8]))
	if ns <= 0 {
		return 0, false, nil
	}
	return time.Duration(ns), true, nil
}

// timer is the query set and buffers gpuTime uses, made on its first call.
type timer struct {
	queries          js.Value     // a GPUQuerySet of two timestamps (the binding has none on js)
	resolve, staging *wgpu.Buffer // the timestamps resolved, and read back
}
