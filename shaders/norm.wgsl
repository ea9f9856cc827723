// Normalization over the last dimension, forward and backward, for two families that share the
// row reductions and the parameter-gradient column sums:
//   layernorm*: torch.nn.LayerNorm (biased variance), y = (x − mean) / sqrt(var + eps) · weight + bias
//   rmsnorm*:   Llama's RMSNorm, y = x / sqrt(mean(x²) + eps) · weight
// Backward: dx per row, dWeight (and LayerNorm's dBias) summed over rows.
// R rows of width C; x, y, dy, dx are [R, C]; weight, bias [C].
// Row kernels: one workgroup per row (grid spills into y past 65535 rows), reduced in workgroup memory.
// LayerNorm keeps the mean as a shift plus a small correction, mean = shift + correction, with shift
// the f32 mean of a first pass: x − shift is then exact for values near the mean, so rows with a large
// offset lose no accuracy (the corrected two-pass algorithm). Its stats are [R, 3] =
// (shift, correction, rstd); RMSNorm's stats are [R] = rstd = 1 / sqrt(mean(x²) + eps).

const WORKGROUP_SIZE: u32 = 256u;
// Parameter-gradient workgroups: COLUMNS adjacent columns × ROW_LANES threads splitting the rows.
const COLUMNS: u32 = 32u;
const ROW_LANES: u32 = 8u;

struct Params {
  rows: u32,      // R
  width: u32,     // C
  eps: f32,
  has_bias: u32,  // layernorm forward: 0 when there is no bias (the weight is bound in its place, unread)
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

// An entry point's workgroup id and grid size. Thread ids stay separate parameters: a struct holding one
// would make the whole struct non-uniform, and the row kernels return on the row before their barriers.
struct Grid {
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
}

// The workgroup's index in a grid that spills into y past 65535 workgroups.
fn flat_group(grid: Grid) -> u32 {
  return grid.group.x + grid.group.y * grid.groups.x;
}

// ---- Row kernels: shared reduction ----

var<workgroup> partial: array<vec2<f32>, WORKGROUP_SIZE>;

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

// ---- Parameter-gradient kernels: shared column sums ----
// Thread (column, lane) sums rows lane, lane + ROW_LANES, ...; lane 0 then adds the ROW_LANES partial
// sums in order. One writer per column and a fixed order: deterministic.
// Grid: ceil(C / COLUMNS) workgroups (spilling into y).

fn column_index(local: vec3<u32>, grid: Grid) -> u32 {
  return flat_group(grid) * COLUMNS + local.x;
}

var<workgroup> lane_sums: array<vec2<f32>, COLUMNS * ROW_LANES>;

// The column's total of `value` over the lanes, valid in lane 0.
fn sum_lanes(local: vec3<u32>, value: vec2<f32>) -> vec2<f32> {
  lane_sums[local.y * COLUMNS + local.x] = value;
  workgroupBarrier();
  var total = vec2(0.0);
  if (local.y == 0u) {
    for (var lane = 0u; lane < ROW_LANES; lane++) { total += lane_sums[lane * COLUMNS + local.x]; }
  }
  return total;
}

// ---- LayerNorm ----

// Normalizes one row into y and returns (shift, correction, rstd).
fn layernorm_row(row: u32, local: u32) -> vec3<f32> {
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
fn layernormForward(@builtin(local_invocation_index) local: u32, grid: Grid) {
  let row = flat_group(grid);
  if (row >= params.rows) { return; }
  _ = layernorm_row(row, local);
}

// y and the row statistics the backward pass reads.
@compute @workgroup_size(WORKGROUP_SIZE)
fn layernormForwardWithStats(@builtin(local_invocation_index) local: u32, grid: Grid) {
  let row = flat_group(grid);
  if (row >= params.rows) { return; }
  let row_stats = layernorm_row(row, local);
  if (local == 0u) {
    stats_out[row * 3u] = row_stats.x;
    stats_out[row * 3u + 1u] = row_stats.y;
    stats_out[row * 3u + 2u] = row_stats.z;
  }
}

// x̂ at flat index i of row `row`.
fn layernorm_normalized(i: u32, row: u32) -> f32 {
  return ((x[i] - stats[row * 3u]) - stats[row * 3u + 1u]) * stats[row * 3u + 2u];
}

// dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), with g = dy · weight and x̂ the normalized input.
@compute @workgroup_size(WORKGROUP_SIZE)
fn layernormBackwardInput(@builtin(local_invocation_index) local: u32, grid: Grid) {
  let row = flat_group(grid);
  if (row >= params.rows) { return; }
  let base = row * params.width;
  var sums = vec2(0.0);  // (Σ g, Σ g · x̂)
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    let g = dy[base + c] * weight[c];
    sums += vec2(g, g * layernorm_normalized(base + c, row));
  }
  let means = workgroup_sum(local, sums) / f32(params.width);
  let rstd = stats[row * 3u + 2u];
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    let g = dy[base + c] * weight[c];
    dx[base + c] = rstd * (g - means.x - layernorm_normalized(base + c, row) * means.y);
  }
}

