//go:build js

package webgpu

import (
	"fmt"
	"strings"
	"syscall/js"
	"unsafe"

	"github.com/oliverbestmann/webgpu/jsx"
	"github.com/oliverbestmann/webgpu/wgpu"
)

// platform holds the browser's GPUDevice and the last error it raised outside an error scope.
type platform struct {
	dev js.Value
	err error
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
	}
	d.Limits = requiredLimits(limitsOf(adapter.Get("limits")))
	dev, ok := jsx.Await(adapter.Call("requestDevice", map[string]any{"requiredLimits": map[string]any{
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
	d.plat.dev = dev
	dev.Set("onuncapturederror", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if d.plat.err == nil {
			d.plat.err = fmt.Errorf("webgpu: %s", args[0].Get("error").Get("message").String())
		}
		return nil
	}))
	d.dev = wrapDevice(dev)
	return nil
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
	d.plat.dev.Call("pushErrorScope", "validation")
	ferr := f()
	gpuErr, ok := jsx.Await(d.plat.dev.Call("popErrorScope"))
	switch {
	case ferr != nil:
		return ferr
	case !ok:
		return fmt.Errorf("webgpu: popErrorScope failed: %s", js.Global().Get("String").Invoke(gpuErr).String())
	case gpuErr.Truthy():
		return fmt.Errorf("webgpu: %s", gpuErr.Get("message").String())
	}
	return nil
}

// allocate runs f, which creates a buffer, inside an out-of-memory error scope as well: the browser reports
// an allocation it cannot make there, which comes back wrapping ErrOutOfMemory.
func (d *Device) allocate(f func() error) error {
	d.plat.dev.Call("pushErrorScope", "out-of-memory")
	ferr := d.scoped(f)
	gpuErr, ok := jsx.Await(d.plat.dev.Call("popErrorScope"))
	switch {
	case ferr != nil:
		return ferr
	case !ok:
		return fmt.Errorf("webgpu: popErrorScope failed: %s", js.Global().Get("String").Invoke(gpuErr).String())
	case gpuErr.Truthy():
		return fmt.Errorf("%w: %s", ErrOutOfMemory, gpuErr.Get("message").String())
	}
	return nil
}

// uncaptured returns, once, the first error the device raised outside any scope.
func (d *Device) uncaptured() error {
	err := d.plat.err
	d.plat.err = nil
	return err
}
