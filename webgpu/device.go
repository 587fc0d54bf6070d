// Package webgpu is the GPU engine: InternLM3 decoding with WGSL kernels (package shaders) on WebGPU,
// natively through wgpu-native and in the browser through the same Go code compiled to wasm; the platform
// differences live in device_native.go and device_js.go. Every kernel has a CPU twin in package model that
// it is tested against, and Engine implements model.Decoder.
//
// One decoded token's path: Forward writes the token and its position (the Step uniform) and submits one
// compute pass: the embedding lookup, then per layer six dispatches (the q, k and v projections as one
// matvec with the attention rmsnorm fused in; rope, which also moves k and v into the KV cache; attention
// over the cache; the o projection adding into the residual stream; gate and up as one matvec with the
// ffn rmsnorm fused in, writing silu(gate)·up; the down projection adding into the residual stream), and
// the lm_head matvec with the final rmsnorm fused in. A prompt runs the same way in passes of up to 128
// tokens, with a tiled matmul for the projections and flash-style attention. Weights, activations and the
// cache stay on the GPU: only the logits Forward returns, or ForwardTopK's k (id, logit) pairs, are read
// back.
//
// An engine is built the same way whether the model is whole in memory (New) or streamed (Loader,
// LoadConverted): every buffer is planned and allocated from the config and the tensors' dtypes first, and
// the passes recorded; then each tensor is written to its place as it arrives, in any order, and dropped.
// The browser thus never holds more of the model than a shard and the tensors in flight.
package webgpu

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"unsafe"

	"github.com/oliverbestmann/webgpu/wgpu"

	"github.com/ilmweb/ilmweb/shaders"
)

// ErrNoAdapter means the system offers no usable WebGPU adapter (no GPU, no driver, or no Vulkan ICD).
var ErrNoAdapter = errors.New("webgpu: no adapter")

// ErrOutOfMemory means the GPU could not allocate a buffer: the platform reported it (the browser does,
// through an out-of-memory error scope; wgpu-native cannot, see device_native.go), or the engine's memory
// plan exceeds the budget it was given.
var ErrOutOfMemory = errors.New("webgpu: out of GPU memory")

// ErrLimits means the device's limits are too small for what the engine needs: a buffer or binding (a KV
// cache, a scratch buffer, two rows of a weight matrix) larger than maxBufferSize or
// maxStorageBufferBindingSize.
var ErrLimits = errors.New("webgpu: the device's limits are too small")

// ErrDeviceLost means the device was lost (the browser reset the GPU, the driver crashed, or the device was
// destroyed): every later call fails with it, and the engine has to be built again on a new device.
var ErrDeviceLost = errors.New("webgpu: the GPU device was lost")

// Device is a WebGPU device and the kernels compiled on it.
type Device struct {
	Adapter string      // adapter name, backend and type, for logs
	Limits  wgpu.Limits // the limits the device was created with (buffer and binding sizes are the adapter's own)
	// Subgroups says whether the device was created with subgroup operations (matvec_subgroup.wgsl).
	Subgroups bool
	// Vendor, Architecture and Driver identify the adapter for the autotune's cache (autotune.go).
	Vendor, Architecture, Driver string

	dev     *wgpu.Device
	queue   *wgpu.Queue
	modules map[string]*wgpu.ShaderModule // by WGSL file, or files joined by "+"
	kernels map[string]*kernel            // by entry point
	absent  *wgpu.Buffer                  // bound in place of an optional input that is missing, never read
	plat    platform                      // per-platform state (device_native.go, device_js.go)
	tuned   map[string]Kernels            // the autotune's choices made on this device, by shapes
}

// releaser is a GPU object of the binding.
type releaser interface{ Release() }

// Close frees the device and every object made on it (natively each is released here, newest first, never
// by a finalizer: see own in device_native.go). Nothing made on the device may be used afterwards.
func (d *Device) Close() {
	d.close()
	d.absent = nil
	clear(d.modules)
	clear(d.kernels)
}

