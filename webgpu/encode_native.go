//go:build !js

package webgpu

import "github.com/oliverbestmann/webgpu/wgpu"

// register has nothing to keep natively: record calls wgpu-native directly.
func (d *Device) register(*kernel, *wgpu.BindGroup) int { return 0 }

// record sets each command's pipeline and bind group and dispatches it.
func (d *Device) record(pass *wgpu.ComputePassEncoder, cmds []command) {
	for _, c := range cmds {
		pass.SetPipeline(c.k.pipe)
		pass.SetBindGroup(0, c.bg, nil)
		pass.DispatchWorkgroups(c.x, c.y, 1)
	}
}
