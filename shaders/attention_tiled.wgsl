// Multi-head attention for GPUs with fast workgroup barriers, FlashAttention-2 style. Same operation,
// layouts and saved statistics as attention.wgsl (whose header defines B, T, S, H, KVH, G, D, the
// row = t * G + g flattening and row_stats), but every step is shared by a workgroup of THREADS
// threads: scores are computed a tile at a time, each thread owning a few (query, key) pairs, and
// outputs are owned a few (row, d) at a time in registers. attention.wgsl keeps one thread per row;
// it stays the kernel for software adapters, where a barrier costs a context switch per invocation.
//
// Forward (grid (ceil(T * G / BR), KVH, B)): a workgroup owns BR query rows of one (batch, kv head)
// and streams tiles of BC keys: stage K; scores S = (scale · Q) Kᵀ; one thread per row takes the
// tile's row max while V replaces K in workgroup memory; P = exp(S − max); O = O · rescale + P V,
// with the row threads summing P.
// dQ (grid (ceil(T * G / BR), KVH, B)): stage K and V; dS = P ∘ (dO Vᵀ − delta); dQ += dS K.
// dK, dV (grid (ceil(S / BC), KVH, B)): a workgroup owns BC keys and streams tiles of BR query rows
// of every head of the group: stage scale · Q and dO; P and dS; dV += Pᵀ dO, dK += dSᵀ (scale · Q).
// Every output has one owning thread that loops over its contributions: deterministic, no atomics.
//
// BR and BC (params.block_rows, block_keys) are chosen by the host per kernel and halve above
// D = 64, so every kernel's workgroup memory stays within the 16 KiB all WebGPU devices offer:
//   forward BR × BC = 16 × 32 (D ≤ 64) or 8 × 16;  dQ 8 × 16 or 4 × 8;  dK/dV 16 × 8 or 8 × 4.
// dK/dV takes few keys per workgroup because its grid is only ceil(S / BC) · KVH · B workgroups
// (192 for SmolLM2: S = 512, KVH = 3).
// Scores are computed exactly as attention.wgsl computes them ((q · scale), then fma over d in
// order), so the two kernel sets produce the same score bits and their row_stats interchange.
// Key and value tiles are read both along rows and across rows, so their rows are stored with an
// odd stride (D | 1): threads reading column d of consecutive rows hit distinct banks. The forward
// score tile's rows, summed by one thread each, are padded to BC + 1 for the same reason.

const THREADS: u32 = 128u;
// Per-thread register blocks, sized for the largest tiles above.
const FORWARD_SCORE_ROWS: u32 = 4u;  // BR · BC / THREADS score elements per thread
const FORWARD_OUT_ROWS: u32 = 8u;    // BR · D / THREADS outputs per thread
const QUERY_OUT_ROWS: u32 = 4u;      // dQ: BR · D / THREADS
const KEY_OUT_ROWS: u32 = 4u;        // dK and dV: BC · D / THREADS each
// Below any finite score, yet exp(LOWEST - score) is 0 rather than NaN.
const LOWEST: f32 = -3.0e38;

