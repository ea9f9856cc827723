// Layer normalization over the last dimension, as torch.nn.LayerNorm (biased variance):
//   y = (x − mean) / sqrt(var + eps) · weight + bias
// and its backward: dx per row, dWeight and dBias summed over rows.
// R rows of width C; x, y, dy, dx are [R, C]; weight, bias [C]; stats [R, 3].
// Row kernels: one workgroup per row (grid spills into y past 65535 rows), reduced in workgroup memory.
// The mean is kept as a shift plus a small correction, mean = shift + correction, with shift the f32
// mean of a first pass: x − shift is then exact for values near the mean, so rows with a large
// offset lose no accuracy (the corrected two-pass algorithm). stats[r] = (shift, correction, rstd).

const WORKGROUP_SIZE: u32 = 256u;
// Parameter-gradient workgroups: COLUMNS adjacent columns × ROW_LANES threads splitting the rows.
const COLUMNS: u32 = 32u;
const ROW_LANES: u32 = 8u;

struct Params {
  rows: u32,      // R
  width: u32,     // C
  eps: f32,
  has_bias: u32,  // forward: 0 when there is no bias (the weight is bound in its place, unread)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read> stats: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;
@group(0) @binding(9) var<storage, read_write> d_weight: array<f32>;
@group(0) @binding(10) var<storage, read_write> d_bias: array<f32>;

var<workgroup> partial: array<vec2<f32>, WORKGROUP_SIZE>;

fn row_index(group: vec3<u32>, groups: vec3<u32>) -> u32 {
  return group.x + group.y * groups.x;
}

// Sum of `value` over the workgroup, returned to every thread; a fixed tree, so deterministic.
fn workgroup_sum(local: u32, value: vec2<f32>) -> vec2<f32> {
  partial[local] = value;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride >>= 1u) {
    if (local < stride) { partial[local] += partial[local + stride]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier(); // everyone has read the total before partial is written again
  return total;
}

// Normalizes one row into y and returns (shift, correction, rstd).
fn normalize_row(row: u32, local: u32) -> vec3<f32> {
  let base = row * params.width;
  let width = f32(params.width);
  var sum = 0.0;
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) { sum += x[base + c]; }
  let shift = workgroup_sum(local, vec2(sum, 0.0)).x / width;
  var deviations = vec2(0.0);  // (Σ (x − shift), Σ (x − shift)²)
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    let d = x[base + c] - shift;
    deviations += vec2(d, d * d);
  }
  let totals = workgroup_sum(local, deviations);
  let correction = totals.x / width;
  let variance = max(totals.y / width - correction * correction, 0.0);
  let rstd = 1.0 / sqrt(variance + params.eps);
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    var value = ((x[base + c] - shift) - correction) * rstd * weight[c];
    if (params.has_bias != 0u) { value += bias[c]; }
    y[base + c] = value;
  }
  return vec3(shift, correction, rstd);
}

// y only (inference, or nothing to differentiate).
@compute @workgroup_size(WORKGROUP_SIZE)
fn layernormForward(
  @builtin(local_invocation_index) local: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let row = row_index(group, groups);
  if (row >= params.rows) { return; }
  _ = normalize_row(row, local);
}

// y and the row statistics the backward pass reads.
@compute @workgroup_size(WORKGROUP_SIZE)
fn layernormForwardWithStats(
  @builtin(local_invocation_index) local: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let row = row_index(group, groups);
  if (row >= params.rows) { return; }
  let row_stats = normalize_row(row, local);
  if (local == 0u) {
    stats_out[row * 3u] = row_stats.x;
    stats_out[row * 3u + 1u] = row_stats.y;
    stats_out[row * 3u + 2u] = row_stats.z;
  }
}

fn normalized(i: u32, row: u32) -> f32 {
  return ((x[i] - stats[row * 3u]) - stats[row * 3u + 1u]) * stats[row * 3u + 2u];
}

// dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), with g = dy · weight and x̂ the normalized input.
@compute @workgroup_size(WORKGROUP_SIZE)
fn layernormBackwardInput(
  @builtin(local_invocation_index) local: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let row = row_index(group, groups);
  if (row >= params.rows) { return; }
  let base = row * params.width;
  var sums = vec2(0.0);  // (Σ g, Σ g · x̂)
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    let g = dy[base + c] * weight[c];
    sums += vec2(g, g * normalized(base + c, row));
  }
  let means = workgroup_sum(local, sums) / f32(params.width);
  let rstd = stats[row * 3u + 2u];
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    let g = dy[base + c] * weight[c];
    dx[base + c] = rstd * (g - means.x - normalized(base + c, row) * means.y);
  }
}

// Parameter gradients: thread (column, lane) sums rows lane, lane + ROW_LANES, ...; lane 0 then adds
// the ROW_LANES partial sums in order. One writer per column and a fixed order: deterministic.
// Grid: ceil(C / COLUMNS) workgroups (spilling into y).
var<workgroup> lane_sums: array<vec2<f32>, COLUMNS * ROW_LANES>;

fn column_index(local: vec3<u32>, group: vec3<u32>, groups: vec3<u32>) -> u32 {
  return (group.x + group.y * groups.x) * COLUMNS + local.x;
}

fn sum_lanes(local: vec3<u32>, value: vec2<f32>) -> vec2<f32> {
  lane_sums[local.y * COLUMNS + local.x] = value;
  workgroupBarrier();
  var total = vec2(0.0);
  if (local.y == 0u) {
    for (var lane = 0u; lane < ROW_LANES; lane++) { total += lane_sums[lane * COLUMNS + local.x]; }
  }
  return total;
}

// dWeight[c] = Σ_r dy[r, c] · x̂[r, c] and dBias[c] = Σ_r dy[r, c].
@compute @workgroup_size(COLUMNS, ROW_LANES)
fn layernormWeightBiasGrad(
  @builtin(local_invocation_id) local: vec3<u32>,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let c = column_index(local, group, groups);
  var sums = vec2(0.0);
  if (c < params.width) {
    for (var r = local.y; r < params.rows; r += ROW_LANES) {
      let i = r * params.width + c;
      sums += vec2(dy[i] * normalized(i, r), dy[i]);
    }
  }
  let total = sum_lanes(local, sums);
  if (local.y == 0u && c < params.width) {
    d_weight[c] = total.x;
    d_bias[c] = total.y;
  }
}

// dWeight only (frozen bias, or no bias).
@compute @workgroup_size(COLUMNS, ROW_LANES)
fn layernormWeightGrad(
  @builtin(local_invocation_id) local: vec3<u32>,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let c = column_index(local, group, groups);
  var sum = 0.0;
  if (c < params.width) {
    for (var r = local.y; r < params.rows; r += ROW_LANES) {
      let i = r * params.width + c;
      sum += dy[i] * normalized(i, r);
    }
  }
  let total = sum_lanes(local, vec2(sum, 0.0));
  if (local.y == 0u && c < params.width) { d_weight[c] = total.x; }
}

// dBias only (frozen weight).
@compute @workgroup_size(COLUMNS, ROW_LANES)
fn layernormBiasGrad(
  @builtin(local_invocation_id) local: vec3<u32>,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let c = column_index(local, group, groups);
  var sum = 0.0;
  if (c < params.width) {
    for (var r = local.y; r < params.rows; r += ROW_LANES) { sum += dy[r * params.width + c]; }
  }
  let total = sum_lanes(local, vec2(sum, 0.0));
  if (local.y == 0u && c < params.width) { d_bias[c] = total.x; }
}
