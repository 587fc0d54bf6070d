// Matrix-vector product with subgroup reductions: matvec.wgsl's kernels (compiled together with it, reusing
// its bindings and helpers), whose threads add up their partial sums with subgroupAdd first, so that only one
// sum per subgroup goes through workgroup memory. Needs the `subgroups` feature (natively wgpu-native's
// subgroup feature; the browser's WGSL needs `enable subgroups;`, which the device puts in front).
//
// A subgroup is taken to be the threads lid / subgroup_size of a one-dimensional workgroup, as every
// implementation lays them out; a subgroup size that does not divide the workgroup size (none known) would
// still be correct, its last partial subgroup adding up fewer threads.

// finish_subgroup is matvec.wgsl's finish with the sums of each subgroup added first.
fn finish_subgroup(wg: u32, lid: u32, lane: u32, size: u32, r0: u32, acc: array<f32, ROWS>, ss: f32) {
  let sg = lid / size;
  for (var r = 0u; r < ROWS; r++) {
    let s = subgroupAdd(acc[r]);
    if (lane == 0u) {
      partial[r * MAX_WG + sg] = s;
    }
  }
  let s = subgroupAdd(ss);
  if (lane == 0u) {
    partial[ROWS * MAX_WG + sg] = s;
  }
  store_rows(lid, r0, (wg + size - 1u) / size);
}

// q4_subgroup_body is matvec.wgsl's q4_body with finish_subgroup.
fn q4_subgroup_body(wg: u32, wid: u32, nwg: u32, lid: u32, lane: u32, size: u32) {
  for (var r0 = wid * ROWS; r0 < params.rows; r0 += nwg * ROWS) {
    var acc: array<f32, ROWS>;
    var ss = 0.0;
    q4_rows(wg, lid, r0, &acc, &ss);
    finish_subgroup(wg, lid, lane, size, r0, acc, ss);
  }
}

@compute @workgroup_size(64)
fn matvec_q4_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32,
                      @builtin(subgroup_size) size: u32) {
  q4_subgroup_body(64u, wid.x, nwg.x, lid, lane, size);
}

@compute @workgroup_size(256)
fn matvec_q4_subgroup_256(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32,
                          @builtin(subgroup_size) size: u32) {
  q4_subgroup_body(256u, wid.x, nwg.x, lid, lane, size);
}
