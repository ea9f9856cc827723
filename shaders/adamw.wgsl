// Fused AdamW step, in place, as torch.optim.AdamW (amsgrad off): for each element
//   g  = grad · grad_scale                        (grad_scale: gradient clipping, read on the GPU)
//   p ← p · (1 − lr · weight_decay)                (decoupled weight decay)
//   m ← β1 · m + (1 − β1) · g
//   v ← β2 · v + (1 − β2) · g²
//   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
// The step-dependent scalars are computed on the host in float64. With a skip flag (u32, non-zero
// when the step is non-finite) nothing is written, so a bad step is dropped without a readback.
// param, grad, m, v: [n] f32 (flat). Grid: grid1d over n. One entry point per optional input,
// because a pipeline with layout 'auto' may only bind what its entry point uses.

override WORKGROUP_SIZE: u32 = 256;

struct Params {
  n: u32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  eps: f32,
  step_size: f32,              // lr / (1 − β1^t)
  bias_correction2_sqrt: f32,  // √(1 − β2^t)
  decay: f32,                  // 1 − lr · weight_decay
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> grad_scale: array<f32>;  // [1]
@group(0) @binding(6) var<storage, read> skip_flag: array<u32>;   // [1]

fn flat_index(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * WORKGROUP_SIZE;
}

// The operation order follows torch's single-tensor AdamW, so f32 results agree closely.
fn update(i: u32, g: f32) {
  let p = param[i] * params.decay;
  let m_new = m[i] * params.beta1 + g * params.one_minus_beta1;
  let v_new = v[i] * params.beta2 + params.one_minus_beta2 * g * g;
  let denom = sqrt(v_new) / params.bias_correction2_sqrt + params.eps;
  param[i] = p - params.step_size * m_new / denom;
  m[i] = m_new;
  v[i] = v_new;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adamw(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { update(i, grad[i]); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adamw_scaled(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { update(i, grad[i] * grad_scale[0]); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adamw_skippable(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n && skip_flag[0] == 0u) { update(i, grad[i]); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adamw_scaled_skippable(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n && skip_flag[0] == 0u) { update(i, grad[i] * grad_scale[0]); }
}
