//go:build js

package webgpu

import (
	"fmt"
	"strings"
	"sync/atomic"
	"syscall/js"
	"unsafe"

	"github.com/oliverbestmann/webgpu/jsx"
	"github.com/oliverbestmann/webgpu/wgpu"
)

// platform holds the browser's GPUDevice, the last error it raised outside an error scope, and whether it
// was lost.
type platform struct {
	dev     js.Value
	queue   js.Value
	err     error
	gone    atomic.Pointer[error] // set when the device's lost promise settles
	staging js.Value              // a Uint8Array that writes pass through (see writeBytes)
	batch   bool                  // inside batch: no scope per call
	replay  replayer              // how passes are recorded (encode_js.go)
	// timestamps says whether the device has timestamp-query: the autotune then times passes on the GPU
	// (gpuTime)
	timestamps bool
	timer      timer
}

// open requests the adapter and device through navigator.gpu directly: the binding's RequestDevice drops
// requiredLimits, and the default 128 MiB binding limit is too small for the 8B model.
func (d *Device) open() error {
	gpu := js.Global().Get("navigator").Get("gpu")
	if !gpu.Truthy() {
		return fmt.Errorf("%w: navigator.gpu is missing (this browser has no WebGPU)", ErrNoAdapter)
	}
	adapter, ok := jsx.Await(gpu.Call("requestAdapter", map[string]any{"powerPreference": "high-performance"}))
	if !ok || !adapter.Truthy() {
		return fmt.Errorf("%w: requestAdapter returned none", ErrNoAdapter)
	}
	d.Adapter = "browser WebGPU"
	if info := adapter.Get("info"); info.Truthy() {
		var parts []string
		for _, k := range []string{"vendor", "architecture", "device", "description"} {
			if v := info.Get(k); v.Truthy() {
				parts = append(parts, v.String())
			}
		}
		d.Adapter += " (" + strings.Join(parts, ", ") + ")"
		d.Vendor, d.Architecture = info.Get("vendor").String(), info.Get("architecture").String()
		d.Driver = info.Get("device").String() + " " + info.Get("description").String() + " " + js.Global().Get("navigator").Get("userAgent").String()
	}
	var features []any
	if d.Subgroups = adapter.Get("features").Call("has", "subgroups").Bool(); d.Subgroups {
		features = append(features, "subgroups")
	}
	if d.plat.timestamps = adapter.Get("features").Call("has", "timestamp-query").Bool(); d.plat.timestamps {
		features = append(features, "timestamp-query")
	}
	d.Limits = requiredLimits(limitsOf(adapter.Get("limits")))
	dev, ok := jsx.Await(adapter.Call("requestDevice", map[string]any{"requiredFeatures": features, "requiredLimits": map[string]any{
		"maxBufferSize":                     d.Limits.MaxBufferSize,
		"maxStorageBufferBindingSize":       d.Limits.MaxStorageBufferBindingSize,
		"maxStorageBuffersPerShaderStage":   d.Limits.MaxStorageBuffersPerShaderStage,
		"maxComputeWorkgroupStorageSize":    d.Limits.MaxComputeWorkgroupStorageSize,
		"maxComputeInvocationsPerWorkgroup": d.Limits.MaxComputeInvocationsPerWorkgroup,
		"maxComputeWorkgroupSizeX":          d.Limits.MaxComputeWorkgroupSizeX,
		"maxComputeWorkgroupsPerDimension":  d.Limits.MaxComputeWorkgroupsPerDimension,
	}}))
	if !ok || !dev.Truthy() {
		return fmt.Errorf("webgpu: request device: %s", js.Global().Get("String").Invoke(dev).String())
	}
	d.plat.dev, d.plat.queue = dev, dev.Get("queue")
	// The lost promise settles once, with why: every later engine call fails with ErrDeviceLost.
	dev.Get("lost").Call("then", js.FuncOf(func(_ js.Value, args []js.Value) any {
		info := args[0]
		err := fmt.Errorf("%w: %s (reason: %s)", ErrDeviceLost, info.Get("message").String(), info.Get("reason").String())
		d.plat.gone.Store(&err)
		return nil
	}))
	dev.Set("onuncapturederror", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if d.plat.err == nil {
			d.plat.err = fmt.Errorf("webgpu: %s", args[0].Get("error").Get("message").String())
		}
		return nil
	}))
	d.dev = wrapDevice(dev)
	return nil
}