// This lane's share of dWeight[c] = Σ_r dy[r, c] · x̂[r, c]; 0 past the last column.
fn layernorm_lane_weight_grad(c: u32, lane: u32) -> f32 {
  var sum = 0.0;
  if (c < params.width) {
    for (var r = lane; r < params.rows; r += ROW_LANES) {
      let i = r * params.width + c;
      sum += dy[i] * layernorm_normalized(i, r);
    }
  }
  return sum;
}

// This lane's share of dBias[c] = Σ_r dy[r, c]; 0 past the last column.
fn layernorm_lane_bias_grad(c: u32, lane: u32) -> f32 {
  var sum = 0.0;
  if (c < params.width) {
    for (var r = lane; r < params.rows; r += ROW_LANES) { sum += dy[r * params.width + c]; }
  }
  return sum;
}

// dWeight and dBias.
@compute @workgroup_size(COLUMNS, ROW_LANES)
fn layernormWeightBiasGrad(@builtin(local_invocation_id) local: vec3<u32>, grid: Grid) {
  let c = column_index(local, grid);
  let lane = local.y;
  let total = sum_lanes(local, vec2(layernorm_lane_weight_grad(c, lane), layernorm_lane_bias_grad(c, lane)));
  if (lane == 0u && c < params.width) {
    d_weight[c] = total.x;
    d_bias[c] = total.y;
  }
}

// dWeight only (frozen bias, or no bias).
@compute @workgroup_size(COLUMNS, ROW_LANES)
fn layernormWeightGrad(@builtin(local_invocation_id) local: vec3<u32>, grid: Grid) {
  let c = column_index(local, grid);
  let total = sum_lanes(local, vec2(layernorm_lane_weight_grad(c, local.y), 0.0));
  if (local.y == 0u && c < params.width) { d_weight[c] = total.x; }
}

// dBias only (frozen weight); reads neither x nor stats.
@compute @workgroup_size(COLUMNS, ROW_LANES)
fn layernormBiasGrad(@builtin(local_invocation_id) local: vec3<u32>, grid: Grid) {
  let c = column_index(local, grid);
  let total = sum_lanes(local, vec2(layernorm_lane_bias_grad(c, local.y), 0.0));
  if (local.y == 0u && c < params.width) { d_bias[c] = total.x; }
}

// ---- RMSNorm: no bias; stats_out and stats hold rstd [R] ----

// Normalizes one row into y and returns its rstd.
fn rmsnorm_row(row: u32, local: u32) -> f32 {
  let base = row * params.width;
  var squares = 0.0;
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) { squares += x[base + c] * x[base + c]; }
  let row_rstd = 1.0 / sqrt(workgroup_sum(local, vec2(squares, 0.0)).x / f32(params.width) + params.eps);
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) { y[base + c] = x[base + c] * row_rstd * weight[c]; }
  return row_rstd;
}

// y only (inference, or nothing to differentiate).
@compute @workgroup_size(WORKGROUP_SIZE)
fn rmsnormForward(@builtin(local_invocation_index) local: u32, grid: Grid) {
  let row = flat_group(grid);
  if (row >= params.rows) { return; }
  _ = rmsnorm_row(row, local);
}

// y and the per-row rstd the backward pass reads.
@compute @workgroup_size(WORKGROUP_SIZE)
fn rmsnormForwardWithStats(@builtin(local_invocation_index) local: u32, grid: Grid) {
  let row = flat_group(grid);
  if (row >= params.rows) { return; }
  let row_rstd = rmsnorm_row(row, local);
  if (local == 0u) { stats_out[row] = row_rstd; }
}

// dx = rstd · (g − x̂ · mean(g · x̂)), with g = dy · weight and x̂ = x · rstd.
@compute @workgroup_size(WORKGROUP_SIZE)
fn rmsnormBackwardInput(@builtin(local_invocation_index) local: u32, grid: Grid) {
  let row = flat_group(grid);
  if (row >= params.rows) { return; }
  let base = row * params.width;
  let row_rstd = stats[row];
  var sum = 0.0;  // Σ g · x̂
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    sum += dy[base + c] * weight[c] * x[base + c] * row_rstd;
  }
  let mean_g_xhat = workgroup_sum(local, vec2(sum, 0.0)).x / f32(params.width);
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    let x_hat = x[base + c] * row_rstd;
    dx[base + c] = row_rstd * (dy[base + c] * weight[c] - x_hat * mean_g_xhat);
  }
}

// dWeight[c] = Σ_r dy[r, c] · x̂[r, c].
@compute @workgroup_size(COLUMNS, ROW_LANES)
fn rmsnormWeightGrad(@builtin(local_invocation_id) local: vec3<u32>, grid: Grid) {
  let c = column_index(local, grid);
  var sum = 0.0;
  if (c < params.width) {
    for (var r = local.y; r < params.rows; r += ROW_LANES) {
      let i = r * params.width + c;
      sum += dy[i] * x[i] * stats[r];
    }
  }
  let total = sum_lanes(local, vec2(sum, 0.0));
  if (local.y == 0u && c < params.width) { d_weight[c] = total.x; }
}