// NewDevice opens the system's WebGPU adapter and requests a device with the adapter's own buffer and
// binding size limits (the 8B model's lm_head alone exceeds WebGPU's 128 MiB default binding).
// Before returning, it runs a start-up self-test (selftest.go): a device whose driver computes wrong
// results is refused with an error that says so.
func NewDevice() (*Device, error) {
	d := &Device{modules: map[string]*wgpu.ShaderModule{}, kernels: map[string]*kernel{}}
	if err := d.open(); err != nil {
		return nil, err
	}
	d.queue = d.dev.GetQueue()
	if err := d.selfTest(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// requiredLimits raises the limits the engine depends on to what the adapter supports and leaves the rest
// at WebGPU's defaults.
func requiredLimits(adapter wgpu.Limits) wgpu.Limits {
	l := wgpu.DefaultLimits()
	l.MaxBufferSize = adapter.MaxBufferSize
	l.MaxStorageBufferBindingSize = adapter.MaxStorageBufferBindingSize
	l.MaxStorageBuffersPerShaderStage = adapter.MaxStorageBuffersPerShaderStage
	l.MaxComputeWorkgroupStorageSize = adapter.MaxComputeWorkgroupStorageSize
	l.MaxComputeInvocationsPerWorkgroup = adapter.MaxComputeInvocationsPerWorkgroup
	l.MaxComputeWorkgroupSizeX = adapter.MaxComputeWorkgroupSizeX
	l.MaxComputeWorkgroupsPerDimension = adapter.MaxComputeWorkgroupsPerDimension
	return l
}

// kernel is one compute pipeline: an entry point of a WGSL file, with the bind group layout WebGPU derived
// from the bindings the entry point uses.
type kernel struct {
	name   string
	pipe   *wgpu.ComputePipeline
	layout *wgpu.BindGroupLayout
}

// kernel returns the pipeline of entry point entry in shaders/file.wgsl, compiling it on first use. file
// may name several files joined by "+": a variant's file compiled after the file whose bindings and helpers
// it uses (WGSL has no includes); a module using subgroups gets the directive its platform needs in front.
func (d *Device) kernel(file, entry string) (*kernel, error) {
	if k := d.kernels[entry]; k != nil {
		return k, nil
	}
	mod := d.modules[file]
	if mod == nil {
		var src strings.Builder
		files := strings.Split(file, "+")
		if slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, "_subgroup") }) {
			src.WriteString(subgroupsDirective) // directives come before everything else
		}
		for _, f := range files {
			b, err := fs.ReadFile(shaders.FS, f+".wgsl")
			if err != nil {
				return nil, fmt.Errorf("shader %s: %w", file, err)
			}
			src.Write(b)
		}
		var err error
		if mod, err = d.compile(file, src.String()); err != nil {
			return nil, err
		}
		d.modules[file] = mod
	}
	var pipe *wgpu.ComputePipeline
	err := d.scoped(func() (err error) {
		// The binding has no field for pipeline constants, so overrides keep their WGSL defaults; the
		// kernels are written so that the dispatch size never has to agree with them.
		pipe, err = d.dev.TryCreateComputePipeline(&wgpu.ComputePipelineDescriptor{
			Compute: wgpu.ProgrammableStageDescriptor{Module: mod, EntryPoint: entry},
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline %s in %s.wgsl: %w", entry, file, err)
	}
	k := &kernel{name: entry, pipe: own(d, pipe), layout: own(d, pipe.GetBindGroupLayout(0))}
	d.kernels[entry] = k
	return k, nil
}

// compile turns WGSL source into a shader module; a syntax or validation error comes back as an error
// carrying the compiler's message.
func (d *Device) compile(name, src string) (*wgpu.ShaderModule, error) {
	var mod *wgpu.ShaderModule
	err := d.scoped(func() (err error) {
		mod, err = d.dev.TryCreateShaderModule(&wgpu.ShaderModuleDescriptor{
			Label:      name,
			WGSLSource: &wgpu.ShaderSourceWGSL{Code: src},
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("shader %s: %w", name, err)
	}
	return own(d, mod), nil
}

// bind makes a bind group for k with bufs[i] at binding i; nil entries are bindings the entry point does
// not use (WebGPU leaves those out of the derived layout).
func (d *Device) bind(k *kernel, bufs ...*wgpu.Buffer) (*wgpu.BindGroup, error) {
	var entries []wgpu.BindGroupEntry
	for i, b := range bufs {
		if b != nil {
			entries = append(entries, wgpu.BindGroupEntry{Binding: uint32(i), Buffer: b, Size: wgpu.WholeSize})
		}
	}
	var bg *wgpu.BindGroup
	err := d.scoped(func() (err error) {
		bg, err = d.dev.TryCreateBindGroup(&wgpu.BindGroupDescriptor{Layout: k.layout, Entries: entries})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", k.name, err)
	}
	return own(d, bg), nil
}

// buffer allocates a zeroed buffer of at least size bytes, rounded up to 16 (uniform structs and copies
// need multiples of 4 or 16).
func (d *Device) buffer(label string, size uint64, usage wgpu.BufferUsage) (*wgpu.Buffer, error) {
	size = max(16, (size+15)&^15)
	if size > d.Limits.MaxBufferSize {
		return nil, fmt.Errorf("%w: buffer %s: %d bytes exceeds the device's maxBufferSize %d", ErrLimits, label, size, d.Limits.MaxBufferSize)
	}
	var b *wgpu.Buffer
	err := d.allocate(func() (err error) {
		b, err = d.dev.TryCreateBuffer(&wgpu.BufferDescriptor{Label: label, Size: size, Usage: usage})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("buffer %s (%d bytes): %w", label, size, err)
	}
	return own(d, b), nil
}

// storage is the usage of the engine's working buffers: bound to kernels, written and read by copies.
const storage = wgpu.BufferUsageStorage | wgpu.BufferUsageCopyDst | wgpu.BufferUsageCopySrc

// upload creates a storage buffer holding data.
func upload[T float32 | uint32](d *Device, label string, data []T) (*wgpu.Buffer, error) {
	b, err := d.buffer(label, uint64(4*len(data)), storage)
	if err != nil {
		return nil, err
	}
	if err := write(d, b, 0, data); err != nil {
		return nil, fmt.Errorf("upload %s: %w", label, err)
	}
	return b, nil
}

// write copies data into b at byte offset off (queue order: before the next submit's commands).
func write[T float32 | uint32](d *Device, b *wgpu.Buffer, off uint64, data []T) error {
	if len(data) == 0 {
		return nil
	}
	return d.writeBytes(b, off, unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data)))
}

// flush waits until the queue has done everything submitted and written so far: the platform then frees
// the staging copies of the writes, which would otherwise pile up while a model is uploaded.
func (d *Device) flush() error {
	if err := d.submit(func(*wgpu.CommandEncoder) error { return nil }); err != nil {
		return err
	}
	d.wait()
	return d.uncaptured()
}

// dispatch is one kernel launch of a pass. A pass runs n tokens (1 when decoding, up to the prefill
// chunk otherwise); the kernels read n from the Step uniform, and grid sizes the launch for it.
type dispatch struct {
	k    *kernel
	bg   *wgpu.BindGroup
	id   int                       // in the browser: the (pipeline, bind group) pair's index in the device's table (encode_js.go)
	grid func(n int) (x, y uint32) // workgroups

	// Bytes of weights the launch reads from memory: weights once, or once per tile of tokens.
	weights uint64
	tile    int // tokens per read of the weights; 0: one read whatever n
}

// weightBytes is how many bytes of weights c reads in a pass of n tokens.
func (c dispatch) weightBytes(n int) uint64 {
	if c.tile == 0 {
		return c.weights
	}
	return c.weights * uint64((n+c.tile-1)/c.tile)
}

// fixed is a grid of x workgroups whatever the number of tokens.
func fixed(x uint32) func(int) (uint32, uint32) {
	return func(int) (uint32, uint32) { return x, 1 }
}

// workgroups is the dispatch size for covering n items, items per workgroup, kept within one dimension's
// limit (the kernels loop over whatever a dispatch does not cover).
func (d *Device) workgroups(n, per int) uint32 {
	return uint32(max(1, min((n+per-1)/per, int(d.Limits.MaxComputeWorkgroupsPerDimension))))
}

// tally counts what encode records.
type tally struct {
	dispatches  int
	weightBytes uint64
}

// encode records ds, in order, for a pass of n tokens as one compute pass (WebGPU orders the dispatches'
// storage accesses), adding them to t. The platform records the commands (record: natively one binding
// call each; in the browser one JS call for the whole pass).
func (d *Device) encode(enc *wgpu.CommandEncoder, n int, t *tally, ds ...dispatch) error {
	if t != nil {
		for _, c := range ds {
			t.dispatches++
			t.weightBytes += c.weightBytes(n)
		}
	}
	return d.record(enc, commands(n, ds))
}

// commands are ds with their grids for a pass of n tokens.
func commands(n int, ds []dispatch) []command {
	cmds := make([]command, len(ds))
	for i, c := range ds {
		x, y := c.grid(n)
		cmds[i] = command{c, x, y}
	}
	return cmds
}

// command is a dispatch with its grid for one pass.
type command struct {
	dispatch
	x, y uint32
}

// run records ds for a pass of n tokens, submits it and returns without waiting.
func (d *Device) run(n int, ds ...dispatch) error {
	return d.submit(func(enc *wgpu.CommandEncoder) error { return d.encode(enc, n, nil, ds...) })
}

// submit records commands with rec and submits them. The encoder and the command buffer are released
// here, once the calls that use them have returned (see own).
func (d *Device) submit(rec func(enc *wgpu.CommandEncoder) error) error {
	return d.scoped(func() error {
		enc, err := d.dev.TryCreateCommandEncoder(nil)
		if err != nil {
			return err
		}
		defer enc.Release()
		if err := rec(enc); err != nil {
			return err
		}
		cmd, err := enc.TryFinish(nil)
		if err != nil {
			return err
		}
		defer cmd.Release()
		d.queue.Submit(cmd)
		return nil
	})
}

// read copies size bytes at offset off of src back to the CPU through staging, a MapRead buffer of at least
// size bytes, waiting for the work submitted before.
func (d *Device) read(src, staging *wgpu.Buffer, off, size uint64) ([]byte, error) {
	err := d.submit(func(enc *wgpu.CommandEncoder) error {
		return enc.TryCopyBufferToBuffer(src, off, staging, 0, size)
	})
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	return d.mapRead(staging, size)
}

// mapRead maps the first size bytes of staging, copies them out and unmaps it.
func (d *Device) mapRead(staging *wgpu.Buffer, size uint64) ([]byte, error) {
	var status wgpu.MapAsyncStatus
	done := false
	if err := staging.TryMapAsync(wgpu.MapModeRead, 0, size, func(s wgpu.MapAsyncStatus) {
		status, done = s, true
	}); err != nil {
		return nil, fmt.Errorf("map: %w", err)
	}
	for !done {
		d.dev.Poll(true, nil)
	}
	if status != wgpu.MapAsyncStatusSuccess {
		return nil, fmt.Errorf("map: %s", status)
	}
	out := make([]byte, size)
	copy(out, staging.GetMappedRange(0, uint(size)))
	if err := staging.TryUnmap(); err != nil {
		return nil, fmt.Errorf("unmap: %w", err)
	}
	return out, d.uncaptured()
}

// readback makes a buffer to read up to size bytes back through.
func (d *Device) readback(label string, size uint64) (*wgpu.Buffer, error) {
	return d.buffer(label, size, wgpu.BufferUsageMapRead|wgpu.BufferUsageCopyDst)
}

// floats reinterprets little-endian bytes as float32s (WebGPU hosts and wasm are little-endian).
func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), 4*len(out)), b)
	return out
}

// words reinterprets little-endian bytes as uint32s.
func words(b []byte) []uint32 {
	out := make([]uint32, len(b)/4)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), 4*len(out)), b)
	return out
}

// Lost returns, once the device is lost, an error wrapping ErrDeviceLost that says why; until then nil.
// Only the browser reports a loss this way (see device_native.go).
func (d *Device) Lost() error { return d.lost() }
