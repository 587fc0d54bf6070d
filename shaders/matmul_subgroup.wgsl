// Matrix product for prefill with subgroup reductions: matmul.wgsl's q4 product (compiled together with it,
// reusing its bindings, constants and result) computed as a matvec over a few tokens at once, the way the
// fastest engines run small batches: a workgroup of 64 threads takes SR rows × ST tokens, its threads stride
// along the columns one q4 group (32 columns) at a time, dequantise the SR rows' group into registers once
// and multiply it with the ST tokens' inputs, so each weight word is read once per ST tokens and nothing goes
// through workgroup memory until the end. The SR·ST partial sums (and ST sums of x² for NORM) of each thread
// are then added up with subgroupAdd, and only one sum per subgroup meets the others in workgroup memory.
// Needs the `subgroups` feature. Columns must be a multiple of 32; rows and tokens of any count. GLU row
// pairs stay together since SR is even and row blocks start at even rows.
//
// The tiled matmul_q4 reads each weight once per 32 tokens but stages both tiles in workgroup memory every
// 32 columns; which one is faster depends on the GPU, so the autotune times both (webgpu/variants.go).

const SR = 4u;       // rows per workgroup pass
const ST = 8u;       // tokens per workgroup pass
const SG_WG = 64u;   // threads per workgroup
const SG_MAX = 16u;  // the most subgroups in a workgroup (subgroups have at least 4 threads)
const SUMS = SR * ST + ST; // the products, then the sums of x² per token

var<workgroup> sg_part: array<f32, SUMS * SG_MAX>; // [sum][subgroup]

// sg_store adds up the subgroups' sums of the pass at rows r0…, tokens t0… and stores what exists: thread
// lid < SR·ST stores row lid / ST, token lid % ST.
fn sg_store(lid: u32, count: u32, r0: u32, t0: u32) {
  workgroupBarrier();
  if (lid < SR * ST) {
    let r = lid / ST;
    let j = lid % ST;
    let t = t0 + j;
    if (r0 + r < params.rows && t < step.n) {
      var sum = 0.0;
      var ss = 0.0;
      for (var s = 0u; s < count; s++) {
        sum += sg_part[lid * SG_MAX + s];
        ss += sg_part[(SR * ST + j) * SG_MAX + s];
      }
      var scale = 1.0;
      if ((params.flags & NORM) != 0u) {
        scale = inverseSqrt(ss / f32(params.cols) + params.eps);
      }
      let v = result(r0 + r, sum, scale);
      let base = t * params.y_stride;
      let at = params.row0 + r0 + r;
      switch (params.mode) {
        case ADD: {
          y[base + at] += v;
        }
        case GLU: {
          if (r % 2u == 0u) {
            var up = 0.0;
            for (var s = 0u; s < count; s++) {
              up += sg_part[(lid + ST) * SG_MAX + s];
            }
            let u = result(r0 + r + 1u, up, scale);
            y[base + at / 2u] = v / (1.0 + exp(-v)) * u;
          }
        }
        default: {
          y[base + at] = v;
        }
      }
    }
  }
  workgroupBarrier(); // sg_part is read above before the next pass overwrites it
}

@compute @workgroup_size(SG_WG)
fn matmul_q4_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32,
                      @builtin(subgroup_size) size: u32) {
  let groups = params.cols / 32u;
  let scale_words = (groups + 1u) / 2u;
  let xrow = params.cols / 4u; // vec4s per token
  let sg = lid / size;
  let count = (SG_WG + size - 1u) / size;
  for (var r0 = wid.x * SR; r0 < params.rows; r0 += nwg.x * SR) {
    for (var t0 = wid.y * ST; t0 < step.n; t0 += nwg.y * ST) {
      var acc: array<array<f32, ST>, SR>;
      var ss: array<f32, ST>;
      for (var g = lid; g < groups; g += SG_WG) {
        // the SR rows' 32 weights of group g, as 8 vec4s each
        var wq: array<array<vec4<f32>, 8>, SR>;
        for (var r = 0u; r < SR; r++) {
          let row = r0 + r;
          var s = 0.0;
          var q = vec4<u32>(0x88888888u); // nibbles of 8: zero
          if (row < params.rows) {
            let at = (row * groups + g) * 4u;
            q = vec4<u32>(w[at], w[at + 1u], w[at + 2u], w[at + 3u]);
            s = unpack2x16float(scales[row * scale_words + g / 2u])[g % 2u];
          }
          for (var i = 0u; i < 4u; i++) {
            let word = q[i];
            wq[r][2u * i] = (vec4<f32>(vec4<u32>(word, word >> 4u, word >> 8u, word >> 12u) & vec4<u32>(15u)) - 8.0) * s;
            wq[r][2u * i + 1u] = (vec4<f32>(vec4<u32>(word >> 16u, word >> 20u, word >> 24u, word >> 28u) & vec4<u32>(15u)) - 8.0) * s;
          }
        }
        for (var j = 0u; j < ST; j++) {
          let t = t0 + j;
          if (t >= step.n) {
            break;
          }
          let xo = t * xrow + 8u * g;
          for (var i = 0u; i < 8u; i++) {
            var v = x[xo + i];
            if ((params.flags & NORM) != 0u) {
              ss[j] += dot(v, v);
              v *= norm[8u * g + i];
            }
            for (var r = 0u; r < SR; r++) {
              acc[r][j] += dot(wq[r][i], v);
            }
          }
        }
      }
      for (var r = 0u; r < SR; r++) {
        for (var j = 0u; j < ST; j++) {
          let s = subgroupAdd(acc[r][j]);
          if (lane == 0u) {
            sg_part[(r * ST + j) * SG_MAX + sg] = s;
          }
        }
      }
      for (var j = 0u; j < ST; j++) {
        let s = subgroupAdd(ss[j]);
        if (lane == 0u) {
          sg_part[(SR * ST + j) * SG_MAX + sg] = s;
        }
      }
      sg_store(lid, count, r0, t0);
    }
  }
}
