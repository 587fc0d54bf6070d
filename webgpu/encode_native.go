//go:build !js

package webgpu

import (
	"time"

	"github.com/oliverbestmann/webgpu/wgpu"
)

// register has nothing to keep natively: record calls wgpu-native directly.
func (d *Device) register(*kernel, *wgpu.BindGroup) int { return 0 }

// record records cmds as one compute pass of enc: each command's pipeline, bind group and dispatch.
func (d *Device) record(enc *wgpu.CommandEncoder, cmds []command) error {
	pass := enc.BeginComputePass(nil)
	defer pass.Release()
	for _, c := range cmds {
		pass.SetPipeline(c.k.pipe)
		pass.SetBindGroup(0, c.bg, nil)
		pass.DispatchWorkgroups(c.x, c.y, 1)
	}
	return pass.TryEnd()
}

// gpuTime would time ds on the GPU with timestamp queries, but the binding's compute pass descriptor has no
// timestampWrites (nor its pass a writeTimestamp): natively the autotune times the submit.
func (d *Device) gpuTime([]dispatch, int) (time.Duration, bool, error) { return 0, false, nil }
