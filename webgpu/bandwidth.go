package webgpu

import (
	"fmt"
	"time"

	"github.com/oliverbestmann/webgpu/wgpu"
)

// CopyBandwidth measures the device's memory bandwidth with copy.wgsl: a kernel copying a buffer of bytes
// (rounded down to 16, at most the storage binding limit) to another, once to warm up, then timed over
// repetitions, each a submit, until at least 0.2 s (and 3 repetitions) have passed, then a wait for the
// GPU. It returns read + write bytes per second in GB/s (10⁹ bytes/s), counting both sides of the copy as
// STREAM's copy does: a decoder that only reads weights can at best read at this rate, so its weight
// bytes per second divided by this is its efficiency.
func (d *Device) CopyBandwidth(bytes uint64) (gbps float64, err error) {
	bytes = min(bytes, d.Limits.MaxStorageBufferBindingSize) &^ 15
	if bytes == 0 {
		return 0, fmt.Errorf("copy bandwidth: no bytes to copy")
	}
	src, err := d.buffer("copy src", bytes, storage)
	if err != nil {
		return 0, fmt.Errorf("copy bandwidth: %w", err)
	}
	defer src.Destroy()
	dst, err := d.buffer("copy dst", bytes, storage)
	if err != nil {
		return 0, fmt.Errorf("copy bandwidth: %w", err)
	}
	defer dst.Destroy()
	staging, err := d.readback("copy staging", 16)
	if err != nil {
		return 0, fmt.Errorf("copy bandwidth: %w", err)
	}
	defer staging.Destroy()
	c, err := d.copyWords(src, dst, bytes/16)
	if err != nil {
		return 0, fmt.Errorf("copy bandwidth: %w", err)
	}
	// wait submits a 16-byte read of dst behind the copies and waits for it.
	wait := func() error {
		_, err := d.read(dst, staging, 0, 16)
		return err
	}
	if err := d.run(1, c); err != nil {
		return 0, fmt.Errorf("copy bandwidth: %w", err)
	}
	if err := wait(); err != nil {
		return 0, fmt.Errorf("copy bandwidth: %w", err)
	}
	start := time.Now()
	reps := 0
	for reps < 3 || time.Since(start) < 200*time.Millisecond {
		if err := d.run(1, c); err != nil {
			return 0, fmt.Errorf("copy bandwidth: %w", err)
		}
		reps++
		if reps%4 == 0 || reps == 3 { // keep the queue short enough that the clock tracks the GPU
			if err := wait(); err != nil {
				return 0, fmt.Errorf("copy bandwidth: %w", err)
			}
		}
	}
	if err := wait(); err != nil {
		return 0, fmt.Errorf("copy bandwidth: %w", err)
	}
	return 2 * float64(bytes) * float64(reps) / time.Since(start).Seconds() / 1e9, nil
}

// copyWords: dst = src, n 16-byte words.
func (d *Device) copyWords(src, dst *wgpu.Buffer, n uint64) (dispatch, error) {
	return d.op("copy", "copy_words", fixed(d.workgroups(int(n), 4*wgSize)), []any{int(n)}, src, dst)
}
