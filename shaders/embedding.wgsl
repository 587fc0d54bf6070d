// Embedding row lookup, the twin of model.Embedding (and model.QuantMatrix.DequantRow): x[t] = row tokens[t]
// of the table, widened to f32, for every token t of the pass. The table may be split into row blocks; this
// dispatch reads the block of rows row0 … row0+rows−1 and writes only the tokens that fall in it.

override WG: u32 = 256; // threads per workgroup

struct Params {
  cols: u32,
  row0: u32,
  rows: u32,
}

struct Step {
  pos: u32,
  n: u32, // tokens in the pass
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;  // [n]
@group(0) @binding(3) var<storage, read> w: array<u32>;       // [rows, words per row]
@group(0) @binding(4) var<storage, read> scales: array<u32>;  // q4: [rows, ceil(cols/64)]
@group(0) @binding(5) var<storage, read_write> x: array<f32>; // [n, cols]

@compute @workgroup_size(WG)
fn embedding_q4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let words = params.cols / 8u;
  let scale_words = (params.cols / 32u + 1u) / 2u;
  for (var i = gid.x; i < step.n * params.cols; i += nwg.x * WG) {
    let t = i / params.cols;
    let c = i % params.cols;
    let row = tokens[t] - params.row0; // wraps around below row0
    if (row < params.rows) {
      let u = (w[row * words + c / 8u] >> (4u * (c % 8u))) & 15u;
      let g = c / 32u;
      let s = unpack2x16float(scales[row * scale_words + g / 2u])[g % 2u];
      x[i] = (f32(u) - 8.0) * s;
    }
  }
}

@compute @workgroup_size(WG)
fn embedding_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  for (var i = gid.x; i < step.n * params.cols; i += nwg.x * WG) {
    let row = tokens[i / params.cols] - params.row0;
    if (row < params.rows) {
      x[i] = bitcast<f32>(w[row * params.cols + i % params.cols]);
    }
  }
}
