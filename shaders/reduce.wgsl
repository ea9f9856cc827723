// Global gradient norm and what clipping needs from it, all on the GPU:
//   sum_squares_partial: partial sums of squares of one tensor, one per block of BLOCK elements,
//                        written to partials[partial_offset + block]
//   sum_sqrt:            norm = √(Σ partials), one workgroup in a fixed order (deterministic)
//   clip_scale:          scale = min(1, max_norm / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_
//   non_finite_flag:     flag = 1 when value[0] is NaN or ±Inf, else 0
// values: [n] f32 (one gradient, flat); partials: [P] f32 for all tensors; norm, scale: [1] f32;
// flag: [1] u32.

const WORKGROUP_SIZE: u32 = 256u;     // const: it also sizes the workgroup array
const ITEMS_PER_THREAD: u32 = 16u;
const BLOCK: u32 = WORKGROUP_SIZE * ITEMS_PER_THREAD;  // elements per partial sum; ops/gradNorm.ts agrees

struct Params {
  n: u32,                // elements of values (partial), or number of partials (sum_sqrt)
  partial_offset: u32,
  max_norm: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;
@group(0) @binding(4) var<storage, read_write> scale: array<f32>;
@group(0) @binding(5) var<storage, read_write> flag: array<u32>;

var<workgroup> shared_sum: array<f32, WORKGROUP_SIZE>;

// Fixed-order tree sum of shared_sum; the result is in shared_sum[0] for every thread after the call.
fn workgroup_sum(lane: u32, value: f32) {
  shared_sum[lane] = value;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) { shared_sum[lane] += shared_sum[lane + stride]; }
    workgroupBarrier();
  }
}

// Grid: grid1d over ceil(n / BLOCK) blocks.
@compute @workgroup_size(WORKGROUP_SIZE)
fn sum_squares_partial(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let block = group.x + group.y * groups.x;
  let start = block * BLOCK;
  if (start >= params.n) { return; }
  var s = 0.0;
  for (var k = 0u; k < ITEMS_PER_THREAD; k++) {
    let i = start + k * WORKGROUP_SIZE + lane;
    if (i < params.n) {
      let x = values[i];
      s += x * x;
    }
  }
  workgroup_sum(lane, s);
  if (lane == 0u) { partials[params.partial_offset + block] = shared_sum[0]; }
}

// One workgroup.
@compute @workgroup_size(WORKGROUP_SIZE)
fn sum_sqrt(@builtin(local_invocation_index) lane: u32) {
  var s = 0.0;
  for (var i = lane; i < params.n; i += WORKGROUP_SIZE) { s += partials[i]; }
  workgroup_sum(lane, s);
  if (lane == 0u) { norm[0] = sqrt(shared_sum[0]); }
}

// One thread. A NaN norm gives a NaN scale (as torch.clamp does), an infinite one gives 0.
@compute @workgroup_size(1)
fn clip_scale() {
  let coefficient = params.max_norm / (norm[0] + 1e-6);
  scale[0] = select(coefficient, 1.0, coefficient >= 1.0);
}

// One thread. Tested on the bits: an all-ones exponent is NaN or ±Inf, and no compiler may fold it away.
@compute @workgroup_size(1)
fn non_finite_flag() {
  let bits = bitcast<u32>(norm[0]);
  flag[0] = select(0u, 1u, (bits & 0x7f800000u) == 0x7f800000u);
}
