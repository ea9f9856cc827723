// Elementwise activations and their analytic backward passes, on flat f32 arrays of n elements:
//   gelu (the tanh form of PyTorch gelu(approximate='tanh') and GPT-2's gelu_new),
//   silu (x · sigmoid(x)), and swiglu (silu(gate) · up, the Llama MLP product) fused both ways;
//   relu (max(x, 0); its gradient at 0 is 0, as PyTorch's), and gelu_erf, the exact GELU x · Φ(x) of
//   PyTorch's gelu(approximate='none') and transformers' "gelu" (bottleneck adapters use both).
// Φ(x) = 0.5 · erfc(−x / √2), with erfc from the Chebyshev fit of Numerical Recipes' erfcc (fractional
// error under 1.2e-7 for every argument), so Φ keeps its relative accuracy far into the negative tail
// where 1 + erf(x / √2) would cancel.
// Numerical stability: tanh and sigmoid are evaluated through e = exp(-|z|) ∈ (0, 1], which never
// overflows, using 0.5 · (1 + tanh(u)) = sigmoid(2u); no input of any size gives NaN or Inf.
// Grid: 1-D over n elements; a dispatch wider than 65535 workgroups spills into y.

override WORKGROUP_SIZE: u32 = 256;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_CUBIC: f32 = 0.044715;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;              // input, or the swiglu gate
@group(0) @binding(2) var<storage, read> up: array<f32>;             // swiglu only
@group(0) @binding(3) var<storage, read> grad_out: array<f32>;       // backward only
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // forward result, or dX / dGate
@group(0) @binding(5) var<storage, read_write> grad_up: array<f32>;  // swiglu backward: dUp

fn flat_index(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * WORKGROUP_SIZE;
}

// sigmoid(z) and its derivative sigmoid(z) · (1 − sigmoid(z)), both without cancellation.
struct Sigmoid {
  value: f32,
  slope: f32,
}

fn sigmoid(z: f32) -> Sigmoid {
  let e = exp(-abs(z));
  let inv = 1.0 / (1.0 + e);
  return Sigmoid(select(e * inv, inv, z >= 0.0), e * inv * inv);
}

// gelu(x) = 0.5 · x · (1 + tanh(u)) = x · sigmoid(2u), u = √(2/π) · (x + 0.044715 · x³).
fn gelu_value(v: f32) -> f32 {
  let u = SQRT_2_OVER_PI * v * (1.0 + GELU_CUBIC * v * v);
  return v * sigmoid(2.0 * u).value;
}

// d gelu / dx = sigmoid(2u) + x · 2 · sigmoid'(2u) · du/dx.
fn gelu_derivative(v: f32) -> f32 {
  let u = SQRT_2_OVER_PI * v * (1.0 + GELU_CUBIC * v * v);
  let s = sigmoid(2.0 * u);
  // When the slope underflows to 0, |x| may be large enough for x³ to overflow: 0 · Inf is NaN.
  if (s.slope == 0.0) { return s.value; }
  let du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * v * v);
  return s.value + 2.0 * v * s.slope * du_dx;
}

// d silu / dx = sigmoid(x) + x · sigmoid'(x).
fn silu_derivative(v: f32) -> f32 {
  let s = sigmoid(v);
  return s.value + v * s.slope;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gelu(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = gelu_value(x[i]); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gelu_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = grad_out[i] * gelu_derivative(x[i]); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn silu(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = x[i] * sigmoid(x[i]).value; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn silu_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = grad_out[i] * silu_derivative(x[i]); }
}

// out = silu(gate) · up
@compute @workgroup_size(WORKGROUP_SIZE)
fn swiglu(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = x[i] * sigmoid(x[i]).value * up[i]; }
}

// dGate = dOut · up · silu'(gate), dUp = dOut · silu(gate)
@compute @workgroup_size(WORKGROUP_SIZE)
fn swiglu_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i >= params.n) { return; }
  let gate = x[i];
  let s = sigmoid(gate);
  let g = grad_out[i];
  out[i] = g * up[i] * (s.value + gate * s.slope);
  grad_up[i] = g * gate * s.value;
}

// Only dGate (the up projection's output needs no gradient).
@compute @workgroup_size(WORKGROUP_SIZE)
fn swiglu_backward_gate(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = grad_out[i] * up[i] * silu_derivative(x[i]); }
}

// Only dUp (the gate needs no gradient).
@compute @workgroup_size(WORKGROUP_SIZE)
fn swiglu_backward_up(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { out[i] = grad_out[i] * x[i] * sigmoid(x[i]).value; }
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
