// Binary arithmetic with NumPy-style broadcasting: out = alpha·a + beta·b (OP_ADD) or a·b (OP_MUL),
// and scaling by a constant. The host coalesces the operands' shapes (ops/arithmetic.ts) and picks
// the cheapest entry point:
//   binary_same:    a, b and out all have n elements.
//   binary_repeat:  a has n elements; b has `period` elements and repeats along the leading dims
//                   (a bias or gain [C] against [..., C]; period 1 is a scalar).
//   binary_general: up to MAX_RANK coalesced dims, with per-operand element strides (0 where the
//                   operand is broadcast).
// Grid: 1-D over n output elements; a dispatch wider than 65535 workgroups spills into y.

override WORKGROUP_SIZE: u32 = 256;
// Which binary op the pipeline computes; the pipeline cache compiles one per value.
override OP: u32 = 0u;
const OP_ADD: u32 = 0u;
const OP_MUL: u32 = 1u;
const MAX_RANK: u32 = 6u;

struct Params {
  n: u32,
  period: u32,  // binary_repeat: elements of b
  rank: u32,    // binary_general: coalesced dims in use, innermost first
  alpha: f32,   // OP_ADD coefficient of a; scale factor of `scale`
  beta: f32,    // OP_ADD coefficient of b
  size0: u32,
  size1: u32,
  size2: u32,
  size3: u32,
  size4: u32,
  size5: u32,
  a_stride0: u32,
  a_stride1: u32,
  a_stride2: u32,
  a_stride3: u32,
  a_stride4: u32,
  a_stride5: u32,
  b_stride0: u32,
  b_stride1: u32,
  b_stride2: u32,
  b_stride3: u32,
  b_stride4: u32,
  b_stride5: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn flat_index(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * WORKGROUP_SIZE;
}

fn combine(x: f32, y: f32) -> f32 {
  if (OP == OP_MUL) { return x * y; }
  return params.alpha * x + params.beta * y;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn binary_same(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = combine(a[i], b[i]); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn binary_repeat(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = combine(a[i], b[i % params.period]); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn binary_general(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i >= params.n) { return; }
  var sizes = array<u32, MAX_RANK>(params.size0, params.size1, params.size2, params.size3, params.size4, params.size5);
  var a_strides = array<u32, MAX_RANK>(
    params.a_stride0, params.a_stride1, params.a_stride2, params.a_stride3, params.a_stride4, params.a_stride5);
  var b_strides = array<u32, MAX_RANK>(
    params.b_stride0, params.b_stride1, params.b_stride2, params.b_stride3, params.b_stride4, params.b_stride5);
  var rest = i;
  var a_index = 0u;
  var b_index = 0u;
  for (var d = 0u; d < min(params.rank, MAX_RANK); d++) {
    let coord = rest % sizes[d];
    rest = rest / sizes[d];
    a_index += coord * a_strides[d];
    b_index += coord * b_strides[d];
  }
  out[i] = combine(a[a_index], b[b_index]);
}

// out = alpha · a
@compute @workgroup_size(WORKGROUP_SIZE)
fn scale(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = params.alpha * a[i]; }
}
