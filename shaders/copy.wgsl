// The bandwidth probe's kernel: dst = src, 16 bytes per thread per step. It reads and writes memory at the
// rate the decoding kernels can at best read weights, so their speed is reported as a ratio to it.

override WG: u32 = 256; // threads per workgroup

struct Params {
  n: u32, // 16-byte words
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(WG)
fn copy_words(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  for (var i = gid.x; i < params.n; i += nwg.x * WG) {
    dst[i] = src[i];
  }
}
