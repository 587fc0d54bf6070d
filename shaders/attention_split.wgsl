// Split-KV attention for decoding (flash decoding), the twin of model.Attention for one query: compiled
// together with attention.wgsl (its bindings, key, value and reductions). attention_split's workgroup (s, h)
// takes split s of the visible keys of query head h, one of num_workgroups.x contiguous ranges of equal
// length, and streams over them WG keys at a time with an online softmax, writing its running maximum m,
// sum l and unnormalised output o [head_dim] as a partial; attention_merge then combines a head's splits:
// out = Σ_s e^(m_s − M)·o_s / Σ_s e^(m_s − M)·l_s with M = max_s m_s. Every split of a long context runs on
// its own workgroup, where attention.wgsl's decode kernel has one workgroup per head whatever the context.
// The partials live in scores: [heads, splits, 2 + head_dim] (m, l, o).

var<workgroup> pw: array<f32, WG>; // the step's exp(score − m), one per key

@compute @workgroup_size(WG)
fn attention_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let hd = params.head_dim;
  let kv_stride = params.kv_heads * hd;
  let n = step.pos + 1u; // keys visible to the query
  let splits = nwg.x;
  let len = (n + splits - 1u) / splits;
  let s = wid.x;
  let j0 = min(n, s * len);
  let j1 = min(n, j0 + len);
  for (var h = wid.y; h < params.heads; h += nwg.y) {
    let off = (h / (params.heads / params.kv_heads)) * hd;
    if (lid < hd) {
      qh[lid] = q[h * hd + lid];
    }
    workgroupBarrier();
    var m = LOWEST;
    var l = 0.0;
    var o = 0.0; // thread d < hd: o[d]
    for (var c0 = j0; c0 < j1; c0 += WG) {
      let j = c0 + lid;
      var sc = LOWEST;
      if (j < j1) {
        var acc = 0.0;
        for (var d = 0u; d < hd; d++) {
          acc += qh[d] * key(j * kv_stride + off + d);
        }
        sc = acc * params.scale;
      }
      let mn = max(m, reduce_max(lid, sc));
      var p = 0.0;
      if (j < j1) {
        p = exp(sc - mn);
      }
      pw[lid] = p;
      let f = exp(m - mn);
      l = l * f + reduce_sum(lid, p); // its barriers also publish pw
      m = mn;
      if (lid < hd) {
        var acc = o * f;
        for (var i = 0u; i < min(WG, j1 - c0); i++) {
          acc += pw[i] * value((c0 + i) * kv_stride + off + lid);
        }
        o = acc;
      }
      workgroupBarrier(); // pw is overwritten by the next step
    }
    let base = (h * splits + s) * (2u + hd);
    if (lid == 0u) {
      scores[base] = m;
      scores[base + 1u] = l;
    }
    if (lid < hd) {
      scores[base + 2u + lid] = o;
    }
    workgroupBarrier(); // qh is reused by the next head
  }
}

// attention_merge: out [heads·head_dim] from the partials of Params.splits splits per head, a workgroup per
// head. A split with no keys has m = LOWEST and l = 0, and weighs e^(LOWEST − M) = 0.
@compute @workgroup_size(WG)
fn attention_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let hd = params.head_dim;
  let splits = params.splits;
  for (var h = wid.x; h < params.heads; h += nwg.x) {
    if (lid < hd) {
      var mx = LOWEST;
      for (var s = 0u; s < splits; s++) {
        mx = max(mx, scores[(h * splits + s) * (2u + hd)]);
      }
      var l = 0.0;
      var o = 0.0;
      for (var s = 0u; s < splits; s++) {
        let base = (h * splits + s) * (2u + hd);
        let f = exp(scores[base] - mx);
        l += f * scores[base + 1u];
        o += f * scores[base + 2u + lid];
      }
      out[h * hd + lid] = o / l;
    }
  }
}
