// Matrix-vector product for decoding one token, the twin of model.Matmul with T = 1 (and of
// model.QuantMatrix.DotRow), with the ops around a projection fused in so that a decoded token needs few
// dispatches:
//   - NORM: x is first RMS-normalised with the weight `norm` (the twin of model.RMSNorm). Since
//     W·(x·s·norm) = s·(W·(x·norm)), each thread adds up x² over the columns it reads anyway, the sums meet in
//     the same reduction as the dot products, and s = rsqrt(mean(x²) + eps) scales the result: the norm costs
//     no extra pass over x and no dispatch.
//   - mode STORE: y[row0 + r] = W[r]·x (+ bias); ADD: y[row0 + r] += W[r]·x (+ bias), the residual connection;
//     GLU: rows come in (gate, up) pairs, 2i and 2i+1, and y[(row0 + 2i)/2] = silu(gate)·up (model.SwiGLU).
// x is the last token's row of the pass (row Step.n − 1 of x [n, cols]): a one-token pass reads row 0, and
// a prefill pass's lm_head reads only the token whose logits are wanted.
//
// A workgroup computes ROWS rows at a time. Its threads stride along the rows in 16-byte pieces (a q4 group
// of 32 columns, or 4 f32 columns), so neighbouring threads read neighbouring bytes, and each piece of x they
// load serves all ROWS rows; every thread keeps one partial sum per row, and workgroup memory adds them
// up. Columns must be a multiple of 32 (q4) or 4 (f32). Large matrices are split into row blocks that
// each fit one storage binding, one dispatch per block; GLU blocks start at even rows.
//
// Variants (chosen at load by the autotune, see webgpu/variants.go): the binding cannot set override
// constants, so each workgroup size is an entry point of its own (matvec_q4 with 64 threads, matvec_q4_128,
// matvec_q4_256, the same for f32), all sharing one body that takes the size as an argument.
// matvec_subgroup.wgsl adds the sums up with subgroup operations instead, and matvec_q8.wgsl reads x
// quantized to int8 with dot4I8Packed; both are compiled together with this file.

const MAX_WG = 256u; // the largest workgroup size of the entry points; every size is a power of two ≥ 64
const ROWS = 4u;     // rows per workgroup pass (per-thread accumulators need a constant count); even

// flags
const BIAS = 1u;
const NORM = 2u;
// modes
const STORE = 0u;
const ADD = 1u;
const GLU = 2u;

struct Params {
  rows: u32,  // rows in this block
  cols: u32,  // length of x
  row0: u32,  // first row of this block in the whole matrix (indexes bias and y)
  flags: u32, // BIAS | NORM
  mode: u32,  // STORE, ADD or GLU
  eps: f32,   // RMSNorm epsilon when NORM
}

