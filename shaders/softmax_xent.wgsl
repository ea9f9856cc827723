// Fused softmax cross-entropy: per-row log-sum-exp, per-row losses, their masked mean, and the
// gradient with respect to the logits, without ever storing the probabilities.
// Shapes: the batch has N rows; one call covers n of them (rows row_offset .. row_offset + n), so a
// large [N, V] can be processed in chunks of rows. V classes.
//   logits    [n, V] f32      (the rows of this call only)
//   targets   [N] i32         (the whole batch; ignore_index marks rows that do not count)
//   row_loss  [N] f32         (logsumexp − logit[target]; 0 for ignored rows, NaN for a target outside [0, V))
//   row_stats [n, 2] f32      (per row: max logit m, and log Σ exp(logit − m); logsumexp = m + that)
//   count     [1] f32         (number of rows whose target is not ignore_index)
//   loss      [1] f32         (Σ row_loss / count; 0 when count is 0)
//   d_loss    [1] f32         (gradient of the loss)
//   d_logits  [n, V] f32      ((softmax − onehot) · d_loss / count; 0 rows for ignored targets)
// Keeping the row max separate from the log-sum makes logit − logsumexp exact to f32 rounding even
// for logits of magnitude 1e4, where one f32 logsumexp would be off by ~1e-3.

const WORKGROUP_SIZE: u32 = 256u;   // const, not override: it also sizes the workgroup arrays
const LOWEST: f32 = -0x1.fffffep+127f; // below every finite logit; the running max of an empty stretch

struct Params {
  rows: u32,        // n (forward, backward) or the length of row_loss / targets (mean, count)
  V: u32,
  row_offset: u32,  // first batch row of this call, indexing targets and row_loss
  ignore_index: i32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> count: array<f32>;
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;
@group(0) @binding(7) var<storage, read> d_loss: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_logits: array<f32>;

var<workgroup> shared_max: array<f32, WORKGROUP_SIZE>;
var<workgroup> shared_sum: array<f32, WORKGROUP_SIZE>;
var<workgroup> shared_count: array<u32, WORKGROUP_SIZE>;

// A NaN cannot be a constant expression in WGSL; through a parameter it is a runtime value.
fn from_bits(bits: u32) -> f32 {
  return bitcast<f32>(bits);
}

// One workgroup per row (grid from grid1d over n rows). Each thread keeps a running (max, sum) over
// its stretch of the row in one pass; the pairs are then merged in a fixed tree, so the result is
// deterministic.
@compute @workgroup_size(WORKGROUP_SIZE)
fn xent_rows_forward(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let row = group.x + group.y * groups.x;
  if (row >= params.rows) { return; }
  let base = row * params.V;

  var m = LOWEST;
  var s = 0.0;
  for (var j = lane; j < params.V; j += WORKGROUP_SIZE) {
    let x = logits[base + j];
    if (x > m) {
      s = s * exp(m - x) + 1.0;
      m = x;
    } else {
      s += exp(x - m);
    }
  }
  shared_max[lane] = m;
  shared_sum[lane] = s;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) {
      let m1 = shared_max[lane];
      let m2 = shared_max[lane + stride];
      let merged = max(m1, m2);
      shared_sum[lane] = shared_sum[lane] * exp(m1 - merged) + shared_sum[lane + stride] * exp(m2 - merged);
      shared_max[lane] = merged;
    }
    workgroupBarrier();
  }

  if (lane == 0u) {
    let row_max = shared_max[0];
    let log_sum = log(shared_sum[0]);
    row_stats[2u * row] = row_max;
    row_stats[2u * row + 1u] = log_sum;
    let label = targets[params.row_offset + row];
    var value = 0.0;
    if (label != params.ignore_index) {
      if (label >= 0 && u32(label) < params.V) {
        value = (row_max - logits[base + u32(label)]) + log_sum;
      } else {
        value = from_bits(0x7fc00000u); // an invalid class index cannot raise an error on the GPU: make it loud
      }
    }
    row_loss[params.row_offset + row] = value;
  }
}

// count[0] = number of targets[0 .. rows) different from ignore_index. One workgroup.
@compute @workgroup_size(WORKGROUP_SIZE)
fn xent_count(@builtin(local_invocation_index) lane: u32) {
  var c = 0u;
  for (var i = lane; i < params.rows; i += WORKGROUP_SIZE) {
    c += select(0u, 1u, targets[i] != params.ignore_index);
  }
  shared_count[lane] = c;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) { shared_count[lane] += shared_count[lane + stride]; }
    workgroupBarrier();
  }
  if (lane == 0u) { count[0] = f32(shared_count[0]); }
}

// loss[0] = Σ row_loss[0 .. rows) / count[0], or 0 when no row counts. One workgroup, fixed order.
@compute @workgroup_size(WORKGROUP_SIZE)
fn xent_mean(@builtin(local_invocation_index) lane: u32) {
  var s = 0.0;
  for (var i = lane; i < params.rows; i += WORKGROUP_SIZE) { s += row_loss[i]; }
  shared_sum[lane] = s;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) { shared_sum[lane] += shared_sum[lane + stride]; }
    workgroupBarrier();
  }
  if (lane == 0u) {
    let c = count[0];
    var value = 0.0;
    if (c > 0.0) { value = shared_sum[0] / c; }
    loss[0] = value;
  }
}

// d_logits = (softmax − onehot) · d_loss / count, one thread per element of [n, V] (grid1d); the
// probability is recomputed from row_stats. Ignored rows get zeros (count may then be 0: no division).
@compute @workgroup_size(WORKGROUP_SIZE)
fn xent_rows_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= params.rows * params.V) { return; }
  let row = i / params.V;
  let col = i - row * params.V;
  let label = targets[params.row_offset + row];
  if (label == params.ignore_index) {
    d_logits[i] = 0.0;
    return;
  }
  let p = exp((logits[i] - row_stats[2u * row]) - row_stats[2u * row + 1u]);
  let onehot = select(0.0, 1.0, i32(col) == label);
  d_logits[i] = (p - onehot) * (d_loss[0] / count[0]);
}
