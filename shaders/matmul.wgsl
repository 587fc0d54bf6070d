// Matrix product for prefill, many tokens per dispatch, the twin of model.Matmul: for every token t < Step.n
// and row r of one row block of W, y[t, row0 + r] = W[r]·x[t] (+ bias), with matvec.wgsl's fusions: NORM
// (RMS-normalise each x[t] first, the sums of squares gathered while x is loaded anyway) and the modes STORE,
// ADD (the residual connection) and GLU ((gate, up) row pairs give y[t, (row0 + 2i)/2] = silu(gate)·up).
//
// A workgroup computes a tile of TM rows × TN tokens. It walks the columns TK at a time: it dequantises the
// tile's TM × TK weights into workgroup memory once and loads the TN × TK inputs beside them, and each of its
// 64 threads then adds a 4 × 4 block (4 rows, 4 tokens) of products. So each weight word is read once per
// tile of TN tokens instead of once per token. Columns must be a multiple of 32 (q4) or 4 (f32); rows and
// tokens of any count (tiles are cut at the edges).

const TM = 32u;  // rows per tile
const TN = 32u;  // tokens per tile
const TK = 32u;  // columns per step: one q4 group
const PAD = 33u; // row stride of the tiles in workgroup memory (33 spreads a column over the banks)
const WG = 64u;  // threads: (TM/4)·(TN/4)

const BIAS = 1u;
const NORM = 2u;
const STORE = 0u;
const ADD = 1u;
const GLU = 2u;

struct Params {
  rows: u32,     // rows in this block
  cols: u32,     // length of each x[t]
  row0: u32,     // first row of this block in the whole matrix (indexes bias and y)
  flags: u32,    // BIAS | NORM
  mode: u32,     // STORE, ADD or GLU
  eps: f32,      // RMSNorm epsilon when NORM
  y_stride: u32, // length of a row y[t]: the matrix's rows, or half of them for GLU
}