struct Step {
  pos: u32,
  n: u32, // tokens in the pass
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // [n, cols/4]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // [matrix rows], or [matrix rows / 2] for GLU
@group(0) @binding(4) var<storage, read> w: array<vec4<u32>>;     // [rows, 16-byte pieces per row]
@group(0) @binding(5) var<storage, read> scales: array<u32>;      // q4: [rows, ceil(cols/64)], two f16 per word
@group(0) @binding(6) var<storage, read> bias: array<f32>;        // [matrix rows] when BIAS
@group(0) @binding(7) var<storage, read> norm: array<vec4<f32>>;  // [cols/4] when NORM

// partial[r·MAX_WG + i], i < count: the sums to add up for row r (row ROWS: the sums of x²), one per thread
// (or per subgroup). They are added in two steps of SPLIT (two barriers, where a tree takes log2(WG)):
// (ROWS+1)·SPLIT threads add up every SPLIT-th sum each into part, then each output thread adds up SPLIT of
// those.
const SPLIT = 8u; // every workgroup size ≥ (ROWS + 1)·SPLIT
var<workgroup> partial: array<f32, (ROWS + 1u) * MAX_WG>;
var<workgroup> part: array<f32, (ROWS + 1u) * SPLIT>;

// load returns x's 16-byte piece i, times the norm weight when NORM, and adds its squares to ss.
fn load(xo: u32, i: u32, ss: ptr<function, f32>) -> vec4<f32> {
  let v = x[xo + i];
  if ((params.flags & NORM) != 0u) {
    *ss += dot(v, v);
    return v * norm[i];
  }
  return v;
}

// total is the sum of row r's SPLIT parts (row ROWS: the sum of x²).
fn total(r: u32) -> f32 {
  var s = 0.0;
  for (var c = 0u; c < SPLIT; c++) {
    s += part[r * SPLIT + c];
  }
  return s;
}

// result is row r (of the block) from its sum.
fn result(r: u32, sum: f32, scale: f32) -> f32 {
  var v = sum * scale;
  if ((params.flags & BIAS) != 0u) {
    v += bias[params.row0 + r];
  }
  return v;
}

// finish adds up the wg threads' partial sums of rows r0 … r0+ROWS-1 and stores the rows that exist.
fn finish(wg: u32, lid: u32, r0: u32, acc: array<f32, ROWS>, ss: f32) {
  for (var r = 0u; r < ROWS; r++) {
    partial[r * MAX_WG + lid] = acc[r];
  }
  partial[ROWS * MAX_WG + lid] = ss;
  store_rows(lid, r0, wg);
}

// store_rows adds up partial's first count sums per row (the caller's threads wrote them) and stores the
// rows r0 … r0+ROWS-1 that exist. count is read by each thread from its own argument: callers pass a value
// that is the same for every thread (the workgroup size or the number of subgroups).
fn store_rows(lid: u32, r0: u32, count: u32) {
  workgroupBarrier();
  if (lid < (ROWS + 1u) * SPLIT) {
    let r = lid / SPLIT;
    var s = 0.0;
    for (var i = lid % SPLIT; i < count; i += SPLIT) {
      s += partial[r * MAX_WG + i];
    }
    part[lid] = s;
  }
  workgroupBarrier();
  let row = r0 + lid;
  if (lid < ROWS && row < params.rows) {
    var scale = 1.0;
    if ((params.flags & NORM) != 0u) {
      scale = inverseSqrt(total(ROWS) / f32(params.cols) + params.eps);
    }
    let v = result(row, total(lid), scale);
    let at = params.row0 + row;
    switch (params.mode) {
      case ADD: {
        y[at] += v;
      }
      case GLU: {
        if (lid % 2u == 0u) {
          let up = result(row + 1u, total(lid + 1u), scale);
          y[at / 2u] = v / (1.0 + exp(-v)) * up;
        }
      }
      default: {
        y[at] = v;
      }
    }
  }
  workgroupBarrier(); // the sums are read above before the next pass overwrites them
}

// dot8 is the dot product of the 8 nibbles of a q4 word, as u − 8, with columns xa, xb (nibble k is column k).
fn dot8(q: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
  let v = vec4<u32>(q);
  let lo = vec4<f32>((v >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)) - 8.0;
  let hi = vec4<f32>((v >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u)) - 8.0;
  return dot(lo, xa) + dot(hi, xb);
}

// q4: one 16-byte piece is a group of 32 columns, 8 per word, column 8i+k in bits 4k … 4k+3 of word i as u,
// value (u − 8)·scale, with the group's f16 scale. wg is the workgroup size of the entry point.
fn q4_body(wg: u32, wid: u32, nwg: u32, lid: u32) {
  for (var r0 = wid * ROWS; r0 < params.rows; r0 += nwg * ROWS) {
    var acc: array<f32, ROWS>;
    var ss = 0.0;
    q4_rows(wg, lid, r0, &acc, &ss);
    finish(wg, lid, r0, acc, ss);
  }
}

// q4_rows adds this thread's share of rows r0 … r0+ROWS-1 of W·x to acc, and of Σx² to ss.
fn q4_rows(wg: u32, lid: u32, r0: u32, acc: ptr<function, array<f32, ROWS>>, ss: ptr<function, f32>) {
  let groups = params.cols / 32u;
  let scale_words = (groups + 1u) / 2u;
  let xo = (step.n - 1u) * (params.cols / 4u);
  for (var g = lid; g < groups; g += wg) {
    var xs: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
      xs[i] = load(xo, 8u * g + i, ss);
    }
    for (var r = 0u; r < ROWS; r++) {
      let row = min(r0 + r, params.rows - 1u); // rows past the end compute a copy of the last row, never stored
      let q = w[row * groups + g];
      let s = unpack2x16float(scales[row * scale_words + g / 2u])[g % 2u];
      (*acc)[r] += (dot8(q.x, xs[0], xs[1]) + dot8(q.y, xs[2], xs[3]) + dot8(q.z, xs[4], xs[5]) + dot8(q.w, xs[6], xs[7])) * s;
    }
  }
}

// f32: one float32 per word (parity runs against the CPU reference).
fn f32_body(wg: u32, wid: u32, nwg: u32, lid: u32) {
  let pieces = params.cols / 4u;
  let xo = (step.n - 1u) * pieces;
  for (var r0 = wid * ROWS; r0 < params.rows; r0 += nwg * ROWS) {
    var acc: array<f32, ROWS>;
    var ss = 0.0;
    for (var i = lid; i < pieces; i += wg) {
      let xi = load(xo, i, &ss);
      for (var r = 0u; r < ROWS; r++) {
        let row = min(r0 + r, params.rows - 1u);
        acc[r] += dot(bitcast<vec4<f32>>(w[row * pieces + i]), xi);
      }
    }
    finish(wg, lid, r0, acc, ss);
  }
}

@compute @workgroup_size(64)
fn matvec_q4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  q4_body(64u, wid.x, nwg.x, lid);
}

@compute @workgroup_size(128)
fn matvec_q4_128(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  q4_body(128u, wid.x, nwg.x, lid);
}

@compute @workgroup_size(256)
fn matvec_q4_256(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  q4_body(256u, wid.x, nwg.x, lid);
}

@compute @workgroup_size(64)
fn matvec_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  f32_body(64u, wid.x, nwg.x, lid);
}

@compute @workgroup_size(128)
fn matvec_f32_128(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  f32_body(128u, wid.x, nwg.x, lid);
}

@compute @workgroup_size(256)
fn matvec_f32_256(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  f32_body(256u, wid.x, nwg.x, lid);
}
