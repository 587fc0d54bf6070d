// Causal grouped-query attention over the KV cache, the twin of model.Attention: query t of the pass sits
// at position pos + t and sees keys 0 … pos + t; query head h reads KV head h / (heads / kv_heads); softmax
// in float32. The queries are the q part of the qkv rows ([n, q_stride], q at the start of each row); the
// output is [n, heads·head_dim]. The caches hold f32 words, or with kv_f16 f16 pairs (see rope.wgsl).
//
// attention (decode, one query): a workgroup per query head; two passes over the scores, which are kept in
// a scratch buffer so any context length fits, and all WG threads share the keys.
// attention_prefill (n queries): a workgroup per (block of BQ queries, head) streams over the keys BK at a
// time with an online softmax (running maximum m, sum l and output o, rescaled when m grows: flash
// attention), so its cost grows linearly with the context and no scores are stored.

override WG: u32 = 128; // threads per workgroup, a power of two, at least head_dim

const BQ = 8u;   // queries per prefill workgroup
const BK = 16u;  // keys per prefill step
const HD = 128u; // the largest head_dim (workgroup arrays need a constant size)

struct Params {
  heads: u32,
  kv_heads: u32,
  head_dim: u32,
  q_stride: u32, // row length of the qkv rows holding the queries
  max_ctx: u32,  // row length of scores (decode)
  scale: f32,    // 1/sqrt(head_dim)
  kv_f16: u32,   // the caches hold f16 pairs
  splits: u32,   // attention_split.wgsl: KV splits per head (attention_merge)
}

struct Step {
  pos: u32,
  n: u32, // queries in the pass
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;             // [n, q_stride]
@group(0) @binding(3) var<storage, read> k: array<u32>;             // [max_ctx, kv_heads, head_dim]
@group(0) @binding(4) var<storage, read> v: array<u32>;             // [max_ctx, kv_heads, head_dim]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;     // [n, heads, head_dim]
@group(0) @binding(6) var<storage, read_write> scores: array<f32>;  // decode: [heads, max_ctx]; split: partials

const LOWEST = -0x1.fffffep+127f; // the most negative finite f32

// key and value return element i of the caches.
fn key(i: u32) -> f32 {
  if (params.kv_f16 != 0u) {
    return unpack2x16float(k[i / 2u])[i % 2u];
  }
  return bitcast<f32>(k[i]);
}

fn value(i: u32) -> f32 {
  if (params.kv_f16 != 0u) {
    return unpack2x16float(v[i / 2u])[i % 2u];
  }
  return bitcast<f32>(v[i]);
}

var<workgroup> red: array<f32, WG>;

fn reduce_max(lid: u32, a: f32) -> f32 {
  red[lid] = a;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] = max(red[lid], red[lid + s]);
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(lid: u32, a: f32) -> f32 {
  red[lid] = a;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] += red[lid + s];
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

var<workgroup> qh: array<f32, HD>;

@compute @workgroup_size(WG)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let hd = params.head_dim;
  let kv_stride = params.kv_heads * hd;
  let n = step.pos + 1u; // keys visible to the query
  for (var h = wid.x; h < params.heads; h += nwg.x) {
    let off = (h / (params.heads / params.kv_heads)) * hd;
    let srow = h * params.max_ctx;
    if (lid < hd) {
      qh[lid] = q[h * hd + lid];
    }
    workgroupBarrier();

    // scores q·k_j · scale, and their maximum
    var m = LOWEST;
    for (var j = lid; j < n; j += WG) {
      var s = 0.0;
      for (var d = 0u; d < hd; d++) {
        s += qh[d] * key(j * kv_stride + off + d);
      }
      s *= params.scale;
      scores[srow + j] = s;
      m = max(m, s);
    }
    m = reduce_max(lid, m);

    // e_j = exp(s_j − max) and their sum
    var l = 0.0;
    for (var j = lid; j < n; j += WG) {
      let e = exp(scores[srow + j] - m);
      scores[srow + j] = e;
      l += e;
    }
    l = reduce_sum(lid, l);
    storageBarrier(); // every thread's e_j is read by others below

    // out[d] = Σ_j e_j · v_j[d] / l: the workgroup splits into WG / hd groups of hd threads, group g taking
    // keys g, g + groups, …; the groups' sums meet in workgroup memory.
    let groups = WG / hd;
    let d = lid % hd;
    let g = lid / hd;
    var acc = 0.0;
    if (g < groups) {
      for (var j = g; j < n; j += groups) {
        acc += scores[srow + j] * value(j * kv_stride + off + d);
      }
    }
    red[lid] = acc;
    workgroupBarrier();
    if (lid < hd) {
      var o = 0.0;
      for (var i = 0u; i < groups; i++) {
        o += red[i * hd + lid];
      }
      out[h * hd + lid] = o / l;
    }
    workgroupBarrier(); // qh and red are reused by the next head
  }
}

