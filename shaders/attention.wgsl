// Multi-head attention with grouped-query heads, flash-attention style: the forward pass streams
// over keys with an online softmax (running max and sum) and keeps only per-row softmax statistics;
// the backward pass recomputes probabilities from them. No [T, S] score matrix is ever stored.
//
// Shapes: B batch, T queries, S keys, H query heads, KVH key/value heads, G = H / KVH query heads
// per kv head (query head h reads kv head h / G), D head dim (at most MAX_HEAD_DIM).
//   q, o, d_out, d_q: [B, T, H, D]     k, v, d_k, d_v: [B, S, KVH, D]     delta: [B, H, T]
//   row_stats: [B, H, T, 2], each row's (max score, log Σ exp(score − max)); their sum is the
//   log-sum-exp. Kept apart because rounding max + log Σ to f32 costs up to half an ulp of the
//   max score, which for large scores is a visible error in every recomputed probability, while
//   the backward kernels recompute each score bit for bit, so score − max is exact.
// Query t sits at key position t + kv_offset; when causal it attends to keys s <= t + kv_offset.
//
// Forward and dQ: a workgroup owns ROWS_PER_GROUP query rows of one (batch, kv head), flattened as
// row = t * G + g, so the G query heads sharing a kv head share every K/V tile it stages.
// Grid: (ceil(T * G / ROWS_PER_GROUP), KVH, B).
// dK and dV: a workgroup owns ROWS_PER_GROUP key rows of one (batch, kv head) and streams the query
// rows of all G heads of the group through workgroup memory; each thread sums over its own key's
// contributions, so there are no atomics and results are deterministic.
// Grid: (ceil(S / ROWS_PER_GROUP), KVH, B).

const MAX_HEAD_DIM: u32 = 128u;
// Threads per workgroup: one query row (forward, dQ) or one key row (dK, dV) each.
const ROWS_PER_GROUP: u32 = 64u;
// Floats per staged tile. Two tiles take 16 KiB, the workgroup storage every WebGPU device offers;
// a tile holds min(MAX_TILE_ROWS, TILE_CAPACITY / D) rows.
const TILE_CAPACITY: u32 = 2048u;
const MAX_TILE_ROWS: u32 = 64u;
// Below any finite score, yet exp(LOWEST - score) is 0 rather than NaN.
const LOWEST: f32 = -3.0e38;

