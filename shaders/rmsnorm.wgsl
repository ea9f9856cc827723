// RMS normalization over the last dimension, as Llama's RMSNorm:
//   y = x / sqrt(mean(x²) + eps) · weight
// and its backward: dx per row, dWeight summed over rows.
// R rows of width C; x, y, dy, dx are [R, C]; weight [C]; rstd [R] = 1 / sqrt(mean(x²) + eps).
// Row kernels: one workgroup per row (grid spills into y past 65535 rows), reduced in workgroup memory.

const WORKGROUP_SIZE: u32 = 256u;
// Weight-gradient workgroups: COLUMNS adjacent columns × ROW_LANES threads splitting the rows.
const COLUMNS: u32 = 32u;
const ROW_LANES: u32 = 8u;

struct Params {
  rows: u32,   // R
  width: u32,  // C
  eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> rstd: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_weight: array<f32>;

var<workgroup> partial: array<f32, WORKGROUP_SIZE>;

fn row_index(group: vec3<u32>, groups: vec3<u32>) -> u32 {
  return group.x + group.y * groups.x;
}

// Sum of `value` over the workgroup, returned to every thread; a fixed tree, so deterministic.
fn workgroup_sum(local: u32, value: f32) -> f32 {
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

// Normalizes one row into y and returns its rstd.
fn normalize_row(row: u32, local: u32) -> f32 {
  let base = row * params.width;
  var squares = 0.0;
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) { squares += x[base + c] * x[base + c]; }
  let row_rstd = 1.0 / sqrt(workgroup_sum(local, squares) / f32(params.width) + params.eps);
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) { y[base + c] = x[base + c] * row_rstd * weight[c]; }
  return row_rstd;
}

// y only (inference, or nothing to differentiate).
@compute @workgroup_size(WORKGROUP_SIZE)
fn rmsnormForward(
  @builtin(local_invocation_index) local: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let row = row_index(group, groups);
  if (row >= params.rows) { return; }
  _ = normalize_row(row, local);
}

// y and the per-row rstd the backward pass reads.
@compute @workgroup_size(WORKGROUP_SIZE)
fn rmsnormForwardWithStats(
  @builtin(local_invocation_index) local: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let row = row_index(group, groups);
  if (row >= params.rows) { return; }
  let row_rstd = normalize_row(row, local);
  if (local == 0u) { rstd_out[row] = row_rstd; }
}

// dx = rstd · (g − x̂ · mean(g · x̂)), with g = dy · weight and x̂ = x · rstd.
@compute @workgroup_size(WORKGROUP_SIZE)
fn rmsnormBackwardInput(
  @builtin(local_invocation_index) local: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let row = row_index(group, groups);
  if (row >= params.rows) { return; }
  let base = row * params.width;
  let row_rstd = rstd[row];
  var sum = 0.0;  // Σ g · x̂
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    sum += dy[base + c] * weight[c] * x[base + c] * row_rstd;
  }
  let mean_g_xhat = workgroup_sum(local, sum) / f32(params.width);
  for (var c = local; c < params.width; c += WORKGROUP_SIZE) {
    let x_hat = x[base + c] * row_rstd;
    dx[base + c] = row_rstd * (dy[base + c] * weight[c] - x_hat * mean_g_xhat);
  }
}

// dWeight[c] = Σ_r dy[r, c] · x̂[r, c]. Thread (column, lane) sums rows lane, lane + ROW_LANES, ...;
// lane 0 then adds the ROW_LANES partial sums in order: one writer per column, deterministic.
// Grid: ceil(C / COLUMNS) workgroups (spilling into y).
var<workgroup> lane_sums: array<f32, COLUMNS * ROW_LANES>;

@compute @workgroup_size(COLUMNS, ROW_LANES)
fn rmsnormWeightGrad(
  @builtin(local_invocation_id) local: vec3<u32>,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let c = (group.x + group.y * groups.x) * COLUMNS + local.x;
  var sum = 0.0;
  if (c < params.width) {
    for (var r = local.y; r < params.rows; r += ROW_LANES) {
      let i = r * params.width + c;
      sum += dy[i] * x[i] * rstd[r];
    }
  }
  lane_sums[local.y * COLUMNS + local.x] = sum;
  workgroupBarrier();
  if (local.y == 0u && c < params.width) {
    var total = 0.0;
    for (var lane = 0u; lane < ROW_LANES; lane++) { total += lane_sums[lane * COLUMNS + local.x]; }
    d_weight[c] = total;
  }
}
