//go:build !js

package webgpu

import "github.com/oliverbestmann/webgpu/wgpu"

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