struct Params {
  T: u32,
  S: u32,
  H: u32,
  KVH: u32,
  D: u32,
  scale: f32,
  causal: u32,     // 1: mask keys after each query's position
  kv_offset: u32,  // key position of query 0 (S - T for a full KV cache)
  rows: u32,       // B * T * H, for the 1-D delta kernel
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_stats: array<f32>;
@group(0) @binding(6) var<storage, read> d_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_q: array<f32>;
@group(0) @binding(9) var<storage, read_write> d_k: array<f32>;
@group(0) @binding(10) var<storage, read_write> d_v: array<f32>;

// Forward and dQ stage K and V rows here; dK/dV stage Q and dO rows. [row][d], D floats per row.
var<workgroup> tile_a: array<f32, TILE_CAPACITY>;
var<workgroup> tile_b: array<f32, TILE_CAPACITY>;

fn tile_rows() -> u32 {
  return min(MAX_TILE_ROWS, TILE_CAPACITY / params.D);
}

// One past the last key query t may attend to.
fn key_end(t: u32) -> u32 {
  if (params.causal == 0u) { return params.S; }
  return min(params.S, t + params.kv_offset + 1u);
}

// The first query that attends to key s.
fn first_query(s: u32) -> u32 {
  if (params.causal == 0u || s <= params.kv_offset) { return 0u; }
  return s - params.kv_offset;
}

fn query_index(b: u32, t: u32, h: u32) -> u32 {
  return ((b * params.T + t) * params.H + h) * params.D;
}

fn key_index(b: u32, s: u32, kvh: u32) -> u32 {
  return ((b * params.S + s) * params.KVH + kvh) * params.D;
}

fn row_stat_index(b: u32, h: u32, t: u32) -> u32 {
  return (b * params.H + h) * params.T + t;
}

// Stage K and V rows [s0, s0 + count) of one (batch, kv head) into tile_a and tile_b.
fn stage_key_rows(lane: u32, b: u32, kvh: u32, s0: u32, count: u32) {
  let D = params.D;
  for (var i = lane; i < count * D; i += ROWS_PER_GROUP) {
    let source = key_index(b, s0 + i / D, kvh) + i % D;
    tile_a[i] = k[source];
    tile_b[i] = v[source];
  }
}

// The query row a forward or dQ thread owns: row = t * G + g of kv head group.y in batch group.z.
struct QueryRow {
  b: u32,
  kvh: u32,
  t: u32,
  h: u32,
  valid: bool,    // row < T * G
  key_end: u32,   // one past the last key it attends to
}

fn query_row(lane: u32, group: vec3<u32>) -> QueryRow {
  let G = params.H / params.KVH;
  let row = group.x * ROWS_PER_GROUP + lane;
  let t = row / G;
  return QueryRow(group.z, group.y, t, group.y * G + row % G, row < params.T * G, key_end(t));
}

// One past the last key any query row of the workgroup attends to: the bound of the key-tile loop,
// kept apart from QueryRow because it must be uniform (the loop holds barriers).
fn group_key_end(group: vec3<u32>) -> u32 {
  let G = params.H / params.KVH;
  return key_end((min(params.T * G, (group.x + 1u) * ROWS_PER_GROUP) - 1u) / G);
}

// The thread's query row, pre-multiplied by scale (forward and dQ).
var<private> q_row: array<f32, MAX_HEAD_DIM>;

fn load_query_row(row: QueryRow) {
  let base = query_index(row.b, row.t, row.h);
  for (var d = 0u; d < params.D; d++) { q_row[d] = q[base + d] * params.scale; }
}

// scale · q · k for staged key j. Forward and dQ share it, so dQ recomputes each score bit for bit.
fn staged_score(j: u32) -> f32 {
  let D = params.D;
  var score = 0.0;
  for (var d = 0u; d < D; d++) { score = fma(q_row[d], tile_a[j * D + d], score); }
  return score;
}

// out = softmax(scale · q kᵀ) v per row, streaming over keys, and the row statistics.
@compute @workgroup_size(ROWS_PER_GROUP)
fn attentionForward(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>) {
  let D = params.D;
  let row = query_row(lane, group);
  let keys = group_key_end(group);
  let block = tile_rows();

  var acc: array<f32, MAX_HEAD_DIM>;    // Σ exp(score − running_max) · v
  var scores: array<f32, MAX_TILE_ROWS>;
  if (row.valid) { load_query_row(row); }
  var running_max = LOWEST;
  var running_sum = 0.0;

  for (var s0 = 0u; s0 < keys; s0 += block) {
    stage_key_rows(lane, row.b, row.kvh, s0, min(block, keys - s0));
    workgroupBarrier();
    if (row.valid && s0 < row.key_end) {
      let count = min(block, row.key_end - s0);
      var tile_max = running_max;
      for (var j = 0u; j < count; j++) {
        scores[j] = staged_score(j);
        tile_max = max(tile_max, scores[j]);
      }
      // Rescale what was summed under the old max once per tile, not once per key.
      let correction = exp(running_max - tile_max);
      running_sum *= correction;
      for (var d = 0u; d < D; d++) { acc[d] *= correction; }
      for (var j = 0u; j < count; j++) {
        let p = exp(scores[j] - tile_max);
        running_sum += p;
        for (var d = 0u; d < D; d++) { acc[d] = fma(p, tile_b[j * D + d], acc[d]); }
      }
      running_max = tile_max;
    }
    workgroupBarrier();
  }

  if (row.valid) {
    let base = query_index(row.b, row.t, row.h);
    let inverse = 1.0 / running_sum;
    for (var d = 0u; d < D; d++) { o[base + d] = acc[d] * inverse; }
    let stat = row_stat_index(row.b, row.h, row.t);
    row_stats[2u * stat] = running_max;
    row_stats[2u * stat + 1u] = log(running_sum);
  }
}

// delta = rowsum(dO ∘ O), the softmax backward's per-row correction. 1-D grid over B * T * H rows.
@compute @workgroup_size(ROWS_PER_GROUP)
fn attentionBackwardDelta(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let row = id.x + id.y * groups.x * ROWS_PER_GROUP;  // row of o: ((b * T + t) * H + h)
  if (row >= params.rows) { return; }
  let D = params.D;
  var sum = 0.0;
  for (var d = 0u; d < D; d++) { sum = fma(o[row * D + d], d_out[row * D + d], sum); }
  let h = row % params.H;
  let t = (row / params.H) % params.T;
  let b = row / (params.H * params.T);
  delta[row_stat_index(b, h, t)] = sum;
}

// Probability from a score recomputed exactly as the forward pass computed it.
fn probability(score: f32, stat: u32) -> f32 {
  return exp((score - row_stats[2u * stat]) - row_stats[2u * stat + 1u]);
}

// dQ[t] = scale · Σ_s p[t, s] (dO[t] · v[s] − delta[t]) k[s], with p = softmax(scale · q[t] · k[s]) recomputed.
@compute @workgroup_size(ROWS_PER_GROUP)
fn attentionBackwardQuery(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>) {
  let D = params.D;
  let row = query_row(lane, group);
  let keys = group_key_end(group);
  let block = tile_rows();

  var d_out_row: array<f32, MAX_HEAD_DIM>;
  var grad: array<f32, MAX_HEAD_DIM>;
  let stat = row_stat_index(row.b, row.h, row.t);
  var row_delta = 0.0;
  if (row.valid) {
    load_query_row(row);
    let base = query_index(row.b, row.t, row.h);
    for (var d = 0u; d < D; d++) { d_out_row[d] = d_out[base + d]; }
    row_delta = delta[stat];
  }

  for (var s0 = 0u; s0 < keys; s0 += block) {
    stage_key_rows(lane, row.b, row.kvh, s0, min(block, keys - s0));
    workgroupBarrier();
    if (row.valid && s0 < row.key_end) {
      let count = min(block, row.key_end - s0);
      for (var j = 0u; j < count; j++) {
        var d_p = 0.0;
        for (var d = 0u; d < D; d++) { d_p = fma(d_out_row[d], tile_b[j * D + d], d_p); }
        let d_score = probability(staged_score(j), stat) * (d_p - row_delta);
        for (var d = 0u; d < D; d++) { grad[d] = fma(d_score, tile_a[j * D + d], grad[d]); }
      }
    }
    workgroupBarrier();
  }

  if (row.valid) {
    let base = query_index(row.b, row.t, row.h);
    for (var d = 0u; d < D; d++) { d_q[base + d] = grad[d] * params.scale; }
  }
}

// dV[s] = Σ_{t, g} p dO[t, g];  dK[s] = scale · Σ_{t, g} p (dO[t, g] · v[s] − delta[t, g]) q[t, g],
// summed over the G query heads of the kv head and the queries t that attend to key s.
@compute @workgroup_size(ROWS_PER_GROUP)
fn attentionBackwardKeyValue(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>) {
  let D = params.D;
  let G = params.H / params.KVH;
  let kvh = group.y;
  let b = group.z;
  let rows = params.T * G;  // query rows (t, g) of this kv head, flattened as t * G + g
  let s = group.x * ROWS_PER_GROUP + lane;
  let has_row = s < params.S;
  let own_first_row = first_query(s) * G;
  let block = tile_rows();

  var k_row: array<f32, MAX_HEAD_DIM>;
  var v_row: array<f32, MAX_HEAD_DIM>;
  var grad_k: array<f32, MAX_HEAD_DIM>;
  var grad_v: array<f32, MAX_HEAD_DIM>;
  if (has_row) {
    let base = key_index(b, s, kvh);
    for (var d = 0u; d < D; d++) {
      k_row[d] = k[base + d];
      v_row[d] = v[base + d];
    }
  }

  // Queries before the group's first key's first query attend to none of its keys.
  for (var r0 = first_query(group.x * ROWS_PER_GROUP) * G; r0 < rows; r0 += block) {
    let count = min(block, rows - r0);
    for (var i = lane; i < count * D; i += ROWS_PER_GROUP) {
      let r = r0 + i / D;
      let source = query_index(b, r / G, kvh * G + r % G) + i % D;
      tile_a[i] = q[source];
      tile_b[i] = d_out[source];
    }
    workgroupBarrier();
    if (has_row) {
      for (var j = 0u; j < count; j++) {
        let r = r0 + j;
        if (r < own_first_row) { continue; }
        let t = r / G;
        let h = kvh * G + r % G;
        var score = 0.0;
        var d_p = 0.0;
        for (var d = 0u; d < D; d++) {
          // The forward pass's operations in its order, (q · scale) then fma: the same score bits.
          score = fma(tile_a[j * D + d] * params.scale, k_row[d], score);
          d_p = fma(v_row[d], tile_b[j * D + d], d_p);
        }
        let stat = row_stat_index(b, h, t);
        let p = probability(score, stat);
        let d_score = p * (d_p - delta[stat]);
        for (var d = 0u; d < D; d++) {
          grad_v[d] = fma(p, tile_b[j * D + d], grad_v[d]);
          grad_k[d] = fma(d_score, tile_a[j * D + d], grad_k[d]);
        }
      }
    }
    workgroupBarrier();
  }

  if (has_row) {
    let base = key_index(b, s, kvh);
    for (var d = 0u; d < D; d++) {
      d_k[base + d] = grad_k[d] * params.scale;
      d_v[base + d] = grad_v[d];
    }
  }
}
