// Elementwise non-linearities of bottleneck adapters that shaders/activation.wgsl lacks, and their
// analytic backward passes, on flat f32 arrays of n elements:
//   relu (max(x, 0); its gradient at 0 is 0, as PyTorch's), and
//   gelu_erf, the exact GELU x · Φ(x) of PyTorch's gelu(approximate='none') and transformers' "gelu".
// Φ(x) = 0.5 · erfc(−x / √2), with erfc from the Chebyshev fit of Numerical Recipes' erfcc (fractional
// error under 1.2e-7 for every argument), so Φ keeps its relative accuracy far into the negative tail
// where 1 + erf(x / √2) would cancel. Large |x| underflows exp() to 0: no input gives NaN or Inf.
// Grid: 1-D over n elements; a dispatch wider than 65535 workgroups spills into y.

override WORKGROUP_SIZE: u32 = 256;

const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;  // backward only
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // forward result, or dX

fn flat_index(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * WORKGROUP_SIZE;
}

// erfc(z) for z ≥ 0.
fn erfc_nonnegative(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + poly);
}

// Φ(v), the standard normal CDF: 0.5 · erfc(−v / √2), using erfc(−z) = 2 − erfc(z).
fn normal_cdf(v: f32) -> f32 {
  let tail = 0.5 * erfc_nonnegative(abs(v) * INV_SQRT_2);
  return select(tail, 1.0 - tail, v >= 0.0);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn relu(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = max(x[i], 0.0); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn relu_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = select(0.0, grad_out[i], x[i] > 0.0); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gelu_erf(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = x[i] * normal_cdf(x[i]); }
}

// d/dx [x · Φ(x)] = Φ(x) + x · φ(x), φ(x) = exp(−x² / 2) / √(2π).
@compute @workgroup_size(WORKGROUP_SIZE)
fn gelu_erf_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i >= params.n) { return; }
  let v = x[i];
  let density = INV_SQRT_2PI * exp(-0.5 * v * v);
  out[i] = grad_out[i] * (normal_cdf(v) + v * density);
}