// subgroupsDirective goes in front of a module using subgroups: the browser's WGSL needs it.
const subgroupsDirective = "enable subgroups;\n"

// own returns obj: in the browser GPU objects are JavaScript's, freed by its garbage collector once nothing
// refers to them (the binding's Release does nothing there), and no finalizer races a call.
func own[T releaser](d *Device, obj T) T { return obj }

// close destroys the GPUDevice, which frees at once the memory of everything made on it.
func (d *Device) close() {
	if d.plat.dev.Truthy() {
		d.plat.dev.Call("destroy")
	}
}

// wrapDevice makes a binding Device of a GPUDevice requested outside the binding, which offers no
// constructor: on js its Device is exactly one js.Value (the array length below fails to compile if not).
func wrapDevice(v js.Value) *wgpu.Device {
	type mirror struct{ v js.Value }
	var _ [unsafe.Sizeof(wgpu.Device{}) - unsafe.Sizeof(mirror{})]struct{}
	var _ [unsafe.Sizeof(mirror{}) - unsafe.Sizeof(wgpu.Device{})]struct{}
	return (*wgpu.Device)(unsafe.Pointer(&mirror{v}))
}

func limitsOf(l js.Value) wgpu.Limits {
	n := func(name string) uint64 { return uint64(l.Get(name).Float()) }
	return wgpu.Limits{
		MaxBufferSize:                     n("maxBufferSize"),
		MaxStorageBufferBindingSize:       n("maxStorageBufferBindingSize"),
		MaxStorageBuffersPerShaderStage:   uint32(n("maxStorageBuffersPerShaderStage")),
		MaxComputeWorkgroupStorageSize:    uint32(n("maxComputeWorkgroupStorageSize")),
		MaxComputeInvocationsPerWorkgroup: uint32(n("maxComputeInvocationsPerWorkgroup")),
		MaxComputeWorkgroupSizeX:          uint32(n("maxComputeWorkgroupSizeX")),
		MaxComputeWorkgroupsPerDimension:  uint32(n("maxComputeWorkgroupsPerDimension")),
	}
}

// scoped runs f inside a validation error scope: in the browser a bad shader or binding does not throw but
// is reported asynchronously, so the scope is popped and awaited here.
func (d *Device) scoped(f func() error) error {
	if d.plat.batch {
		return f()
	}
	return d.inScope("validation", f, func(msg string) error { return fmt.Errorf("webgpu: %s", msg) })
}

// allocate runs f, which creates a buffer, inside an out-of-memory error scope as well: the browser reports
// an allocation it cannot make there, which comes back wrapping ErrOutOfMemory.
func (d *Device) allocate(f func() error) error {
	if d.plat.batch {
		return f()
	}
	return d.inScope("out-of-memory", func() error { return d.scoped(f) },
		func(msg string) error { return fmt.Errorf("%w: %s", ErrOutOfMemory, msg) })
}

// inScope runs f inside an error scope of the given filter, awaits the scope, and turns an error it caught
// into wrap(message). f's own error comes first.
func (d *Device) inScope(filter string, f func() error, wrap func(msg string) error) error {
	d.plat.dev.Call("pushErrorScope", filter)
	ferr := f()
	gpuErr, ok := jsx.Await(d.plat.dev.Call("popErrorScope"))
	switch {
	case ferr != nil:
		return ferr
	case !ok:
		return fmt.Errorf("webgpu: popErrorScope failed: %s", js.Global().Get("String").Invoke(gpuErr).String())
	case gpuErr.Truthy():
		return wrap(gpuErr.Get("message").String())
	}
	return nil
}