struct Step {
  pos: u32,
  n: u32, // tokens in the pass
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // [n, cols/4]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;     // [n, y_stride]
@group(0) @binding(4) var<storage, read> w: array<u32>;           // q4: [rows, cols/8]; f32: [rows, cols]
@group(0) @binding(5) var<storage, read> scales: array<u32>;      // q4: [rows, ceil(cols/64)], two f16 per word
@group(0) @binding(6) var<storage, read> bias: array<f32>;        // [matrix rows] when BIAS
@group(0) @binding(7) var<storage, read> norm: array<vec4<f32>>;  // [cols/4] when NORM

var<workgroup> wt: array<f32, TM * PAD>; // the weights of one step: [TM rows][TK columns]
var<workgroup> xt: array<f32, TN * PAD>; // the inputs of one step: [TN tokens][TK columns]
var<workgroup> sq: array<f32, TN * 8u>;  // sums of x² per token, from the 8 threads that load it

// load_x puts columns k0 … k0+TK−1 of tokens t0 … t0+TN−1 into xt (zero outside x), times the norm weight
// when NORM. Thread lid loads the 16-byte piece c4 = lid % 8 of tokens lid/8 + 8j, j < 4, in every step, so
// it adds those tokens' squares to ss[j].
fn load_x(lid: u32, t0: u32, k0: u32, ss: ptr<function, vec4<f32>>) {
  let c4 = lid % 8u;
  let col = k0 + 4u * c4;
  for (var j = 0u; j < 4u; j++) {
    let tt = lid / 8u + 8u * j;
    var v = vec4<f32>(0.0);
    if (t0 + tt < step.n && col < params.cols) {
      let i = col / 4u;
      v = x[(t0 + tt) * (params.cols / 4u) + i];
      if ((params.flags & NORM) != 0u) {
        (*ss)[j] += dot(v, v);
        v *= norm[i];
      }
    }
    for (var e = 0u; e < 4u; e++) {
      xt[tt * PAD + 4u * c4 + e] = v[e];
    }
  }
}

// product adds the step's TK columns of thread lid's 4 × 4 block to acc (acc[i][j]: row 4·(lid%8)+i,
// token 4·(lid/8)+j of the tile).
fn product(lid: u32, acc: ptr<function, array<vec4<f32>, 4>>) {
  let r = 4u * (lid % 8u);
  let t = 4u * (lid / 8u);
  for (var k = 0u; k < TK; k++) {
    let b = vec4<f32>(xt[t * PAD + k], xt[(t + 1u) * PAD + k], xt[(t + 2u) * PAD + k], xt[(t + 3u) * PAD + k]);
    for (var i = 0u; i < 4u; i++) {
      (*acc)[i] += wt[(r + i) * PAD + k] * b;
    }
  }
}

fn result(r: u32, sum: f32, scale: f32) -> f32 {
  var v = sum * scale;
  if ((params.flags & BIAS) != 0u) {
    v += bias[params.row0 + r];
  }
  return v;
}

// finish stores thread lid's block of the tile at rows r0…, tokens t0…: ss holds its sums of x² (see load_x).
fn finish(lid: u32, r0: u32, t0: u32, acc: array<vec4<f32>, 4>, ss: vec4<f32>) {
  for (var j = 0u; j < 4u; j++) {
    sq[(lid / 8u + 8u * j) * 8u + lid % 8u] = ss[j];
  }
  workgroupBarrier();
  let r = r0 + 4u * (lid % 8u);
  let t = t0 + 4u * (lid / 8u);
  for (var j = 0u; j < 4u; j++) {
    var scale = 1.0;
    if ((params.flags & NORM) != 0u) {
      var s = 0.0;
      for (var c = 0u; c < 8u; c++) {
        s += sq[(t - t0 + j) * 8u + c];
      }
      scale = inverseSqrt(s / f32(params.cols) + params.eps);
    }
    if (t + j >= step.n) {
      continue;
    }
    let base = (t + j) * params.y_stride;
    for (var i = 0u; i < 4u; i++) {
      if (r + i >= params.rows) {
        continue;
      }
      let v = result(r + i, acc[i][j], scale);
      let at = params.row0 + r + i;
      switch (params.mode) {
        case ADD: {
          y[base + at] += v;
        }
        case GLU: {
          if (i % 2u == 0u) {
            let up = result(r + i + 1u, acc[i + 1u][j], scale);
            y[base + at / 2u] = v / (1.0 + exp(-v)) * up;
          }
        }
        default: {
          y[base + at] = v;
        }
      }
    }
  }
  workgroupBarrier(); // sq is read above before the next tile overwrites it
}

// q4: thread lid dequantises words 2·(lid%2) and 2·(lid%2)+1 (16 columns) of the step's group of row lid/2.
@compute @workgroup_size(WG)
fn matmul_q4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let groups = params.cols / 32u;
  let scale_words = (groups + 1u) / 2u;
  for (var r0 = wid.x * TM; r0 < params.rows; r0 += nwg.x * TM) {
    for (var t0 = wid.y * TN; t0 < step.n; t0 += nwg.y * TN) {
      var acc: array<vec4<f32>, 4>;
      var ss = vec4<f32>(0.0);
      for (var g = 0u; g < groups; g++) {
        let rr = lid / 2u;
        let row = r0 + rr;
        for (var h = 0u; h < 2u; h++) {
          let wi = 2u * (lid % 2u) + h;
          var q = 0x88888888u; // nibbles of 8: zero
          var s = 0.0;
          if (row < params.rows) {
            q = w[(row * groups + g) * 4u + wi];
            s = unpack2x16float(scales[row * scale_words + g / 2u])[g % 2u];
          }
          for (var e = 0u; e < 8u; e++) {
            wt[rr * PAD + 8u * wi + e] = (f32((q >> (4u * e)) & 15u) - 8.0) * s;
          }
        }
        load_x(lid, t0, 32u * g, &ss);
        workgroupBarrier();
        product(lid, &acc);
        workgroupBarrier();
      }
      finish(lid, r0, t0, acc, ss);
    }
  }
}

// f32: thread lid loads the 16-byte pieces lid, lid + 64, … of the step's TM × TK weights (8 per row).
@compute @workgroup_size(WG)
fn matmul_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  for (var r0 = wid.x * TM; r0 < params.rows; r0 += nwg.x * TM) {
    for (var t0 = wid.y * TN; t0 < step.n; t0 += nwg.y * TN) {
      var acc: array<vec4<f32>, 4>;
      var ss = vec4<f32>(0.0);
      for (var k0 = 0u; k0 < params.cols; k0 += TK) {
        for (var p = lid; p < TM * TK / 4u; p += WG) {
          let rr = p / 8u;
          let col = k0 + 4u * (p % 8u);
          var v = vec4<f32>(0.0);
          if (r0 + rr < params.rows && col < params.cols) {
            let at = (r0 + rr) * params.cols + col;
            v = vec4<f32>(bitcast<f32>(w[at]), bitcast<f32>(w[at + 1u]), bitcast<f32>(w[at + 2u]), bitcast<f32>(w[at + 3u]));
          }
          for (var e = 0u; e < 4u; e++) {
            wt[rr * PAD + 4u * (p % 8u) + e] = v[e];
          }
        }
        load_x(lid, t0, k0, &ss);
        workgroupBarrier();
        product(lid, &acc);
        workgroupBarrier();
      }
      finish(lid, r0, t0, acc, ss);
    }
  }
}