struct Params {
  T: u32,
  S: u32,
  H: u32,
  KVH: u32,
  D: u32,
  scale: f32,
  causal: u32,      // 1: mask keys after each query's position
  kv_offset: u32,   // key position of query 0
  block_rows: u32,  // BR: query rows per workgroup (forward, dQ) or per streamed tile (dK/dV)
  block_keys: u32,  // BC: keys per streamed tile (forward, dQ) or per workgroup (dK/dV)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_stats: array<f32>;
@group(0) @binding(6) var<storage, read> d_out: array<f32>;
@group(0) @binding(7) var<storage, read> delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_q: array<f32>;
@group(0) @binding(9) var<storage, read_write> d_k: array<f32>;
@group(0) @binding(10) var<storage, read_write> d_v: array<f32>;

// Workgroup memory, per kernel (an entry point is charged only for the arrays it uses).
// Forward, 14,576 bytes:
var<workgroup> forward_queries: array<f32, 1024>;   // [BR][D], scale · q
var<workgroup> forward_keys: array<f32, 2080>;      // [BC][D | 1], K, then V of the same keys
var<workgroup> forward_scores: array<f32, 528>;     // [BR][BC + 1], S, then P
var<workgroup> forward_row_max: array<f32, 16>;
var<workgroup> forward_row_scale: array<f32, 16>;   // exp(old max − new max); at the end 1 / sum
// dQ, 13,056 bytes:
var<workgroup> query_queries: array<f32, 512>;      // [BR][D], scale · q
var<workgroup> query_grads: array<f32, 512>;        // [BR][D], dO
var<workgroup> query_keys: array<f32, 1040>;        // [BC][D | 1]
var<workgroup> query_values: array<f32, 1040>;      // [BC][D | 1]
var<workgroup> query_score_grads: array<f32, 128>;  // [BR][BC], dS
var<workgroup> query_row_stats: array<vec3<f32>, 8>; // (max, log sum, delta) per row
// dK and dV, 13,632 bytes:
var<workgroup> key_keys: array<f32, 520>;           // [BC][D | 1]
var<workgroup> key_values: array<f32, 520>;         // [BC][D | 1]
var<workgroup> key_queries: array<f32, 1024>;       // [BR][D], scale · q
var<workgroup> key_grads: array<f32, 1024>;         // [BR][D], dO
var<workgroup> key_probabilities: array<f32, 128>;  // [BR][BC], P
var<workgroup> key_score_grads: array<f32, 128>;    // [BR][BC], dS
var<workgroup> key_row_stats: array<vec3<f32>, 16>; // (max, log sum, delta) per query row

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

fn groups_per_head() -> u32 {
  return params.H / params.KVH;
}

// Start of flattened query row r (t * G + g) of kv head kvh in batch b, in q, o, d_out and d_q.
fn query_row_index(b: u32, kvh: u32, r: u32) -> u32 {
  let G = groups_per_head();
  return ((b * params.T + r / G) * params.H + kvh * G + r % G) * params.D;
}

fn key_index(b: u32, s: u32, kvh: u32) -> u32 {
  return ((b * params.S + s) * params.KVH + kvh) * params.D;
}

// Index of flattened query row r's statistics in row_stats (pairs) and delta.
fn row_stat_index(b: u32, kvh: u32, r: u32) -> u32 {
  let G = groups_per_head();
  return (b * params.H + kvh * G + r % G) * params.T + r / G;
}

// (max score, log Σ exp, delta) of flattened query row r.
fn load_row_stats(b: u32, kvh: u32, r: u32) -> vec3<f32> {
  let stat = row_stat_index(b, kvh, r);
  return vec3<f32>(row_stats[2u * stat], row_stats[2u * stat + 1u], delta[stat]);
}

// Probability from a score recomputed exactly as the forward pass computed it (as attention.wgsl).
fn probability(score: f32, stats: vec3<f32>) -> f32 {
  return exp((score - stats.x) - stats.y);
}

// Thread layout for a tile of (query row, key) pairs with `keys` columns: the thread takes
// column lane % keys of rows lane / keys + c · THREADS / keys.
struct PairLayout {
  key: u32,
  first_row: u32,
  row_step: u32,
}

fn pair_layout(lane: u32, keys: u32) -> PairLayout {
  return PairLayout(lane % keys, lane / keys, THREADS / keys);
}

// Thread layout for outputs [rows][D]: the thread takes column lane % D of rows lane / D + c · THREADS / D;
// `in_use` is false for the THREADS % D lanes left over.
struct OutputLayout {
  d: u32,
  first_row: u32,
  row_step: u32,
  in_use: bool,
}

fn output_layout(lane: u32) -> OutputLayout {
  let step = THREADS / params.D;
  return OutputLayout(lane % params.D, lane / params.D, step, lane < step * params.D);
}

// out = softmax(scale · q kᵀ) v per row, and the row statistics.
@compute @workgroup_size(THREADS)
fn attentionForwardTiled(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>) {
  let D = params.D;
  let stride = D | 1u;
  let G = groups_per_head();
  let rows = params.T * G;
  let BR = params.block_rows;
  let BC = params.block_keys;
  let b = group.z;
  let kvh = group.y;
  let r0 = group.x * BR;
  // One past the last key any row of the workgroup attends to; uniform, as the loop holds barriers.
  let keys = key_end((min(rows, r0 + BR) - 1u) / G);

  for (var e = lane; e < BR * D; e += THREADS) {
    let r = r0 + e / D;
    var value = 0.0;
    if (r < rows) { value = q[query_row_index(b, kvh, r) + e % D] * params.scale; }
    forward_queries[e] = value;
  }

  let pairs = pair_layout(lane, BC);
  var pair_query: array<u32, FORWARD_SCORE_ROWS>;     // start of the pair's row in forward_queries
  var pair_key_end: array<u32, FORWARD_SCORE_ROWS>;   // 0 for rows past BR or past the last row
  for (var c = 0u; c < FORWARD_SCORE_ROWS; c++) {
    let i = pairs.first_row + c * pairs.row_step;
    let r = r0 + i;
    pair_query[c] = min(i, BR - 1u) * D;
    pair_key_end[c] = select(0u, key_end(r / G), i < BR && r < rows);
  }
  let outputs = output_layout(lane);
  var out_row: array<u32, FORWARD_OUT_ROWS>;  // the output's row in the tile, clamped to BR - 1
  for (var c = 0u; c < FORWARD_OUT_ROWS; c++) { out_row[c] = min(outputs.first_row + c * outputs.row_step, BR - 1u); }
  var acc: array<f32, FORWARD_OUT_ROWS>;  // Σ exp(score − running max) · v
  // Lanes below BR also own row `lane`'s running max and sum.
  var running_max = LOWEST;
  var running_sum = 0.0;

  for (var s0 = 0u; s0 < keys; s0 += BC) {
    let count = min(BC, keys - s0);
    for (var e = lane; e < count * D; e += THREADS) {
      forward_keys[(e / D) * stride + e % D] = k[key_index(b, s0 + e / D, kvh) + e % D];
    }
    workgroupBarrier();

    var score: array<f32, FORWARD_SCORE_ROWS>;
    // Zeroed explicitly: Dawn on SwiftShader keeps a loop-body array's values from the last iteration.
    for (var c = 0u; c < FORWARD_SCORE_ROWS; c++) { score[c] = 0.0; }
    for (var d = 0u; d < D; d++) {
      let key_value = forward_keys[pairs.key * stride + d];
      for (var c = 0u; c < FORWARD_SCORE_ROWS; c++) {
        score[c] = fma(forward_queries[pair_query[c] + d], key_value, score[c]);
      }
    }
    for (var c = 0u; c < FORWARD_SCORE_ROWS; c++) {
      let i = pairs.first_row + c * pairs.row_step;
      if (i < BR) {
        forward_scores[i * (BC + 1u) + pairs.key] = select(LOWEST, score[c], s0 + pairs.key < pair_key_end[c]);
      }
    }
    workgroupBarrier();

    if (lane < BR) {
      var tile_max = running_max;
      for (var j = 0u; j < count; j++) { tile_max = max(tile_max, forward_scores[lane * (BC + 1u) + j]); }
      // Rescale what was summed under the old max once per tile.
      let rescale = exp(running_max - tile_max);
      running_sum *= rescale;
      running_max = tile_max;
      forward_row_max[lane] = tile_max;
      forward_row_scale[lane] = rescale;
    }
    // The scores are taken: V replaces K.
    for (var e = lane; e < count * D; e += THREADS) {
      forward_keys[(e / D) * stride + e % D] = v[key_index(b, s0 + e / D, kvh) + e % D];
    }
    workgroupBarrier();

    for (var e = lane; e < BR * BC; e += THREADS) {
      let at = (e / BC) * (BC + 1u) + e % BC;
      forward_scores[at] = exp(forward_scores[at] - forward_row_max[e / BC]);
    }
    workgroupBarrier();

    for (var c = 0u; c < FORWARD_OUT_ROWS; c++) { acc[c] *= forward_row_scale[out_row[c]]; }
    for (var j = 0u; j < count; j++) {
      let value = forward_keys[j * stride + outputs.d];
      for (var c = 0u; c < FORWARD_OUT_ROWS; c++) {
        acc[c] = fma(forward_scores[out_row[c] * (BC + 1u) + j], value, acc[c]);
      }
    }
    if (lane < BR) {
      for (var j = 0u; j < count; j++) { running_sum += forward_scores[lane * (BC + 1u) + j]; }
    }
    workgroupBarrier();
  }

  if (lane < BR) {
    let r = r0 + lane;
    if (r < rows) {
      let stat = row_stat_index(b, kvh, r);
      row_stats[2u * stat] = running_max;
      row_stats[2u * stat + 1u] = log(running_sum);
    }
    forward_row_scale[lane] = 1.0 / running_sum;
  }
  workgroupBarrier();
  if (outputs.in_use) {
    for (var c = 0u; c < FORWARD_OUT_ROWS; c++) {
      let i = outputs.first_row + c * outputs.row_step;
      if (i < BR && r0 + i < rows) { o[query_row_index(b, kvh, r0 + i) + outputs.d] = acc[c] * forward_row_scale[i]; }
    }
  }
}

// dQ[t] = scale · Σ_s p[t, s] (dO[t] · v[s] − delta[t]) k[s], with p recomputed from row_stats.
@compute @workgroup_size(THREADS)
fn attentionBackwardQueryTiled(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>) {
  let D = params.D;
  let stride = D | 1u;
  let G = groups_per_head();
  let rows = params.T * G;
  let BR = params.block_rows;
  let BC = params.block_keys;
  let b = group.z;
  let kvh = group.y;
  let r0 = group.x * BR;
  let keys = key_end((min(rows, r0 + BR) - 1u) / G);

  for (var e = lane; e < BR * D; e += THREADS) {
    let r = r0 + e / D;
    var query_value = 0.0;
    var grad_value = 0.0;
    if (r < rows) {
      let at = query_row_index(b, kvh, r) + e % D;
      query_value = q[at] * params.scale;
      grad_value = d_out[at];
    }
    query_queries[e] = query_value;
    query_grads[e] = grad_value;
  }
  if (lane < BR && r0 + lane < rows) { query_row_stats[lane] = load_row_stats(b, kvh, r0 + lane); }

  // One (row, key) pair per thread: BR · BC ≤ THREADS.
  let pair = pair_layout(lane, BC);
  let has_pair = pair.first_row < BR;
  let pair_row = min(pair.first_row, BR - 1u);
  let pair_key_end = select(0u, key_end((r0 + pair_row) / G), has_pair && r0 + pair_row < rows);
  let outputs = output_layout(lane);
  var out_row: array<u32, QUERY_OUT_ROWS>;
  for (var c = 0u; c < QUERY_OUT_ROWS; c++) { out_row[c] = min(outputs.first_row + c * outputs.row_step, BR - 1u); }
  var acc: array<f32, QUERY_OUT_ROWS>;  // Σ dS · k

  for (var s0 = 0u; s0 < keys; s0 += BC) {
    let count = min(BC, keys - s0);
    for (var e = lane; e < count * D; e += THREADS) {
      let source = key_index(b, s0 + e / D, kvh) + e % D;
      let at = (e / D) * stride + e % D;
      query_keys[at] = k[source];
      query_values[at] = v[source];
    }
    workgroupBarrier();

    if (has_pair) {
      var score = 0.0;
      var d_p = 0.0;
      for (var d = 0u; d < D; d++) {
        score = fma(query_queries[pair_row * D + d], query_keys[pair.key * stride + d], score);
        d_p = fma(query_grads[pair_row * D + d], query_values[pair.key * stride + d], d_p);
      }
      var d_score = 0.0;
      if (s0 + pair.key < pair_key_end) {
        let stats = query_row_stats[pair_row];
        d_score = probability(score, stats) * (d_p - stats.z);
      }
      query_score_grads[pair_row * BC + pair.key] = d_score;
    }
    workgroupBarrier();

    for (var j = 0u; j < count; j++) {
      let key_value = query_keys[j * stride + outputs.d];
      for (var c = 0u; c < QUERY_OUT_ROWS; c++) {
        acc[c] = fma(query_score_grads[out_row[c] * BC + j], key_value, acc[c]);
      }
    }
    workgroupBarrier();
  }

  if (outputs.in_use) {
    for (var c = 0u; c < QUERY_OUT_ROWS; c++) {
      let i = outputs.first_row + c * outputs.row_step;
      if (i < BR && r0 + i < rows) { d_q[query_row_index(b, kvh, r0 + i) + outputs.d] = acc[c] * params.scale; }
    }
  }
}

// dV[s] = Σ_{t, g} p dO[t, g];  dK[s] = Σ_{t, g} p (dO[t, g] · v[s] − delta[t, g]) (scale · q[t, g]),
// summed over the G query heads of the kv head and the queries t that attend to key s.
@compute @workgroup_size(THREADS)
fn attentionBackwardKeyValueTiled(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>) {
  let D = params.D;
  let stride = D | 1u;
  let G = groups_per_head();
  let rows = params.T * G;
  let BR = params.block_rows;
  let BC = params.block_keys;
  let b = group.z;
  let kvh = group.y;
  let s_first = group.x * BC;
  let key_count = min(BC, params.S - s_first);

  for (var e = lane; e < key_count * D; e += THREADS) {
    let source = key_index(b, s_first + e / D, kvh) + e % D;
    let at = (e / D) * stride + e % D;
    key_keys[at] = k[source];
    key_values[at] = v[source];
  }

  // One (query row, key) pair per thread: BR · BC ≤ THREADS.
  let pair = pair_layout(lane, BC);
  let has_pair = pair.first_row < BR && pair.key < key_count;
  let pair_row = min(pair.first_row, BR - 1u);
  let pair_first_row = first_query(s_first + pair.key) * G;  // rows before it do not attend to the key
  let outputs = output_layout(lane);
  var out_key: array<u32, KEY_OUT_ROWS>;  // the output's key in the block, clamped to BC - 1
  for (var c = 0u; c < KEY_OUT_ROWS; c++) { out_key[c] = min(outputs.first_row + c * outputs.row_step, BC - 1u); }
  var grad_k: array<f32, KEY_OUT_ROWS>;
  var grad_v: array<f32, KEY_OUT_ROWS>;

  // Rows before the block's first key's first query attend to none of its keys.
  for (var r0 = first_query(s_first) * G; r0 < rows; r0 += BR) {
    let count = min(BR, rows - r0);
    for (var e = lane; e < count * D; e += THREADS) {
      let at = query_row_index(b, kvh, r0 + e / D) + e % D;
      key_queries[e] = q[at] * params.scale;
      key_grads[e] = d_out[at];
    }
    if (lane < count) { key_row_stats[lane] = load_row_stats(b, kvh, r0 + lane); }
    workgroupBarrier();

    if (pair.first_row < BR) {
      var p = 0.0;
      var d_score = 0.0;
      if (has_pair && pair_row < count && r0 + pair_row >= pair_first_row) {
        var score = 0.0;
        var d_p = 0.0;
        for (var d = 0u; d < D; d++) {
          score = fma(key_queries[pair_row * D + d], key_keys[pair.key * stride + d], score);
          d_p = fma(key_values[pair.key * stride + d], key_grads[pair_row * D + d], d_p);
        }
        let stats = key_row_stats[pair_row];
        p = probability(score, stats);
        d_score = p * (d_p - stats.z);
      }
      key_probabilities[pair_row * BC + pair.key] = p;
      key_score_grads[pair_row * BC + pair.key] = d_score;
    }
    workgroupBarrier();

    for (var i = 0u; i < count; i++) {
      let grad_value = key_grads[i * D + outputs.d];
      let query_value = key_queries[i * D + outputs.d];
      for (var c = 0u; c < KEY_OUT_ROWS; c++) {
        grad_v[c] = fma(key_probabilities[i * BC + out_key[c]], grad_value, grad_v[c]);
        grad_k[c] = fma(key_score_grads[i * BC + out_key[c]], query_value, grad_k[c]);
      }
    }
    workgroupBarrier();
  }

  if (outputs.in_use) {
    for (var c = 0u; c < KEY_OUT_ROWS; c++) {
      let j = outputs.first_row + c * outputs.row_step;
      if (j < key_count) {
        let at = key_index(b, s_first + j, kvh) + outputs.d;
        d_k[at] = grad_k[c];
        d_v[at] = grad_v[c];
      }
    }
  }
}
