// Package shaders holds the engine's WGSL kernels, one file per op, each named after its CPU twin in package
// model (rmsnorm.wgsl ↔ model.RMSNorm, matvec.wgsl ↔ model.Matmul for one token, …).
//
// Conventions shared by every kernel:
//   - Workgroup sizes are WGSL `override` constants with defaults. Every kernel is correct for any number of
//     workgroups (grid-stride loops), so the host's dispatch counts are performance choices, never a second
//     copy of the shader's constants.
//   - Binding 0 is the kernel's uniform Params; kernels that depend on the token being decoded read the shared
//     uniform Step {token, pos} at binding 1.
//   - Weights are arrays of u32 words as docs/FORMAT.md lays them out; f16 scales are widened with
//     unpack2x16float, so no kernel needs the shader-f16 feature.
//   - Reductions go through workgroup memory (no subgroups): WG must be a power of two.
package shaders

import "embed"

// FS holds the kernels: one NAME.wgsl per op.
//
//go:embed *.wgsl
var FS embed.FS