// batch runs f inside one out-of-memory and one validation error scope instead of a pair per call: each
// scope popped is a round trip to the GPU process, and building the engine makes thousands of calls (for
// InternLM3-8B, a bind group and a parameter buffer per dispatch). An error is then reported for the whole
// of f, with the browser's message, which names the label of the object at fault; running out of memory
// comes first, since a failed allocation makes later calls invalid too.
func (d *Device) batch(f func() error) error {
	if d.plat.batch {
		return f()
	}
	d.plat.dev.Call("pushErrorScope", "out-of-memory")
	d.plat.dev.Call("pushErrorScope", "validation")
	d.plat.batch = true
	ferr := f()
	d.plat.batch = false
	valErr, ok1 := jsx.Await(d.plat.dev.Call("popErrorScope"))
	oomErr, ok2 := jsx.Await(d.plat.dev.Call("popErrorScope"))
	if ferr != nil || !ok1 || !ok2 || valErr.Truthy() || oomErr.Truthy() {
		// A shader or pipeline made in f may be the invalid object: compile afresh next time.
		d.modules, d.kernels = map[string]*wgpu.ShaderModule{}, map[string]*kernel{}
	}
	switch {
	case ok2 && oomErr.Truthy():
		return fmt.Errorf("%w: %s", ErrOutOfMemory, oomErr.Get("message").String())
	case ferr != nil:
		return ferr
	case !ok1 || !ok2:
		return fmt.Errorf("webgpu: popErrorScope failed: %s", js.Global().Get("String").Invoke(valErr).String())
	case valErr.Truthy():
		return fmt.Errorf("webgpu: %s", valErr.Get("message").String())
	}
	return nil
}

// uncaptured returns, once, the first error the device raised outside any scope.
func (d *Device) uncaptured() error {
	err := d.plat.err
	d.plat.err = nil
	return err
}

// stagingBytes is the size of the JS array that writes pass through, in pieces of at most this size.
const stagingBytes = 8 << 20

// writeBytes copies data into b at byte offset off: through a JS Uint8Array (the binding's own
// writeBuffer reads the wasm memory through a global the page would have to define), in pieces of at most
// stagingBytes. A validation error shows later, through uncaptured.
func (d *Device) writeBytes(b *wgpu.Buffer, off uint64, data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil { // a JS exception (a TypeError, or a destroyed device's)
			err = fmt.Errorf("webgpu: writeBuffer: %v", r)
		}
	}()
	if d.plat.staging.IsUndefined() {
		d.plat.staging = js.Global().Get("Uint8Array").New(stagingBytes)
	}
	buf := bufferValue(b)
	for len(data) > 0 {
		n := min(len(data), stagingBytes)
		js.CopyBytesToJS(d.plat.staging, data[:n])
		d.plat.queue.Call("writeBuffer", buf, off, d.plat.staging, 0, n)
		data, off = data[n:], off+uint64(n)
	}
	return nil
}

// bufferValue is the GPUBuffer behind a binding Buffer, which on js is exactly one js.Value (the array
// lengths below fail to compile if not).
func bufferValue(b *wgpu.Buffer) js.Value {
	type mirror struct{ v js.Value }
	var _ [unsafe.Sizeof(wgpu.Buffer{}) - unsafe.Sizeof(mirror{})]struct{}
	var _ [unsafe.Sizeof(mirror{}) - unsafe.Sizeof(wgpu.Buffer{})]struct{}
	return (*mirror)(unsafe.Pointer(b)).v
}

// wait blocks until the work submitted so far is done.
func (d *Device) wait() { jsx.Await(d.plat.queue.Call("onSubmittedWorkDone")) }

// lost returns the error the device's lost promise settled with, or nil while it has not.
func (d *Device) lost() error {
	if err := d.plat.gone.Load(); err != nil {
		return *err
	}
	return nil
}

// settle lets the browser run its pending callbacks before lost is asked why a call failed: a loss
// rejects the calls in flight and settles the lost promise, in an order the spec leaves open.
func (d *Device) settle() {
	executor := js.FuncOf(func(_ js.Value, args []js.Value) any {
		js.Global().Call("setTimeout", args[0], 0)
		return nil
	})
	defer executor.Release()
	jsx.Await(js.Global().Get("Promise").New(executor))
}