var<workgroup> qs: array<f32, BQ * HD>;  // the block's queries [BQ, head_dim]
var<workgroup> kvs: array<f32, BK * HD>; // the step's keys, then its values [BK, head_dim]
var<workgroup> ps: array<f32, BQ * BK>;  // the step's scores, then exp(score − m) [BQ, BK]
var<workgroup> fs: array<f32, BQ>;       // per query: how much the step's new maximum shrinks o and l

@compute @workgroup_size(WG)
fn attention_prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
  let hd = params.head_dim;
  let kv_stride = params.kv_heads * hd;
  for (var h = wid.y; h < params.heads; h += nwg.y) {
    let off = (h / (params.heads / params.kv_heads)) * hd;
    for (var t0 = wid.x * BQ; t0 < step.n; t0 += nwg.x * BQ) {
      let tq = min(step.n, t0 + BQ) - t0; // queries in this block
      for (var i = lid; i < BQ * hd; i += WG) {
        let t = i / hd;
        var val = 0.0;
        if (t < tq) {
          val = q[(t0 + t) * params.q_stride + h * hd + i % hd];
        }
        qs[i] = val;
      }
      // thread t < BQ keeps query t's running maximum m and sum l; thread d < hd keeps o[·][d]
      var m = LOWEST;
      var l = 0.0;
      var o: array<f32, BQ>;
      let keys = step.pos + t0 + tq; // keys visible to the block's last query
      for (var j0 = 0u; j0 < keys; j0 += BK) {
        for (var i = lid; i < BK * hd; i += WG) {
          let j = j0 + i / hd;
          var val = 0.0;
          if (j < keys) {
            val = key(j * kv_stride + off + i % hd);
          }
          kvs[i] = val;
        }
        workgroupBarrier();
        // scores; a masked key (after the query, or past the visible keys) scores LOWEST
        for (var e = lid; e < BQ * BK; e += WG) {
          let t = e / BK;
          let j = j0 + e % BK;
          var s = LOWEST;
          if (t < tq && j <= step.pos + t0 + t) {
            var acc = 0.0;
            for (var d = 0u; d < hd; d++) {
              acc += qs[t * hd + d] * kvs[(e % BK) * hd + d];
            }
            s = acc * params.scale;
          }
          ps[e] = s;
        }
        workgroupBarrier();
        // online softmax: new maximum, rescale factor, probabilities and their sum, per query
        if (lid < BQ) {
          var mn = m;
          for (var c = 0u; c < BK; c++) {
            mn = max(mn, ps[lid * BK + c]);
          }
          let f = exp(m - mn);
          var sum = 0.0;
          for (var c = 0u; c < BK; c++) {
            let s = ps[lid * BK + c];
            var p = 0.0;
            if (s != LOWEST) {
              p = exp(s - mn);
            }
            ps[lid * BK + c] = p;
            sum += p;
          }
          l = l * f + sum;
          m = mn;
          fs[lid] = f;
        }
        // the values replace the keys
        for (var i = lid; i < BK * hd; i += WG) {
          let j = j0 + i / hd;
          var val = 0.0;
          if (j < keys) {
            val = value(j * kv_stride + off + i % hd);
          }
          kvs[i] = val; // the scores were read from kvs before the barrier above
        }
        workgroupBarrier();
        if (lid < hd) {
          for (var t = 0u; t < BQ; t++) {
            var acc = o[t] * fs[t];
            for (var c = 0u; c < BK; c++) {
              acc += ps[t * BK + c] * kvs[c * hd + lid];
            }
            o[t] = acc;
          }
        }
        workgroupBarrier(); // kvs, ps and fs are overwritten by the next step
      }
      // o / l: the sums l live in threads 0 … BQ−1
      if (lid < BQ) {
        fs[lid] = l;
      }
      workgroupBarrier();
      if (lid < hd) {
        for (var t = 0u; t < tq; t++) {
          out[(t0 + t) * params.heads * hd + h * hd + lid] = o[t] / fs[t];
        }
      }
      workgroupBarrier();
    }
  }
}
