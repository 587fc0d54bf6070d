// Matrix-vector product with x quantized to int8: matvec.wgsl's q4 kernel (compiled together with it,
// reusing its bindings and helpers) on dot4I8Packed, the WGSL language feature
// packed_4x8_integer_dot_product, which GPUs run as one 4-way integer dot product instruction.
//
// quantize_q8 quantizes x once per projection input, RMS-normalised first when NORM (so matvec_q4_q8 runs
// without NORM): per group of 32 columns, scale s = max|x|/127 and q = round(x/s) in [−127, 127]. The
// error this adds to W·x is at most Σ_groups (s/2)·Σ_group |w| per row (half a step per column, the twin
// test checks that bound against the f32 product).
//
// xq holds, per group, the 32 int8 in the order the q4 words' nibbles pair with them: for word i of the
// group (columns 8i … 8i+7), first the even columns 8i, 8i+2, 8i+4, 8i+6 packed (they meet q & 0x0F0F0F0F),
// then the odd ones (they meet (q >> 4) & 0x0F0F0F0F). The nibbles are taken as u in [0, 15], so
// Σ (u − 8)·q = dot4I8Packed(u, q) summed − 8·Σq, and xs holds Σq per group with the scale.

@group(0) @binding(8) var<storage, read_write> xq: array<vec4<u32>>; // [cols/32, 2]: the groups' 8 words
@group(0) @binding(9) var<storage, read_write> xs: array<vec2<f32>>; // [cols/32]: (scale, Σq)

const QWG = 256u; // quantize_q8's threads: one workgroup reads the whole row
var<workgroup> qred: array<f32, QWG>;

// quantize_q8 writes xq and xs for the last token's row of x (row Step.n − 1 of x [n, cols]).
@compute @workgroup_size(QWG)
fn quantize_q8(@builtin(local_invocation_index) lid: u32) {
  let pieces = params.cols / 4u;
  let xo = (step.n - 1u) * pieces;
  var ss = 0.0;
  for (var i = lid; i < pieces; i += QWG) {
    let v = x[xo + i];
    ss += dot(v, v);
  }
  qred[lid] = ss;
  workgroupBarrier();
  for (var s = QWG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      qred[lid] += qred[lid + s];
    }
    workgroupBarrier();
  }
  var rms = 1.0;
  if ((params.flags & NORM) != 0u) {
    rms = inverseSqrt(qred[0] / f32(params.cols) + params.eps);
  }
  for (var g = lid; g < params.cols / 32u; g += QWG) {
    var v: array<vec4<f32>, 8>;
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
      var p = x[xo + 8u * g + i] * rms;
      if ((params.flags & NORM) != 0u) {
        p *= norm[8u * g + i];
      }
      v[i] = p;
      let a = abs(p);
      amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let s = amax / 127.0;
    var inv = 0.0;
    if (s > 0.0) {
      inv = 1.0 / s;
    }
    var packed: array<u32, 8>;
    var sum = 0;
    for (var i = 0u; i < 4u; i++) {
      let a = vec4<i32>(clamp(round(v[2u * i] * inv), vec4(-127.0), vec4(127.0)));
      let b = vec4<i32>(clamp(round(v[2u * i + 1u] * inv), vec4(-127.0), vec4(127.0)));
      let even = vec4<i32>(a.x, a.z, b.x, b.z);
      let odd = vec4<i32>(a.y, a.w, b.y, b.w);
      packed[2u * i] = pack4xI8(even);
      packed[2u * i + 1u] = pack4xI8(odd);
      sum += even.x + even.y + even.z + even.w + odd.x + odd.y + odd.z + odd.w;
    }
    xq[2u * g] = vec4<u32>(packed[0], packed[1], packed[2], packed[3]);
    xq[2u * g + 1u] = vec4<u32>(packed[4], packed[5], packed[6], packed[7]);
    xs[g] = vec2<f32>(s, f32(sum));
  }
}

const LOW_NIBBLES = 0x0F0F0F0Fu;

// dot8_q8 is Σ u·q over the 8 nibbles u of q4 word w and their int8 columns: even and odd packed.
fn dot8_q8(w: u32, even: u32, odd: u32) -> i32 {
  return dot4I8Packed(w & LOW_NIBBLES, even) + dot4I8Packed((w >> 4u) & LOW_NIBBLES, odd);
}

// q4_q8_rows is matvec.wgsl's q4_rows reading xq and xs instead of x.
fn q4_q8_rows(wg: u32, lid: u32, r0: u32, acc: ptr<function, array<f32, ROWS>>) {
  let groups = params.cols / 32u;
  let scale_words = (groups + 1u) / 2u;
  for (var g = lid; g < groups; g += wg) {
    let a = xq[2u * g];
    let b = xq[2u * g + 1u];
    let xg = xs[g];
    let bias8 = 8 * i32(xg.y);
    for (var r = 0u; r < ROWS; r++) {
      let row = min(r0 + r, params.rows - 1u); // rows past the end compute a copy of the last row, never stored
      let q = w[row * groups + g];
      let s = unpack2x16float(scales[row * scale_words + g / 2u])[g % 2u];
      let d = dot8_q8(q.x, a.x, a.y) + dot8_q8(q.y, a.z, a.w) + dot8_q8(q.z, b.x, b.y) + dot8_q8(q.w, b.z, b.w);
      (*acc)[r] += f32(d - bias8) * (s * xg.x);
    }
  }
}

fn q4_q8_body(wg: u32, wid: u32, nwg: u32, lid: u32) {
  for (var r0 = wid * ROWS; r0 < params.rows; r0 += nwg * ROWS) {
    var acc: array<f32, ROWS>;
    q4_q8_rows(wg, lid, r0, &acc);
    finish(wg, lid, r0, acc, 0.0);
  }
}

@compute @workgroup_size(64)
fn matvec_q4_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  q4_q8_body(64u, wid.x, nwg.x, lid);
}

@compute @workgroup_size(256)
fn matvec_q4_q8_256(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  q4_q8_body(256u, wid.x, nwg.x, lid);
}
