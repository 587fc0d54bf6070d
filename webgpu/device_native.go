//go:build !js

package webgpu

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/oliverbestmann/webgpu/wgpu"
)

// primaryBackends is Vulkan, Metal and DX12 (wgpu.h's WGPUInstanceBackend bits, which the binding does not
// name). Leaving out GL matters: with a broken Vulkan ICD wgpu would otherwise fall back to a GL adapter
// without saying so.
const primaryBackends wgpu.InstanceBackend = 1<<0 | 1<<2 | 1<<3

// platform holds the instance and adapter the device came from and every object made on the device, all
// released by Close.
type platform struct {
	inst    *wgpu.Instance
	adapter *wgpu.Adapter
	owned   []releaser // in the order they were made
}

// own keeps obj until Close releases it. The engine releases every GPU object itself, on the goroutine
// that uses the device. Left to the binding, each would be released by a GC finalizer on the finalizer's
// goroutine, and the binding keeps no wrapper alive across its own C calls: a finalizer could then release
// an object while a call it was handed is still inside wgpu-native, a use after free that corrupts
// wgpu-native's memory (issue 17; TestDeviceOwnsAndClosesEverything checks that Close releases them all).
func own[T releaser](d *Device, obj T) T {
	d.plat.owned = append(d.plat.owned, obj)
	return obj
}

func (d *Device) open() error {
	quietDeviceSelect()
	inst := wgpu.CreateInstance(&wgpu.InstanceDescriptor{Backends: primaryBackends})
	d.plat.inst = inst
	adapter, err := inst.RequestAdapter(&wgpu.RequestAdapterOptions{PowerPreference: wgpu.PowerPreferenceHighPerformance})
	if err != nil {
		d.close()
		return fmt.Errorf("%w: %v (no Vulkan, Metal or DX12 adapter; on Linux without a GPU, install "+
			"mesa-vulkan-drivers and set VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json)", ErrNoAdapter, err)
	}
	d.plat.adapter = adapter
	info := adapter.GetInfo()
	d.Adapter = fmt.Sprintf("%s (%s, %s)", info.Device, info.BackendType, info.AdapterType)
	d.Vendor, d.Architecture, d.Driver = info.Vendor, info.Architecture, info.Device+" "+info.Description
	var features []wgpu.FeatureName
	if d.Subgroups = adapter.HasFeature(wgpu.NativeFeatureSubgroup); d.Subgroups {
		features = append(features, wgpu.NativeFeatureSubgroup)
	}
	// The device's limits are at least those asked for (its GetLimits frees a Go pointer in this binding
	// version, so it is not called).
	d.Limits = requiredLimits(adapter.GetLimits())
	// No DeviceLostCallback: the binding's callback trips cgo's pointer checks. Validation errors are
	// caught instead by the error scope the binding wraps around each Try call.
	dev, err := adapter.RequestDevice(&wgpu.DeviceDescriptor{Label: "ilmweb", RequiredFeatures: features, RequiredLimits: &d.Limits})
	if err != nil {
		d.close()
		return fmt.Errorf("webgpu: request device on %s: %w", d.Adapter, err)
	}
	d.dev = dev
	return nil
}

// close destroys the device's buffers and releases every object made on it, newest first, then the queue,
// the device, the adapter and the instance, whichever exist.
func (d *Device) close() {
	for _, obj := range slices.Backward(d.plat.owned) {
		if b, ok := obj.(*wgpu.Buffer); ok {
			b.Destroy()
		}
		obj.Release()
	}
	d.queue.Release()
	d.dev.Release()
	d.plat.adapter.Release()
	d.plat.inst.Release()
	d.queue, d.dev, d.plat = nil, nil, platform{}
}

// quietDeviceSelect turns off Mesa's device-select layer where all it can do is print errors. That implicit
// Vulkan layer asks the Wayland compositor which GPU shows the desktop, and without a session (a server,
// ssh, CI) libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment." on each of
// the two vkEnumeratePhysicalDevices calls. Without an absolute XDG_RUNTIME_DIR (or WAYLAND_SOCKET, or an
// absolute WAYLAND_DISPLAY) no compositor can be reached anyway; the layer only orders the devices, and wgpu
// picks the high-performance one itself. NODEVICE_SELECT=1 is the layer's own off switch (its manifest's
// disable_environment); a value the user set is left alone, and nothing else is silenced.
func quietDeviceSelect() {
	if strings.HasPrefix(os.Getenv("XDG_RUNTIME_DIR"), "/") || os.Getenv("WAYLAND_SOCKET") != "" ||
		strings.HasPrefix(os.Getenv("WAYLAND_DISPLAY"), "/") {
		return
	}
	if _, set := os.LookupEnv("NODEVICE_SELECT"); !set {
		os.Setenv("NODEVICE_SELECT", "1")
	}
}

// subgroupsDirective goes in front of a module using subgroups: none natively, where wgpu-native's
// subgroup feature enables them and its WGSL parser rejects `enable subgroups;`.
const subgroupsDirective = ""

// scoped runs f. Natively the binding already wraps every Try call in a validation error scope and turns
// what it catches (WGSL errors included) into the call's error.
func (d *Device) scoped(f func() error) error { return f() }

// allocate runs f, which creates a buffer. wgpu-native reports running out of memory as an uncaptured
// error, which aborts in its default handler, and the binding can neither push an out-of-memory error
// scope nor install another handler: natively the engine's memory plan (and its budget option) is the
// only guard.
func (d *Device) allocate(f func() error) error { return f() }

// batch runs f. Natively every call is checked on its own at no extra cost (see scoped).
func (d *Device) batch(f func() error) error { return f() }

// uncaptured reports errors raised outside any scope. Natively there is nothing to collect: the only call
// the binding does not scope is Queue.Submit, and an error there aborts in wgpu-native's default handler
// (the binding cannot install another). The engine keeps Submit clean: every command buffer is validated
// by TryFinish, and no buffer is destroyed while in use.
func (d *Device) uncaptured() error { return nil }

// writeBytes copies data into b at byte offset off.
func (d *Device) writeBytes(b *wgpu.Buffer, off uint64, data []byte) error {
	return d.queue.TryWriteBuffer(b, off, data)
}

// wait blocks until the work submitted so far is done.
func (d *Device) wait() { d.dev.Poll(true, nil) }

// lost reports a lost device. wgpu-native tells of a loss only through the device-lost callback, which the
// binding cannot install (see open): natively a lost device shows as errors of the calls themselves.
func (d *Device) lost() error { return nil }

// settle gives the platform a chance to report a loss that caused err; natively there is nothing to wait for.
func (d *Device) settle() {}
