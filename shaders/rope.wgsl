// RoPE for the tokens of a pass, the twin of model.Rope, and the step that moves their keys and values into
// the KV cache: the qkv projection leaves each token's q, k and v side by side in a row of qkv [n, q_stride];
// this rotates q in place and writes the rotated k and the unchanged v of token t to position pos + t of
// the caches. rotate_half style: dimension i of each head pairs with i + head_dim/2, at angle
// f32(pos + t)·inv_freq[i] (a float32 product, as in HF). A workgroup handles one (token, head) at a time,
// the query heads first, then the KV heads.

override WG: u32 = 64; // threads per workgroup

struct Params {
  heads: u32,
  kv_heads: u32,
  head_dim: u32,
  q_stride: u32, // row length of qkv: (heads + 2·kv_heads)·head_dim
  kv_f16: u32,   // the caches hold f16 pairs
}

struct Step {
  pos: u32,
  n: u32, // tokens in the pass
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;     // [head_dim/2]
@group(0) @binding(3) var<storage, read_write> qkv: array<f32>;    // [n, q_stride]
@group(0) @binding(4) var<storage, read_write> k_cache: array<u32>; // [max_ctx, kv_heads, head_dim], f32 or f16 pairs
@group(0) @binding(5) var<storage, read_write> v_cache: array<u32>; // [max_ctx, kv_heads, head_dim], f32 or f16 pairs

// sincos returns (sin a, cos a) to within about 1e-6 for the angles RoPE meets (up to ~10⁵ radians). WGSL's
// sin and cos only promise an absolute error of 2^-11 on [−π, π] (SwiftShader's reach 4e-4), and nothing
// beyond: so a = k·π/2 + r with |r| ≤ π/4, π/2 split in three (Cody–Waite) so that k·PIO2_1 is exact, then
// Cephes' single-precision polynomials for sin and cos of r, and the quadrant k mod 4 picks signs and order.
const PIO2_1 = 1.5703125;
const PIO2_2 = 4.837512969970703125e-4;
const PIO2_3 = 7.54978995489188216e-8;

fn sincos(a: f32) -> vec2<f32> {
  let k = round(a * 0.63661977236758134);
  let r = ((a - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  switch (i32(k) & 3) {
    case 0: { return vec2<f32>(s, c); }
    case 1: { return vec2<f32>(c, -s); }
    case 2: { return vec2<f32>(-s, -c); }
    default: { return vec2<f32>(-c, s); }
  }
}

// rotate returns dimensions i, i+1 of the head at qkv[j] (the first dimension of the head plus i) and their
// partners i+half, i+half+1, rotated for position p: (x_i, x_i+1, x_i+half, x_i+half+1).
fn rotate(j: u32, i: u32, half: u32, p: f32) -> vec4<f32> {
  let a = sincos(p * inv_freq[i]);
  let b = sincos(p * inv_freq[i + 1u]);
  let u = vec2<f32>(qkv[j], qkv[j + 1u]);
  let v = vec2<f32>(qkv[j + half], qkv[j + half + 1u]);
  let s = vec2<f32>(a.x, b.x);
  let c = vec2<f32>(a.y, b.y);
  return vec4<f32>(u * c - v * s, v * c + u * s);
}

// store_k and store_v write dimensions at, at+1 of a cache: words at, at+1 (f32) or word at/2 (f16 pair).
fn store_k(at: u32, v: vec2<f32>) {
  if (params.kv_f16 != 0u) {
    k_cache[at / 2u] = pack2x16float(v);
  } else {
    k_cache[at] = bitcast<u32>(v.x);
    k_cache[at + 1u] = bitcast<u32>(v.y);
  }
}

fn store_v(at: u32, v: vec2<f32>) {
  if (params.kv_f16 != 0u) {
    v_cache[at / 2u] = pack2x16float(v);
  } else {
    v_cache[at] = bitcast<u32>(v.x);
    v_cache[at + 1u] = bitcast<u32>(v.y);
  }
}

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let hd = params.head_dim;
  let half = hd / 2u;
  let heads = params.heads + params.kv_heads;
  let kv_dim = params.kv_heads * hd;
  for (var th = wid.x; th < step.n * heads; th += nwg.x) {
    let t = th / heads;
    let h = th % heads;
    let p = f32(step.pos + t);
    let row = t * params.q_stride;
    for (var i = 2u * lid; i < half; i += 2u * WG) {
      if (h < params.heads) {
        let j = row + h * hd + i;
        let r = rotate(j, i, half, p);
        qkv[j] = r.x;
        qkv[j + 1u] = r.y;
        qkv[j + half] = r.z;
        qkv[j + half + 1u] = r.w;
      } else {
        let kh = (h - params.heads) * hd + i;
        let j = row + params.heads * hd + kh;
        let r = rotate(j, i, half, p);
        let at = (step.pos + t) * kv_dim + kh;
        store_k(at, r.xy);
        store_k(at + half, r.zw);
        store_v(at, vec2<f32>(qkv[j + kv_dim], qkv[j + kv_dim + 1u]));
        store_v(at + half, vec2<f32>(qkv[j + kv_dim + half], qkv[j + kv_dim + half + 1u]));
      }
    }
  }
}
