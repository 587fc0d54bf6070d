// GPU-side sampling help, so that a decoded token costs a tiny readback instead of the whole logits:
//   penalize: Hugging Face's repetition penalty on the logits of the distinct ids in ids [m]: a positive
//     logit is divided by the penalty, another multiplied by it (the twin of model.Sampler's penalty).
//   topk, then topk_merge: the k largest logits (k ≤ 64), as (id, logit bits) pairs, largest first; equal
//     logits in id order, as model.Sampler sorts them. k = 1 is greedy argmax.
// The order is total: (logit, id) comes before (logit', id') when logit > logit', or when they are equal
// and id < id'. Selection runs in k rounds, and round r picks the first element that comes after round
// r−1's pick; so no element needs marking, and ties cannot repeat or drop an id. topk runs the rounds over
// slices of `per` logits, one slice per workgroup, leaving k candidates per slice, largest first; one
// workgroup of topk_merge runs them again over the candidates (unless there is one slice: then its
// candidates are the answer).

override WG: u32 = 256; // threads per workgroup, a power of two

const NONE = 0xffffffffu; // no id: a slice with fewer than k elements pads its candidates with it

struct Params {
  n: u32,       // logits
  k: u32,
  per: u32,     // logits per topk slice
  cands: u32,   // candidates: k per slice
  m: u32,       // ids to penalise
  penalty: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;     // [n]
@group(0) @binding(2) var<storage, read> ids: array<u32>;              // [m], distinct
@group(0) @binding(3) var<storage, read_write> cands: array<vec2<u32>>; // [cands]: (id, logit bits)
@group(0) @binding(4) var<storage, read_write> best: array<vec2<u32>>;  // [k]

@compute @workgroup_size(WG)
fn penalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  for (var i = gid.x; i < params.m; i += nwg.x * WG) {
    let id = ids[i];
    let l = logits[id];
    logits[id] = select(l * params.penalty, l / params.penalty, l > 0.0);
  }
}

// before reports whether (v, i) comes before (bv, bi) in the order above; NONE comes after everything.
fn before(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

// follows reports whether (v, i) comes after prev, round r−1's pick (everything does in round 0; nothing does
// once a round found none).
fn follows(r: u32, prev: vec2<u32>, v: f32, i: u32) -> bool {
  return r == 0u || before(bitcast<f32>(prev.y), prev.x, v, i);
}

// The threads' candidates meet in two steps of SPLIT (two barriers a round, where a tree takes log2(WG)):
// SPLIT threads pick the first of WG/SPLIT candidates each, then every thread picks the first of those.
const SPLIT = 16u; // WG ≥ SPLIT
var<workgroup> red_v: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> part_v: array<f32, SPLIT>;
var<workgroup> part_i: array<u32, SPLIT>;

// first returns the element that comes first among the threads' candidates (v, i), as (id, logit bits).
fn first(lid: u32, v: f32, i: u32) -> vec2<u32> {
  red_v[lid] = v;
  red_i[lid] = i;
  workgroupBarrier();
  if (lid < SPLIT) {
    let per = WG / SPLIT;
    var bv = red_v[lid * per];
    var bi = red_i[lid * per];
    for (var j = lid * per + 1u; j < (lid + 1u) * per; j++) {
      if (before(red_v[j], red_i[j], bv, bi)) {
        bv = red_v[j];
        bi = red_i[j];
      }
    }
    part_v[lid] = bv;
    part_i[lid] = bi;
  }
  workgroupBarrier();
  var bv = part_v[0];
  var bi = part_i[0];
  for (var j = 1u; j < SPLIT; j++) {
    if (before(part_v[j], part_i[j], bv, bi)) {
      bv = part_v[j];
      bi = part_i[j];
    }
  }
  // The next round writes red_v before its first barrier (nobody reads it after the second one here) and
  // part_v after it (by when everyone has read part_v here).
  return vec2<u32>(bi, bitcast<u32>(bv));
}

@compute @workgroup_size(WG)
fn topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  for (var lo = wid.x * params.per; lo < params.n; lo += nwg.x * params.per) {
    let hi = min(params.n, lo + params.per);
    var prev = vec2<u32>(NONE, 0u);
    for (var r = 0u; r < params.k; r++) {
      var bv = 0.0;
      var bi = NONE;
      for (var i = lo + lid; i < hi; i += WG) {
        let v = logits[i];
        if (follows(r, prev, v, i) && before(v, i, bv, bi)) {
          bv = v;
          bi = i;
        }
      }
      prev = first(lid, bv, bi);
      if (lid == 0u) {
        cands[(lo / params.per) * params.k + r] = prev;
      }
    }
  }
}

@compute @workgroup_size(WG)
fn topk_merge(@builtin(local_invocation_index) lid: u32) {
  var prev = vec2<u32>(NONE, 0u);
  for (var r = 0u; r < params.k; r++) {
    var bv = 0.0;
    var bi = NONE;
    for (var c = lid; c < params.cands; c += WG) {
      let e = cands[c];
      let v = bitcast<f32>(e.y);
      if (follows(r, prev, v, e.x) && before(v, e.x, bv, bi)) {
        bv = v;
        bi = e.x;
      }
    }
    prev = first(lid, bv, bi);
    if (lid == 0u) {
      best[r] = prev;
    }
  }
}
