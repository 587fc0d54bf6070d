// Package shaders holds the engine's WGSL kernels, one file per op family, each named after its CPU twin in
// package model (matvec.wgsl ↔ model.Matmul for one token, with model.RMSNorm, model.SwiGLU and model.Add
// fused in; matmul.wgsl ↔ the same for many tokens; rope.wgsl ↔ model.Rope; attention.wgsl ↔
// model.Attention; embedding.wgsl ↔ model.Embedding; topk.wgsl ↔ model.Sampler's penalty and ordering;
// copy.wgsl, the bandwidth probe).
//
// Conventions shared by every kernel:
//   - Workgroup sizes are WGSL `override` constants with defaults. Every kernel is correct for any number of
//     workgroups (grid-stride loops), so the host's dispatch counts are performance choices, never a second
//     copy of the shader's constants.
//   - Binding 0 is the kernel's uniform Params; kernels that depend on the tokens of a pass read the shared
//     uniform Step {pos, n} at binding 1: the position of the pass's first token and its number of tokens.
//   - Weights are arrays of u32 words as docs/FORMAT.md lays them out; f16 scales are widened with
//     unpack2x16float, so no kernel needs the shader-f16 feature.
//   - Reductions go through workgroup memory: WG must be a power of two. matvec_subgroup.wgsl and
//     matmul_subgroup.wgsl add up with subgroup operations where the device has them.
//   - The binding cannot set override constants, so every override keeps its default, and a kernel's
//     variants (dtype, fused norm, output mode, workgroup size) are entry points or Params flags, never
//     pipeline constants. A variant's file (matvec_subgroup, matvec_q8, matmul_subgroup, attention_split) is compiled
//     together with its family's file, whose bindings and helpers it uses (WGSL has no includes).
package shaders

import "embed"

// FS holds the kernels: one NAME.wgsl per op.
//
//go:embed *.wgsl
var FS embed.FS
