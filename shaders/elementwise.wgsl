// Elementwise kernels on flat f32 arrays, used by the engine itself (fill, gradient accumulation).
// Grid: 1-D over n elements; a dispatch wider than 65535 workgroups spills into y.

override WORKGROUP_SIZE: u32 = 256;

struct Params {
  n: u32,
  value: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> target_: array<f32>;
@group(0) @binding(2) var<storage, read> source: array<f32>;

fn flat_index(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * WORKGROUP_SIZE;
}

// target_[i] = value
@compute @workgroup_size(WORKGROUP_SIZE)
fn fill(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { target_[i] = params.value; }
}

// target_[i] += source[i]  (gradient accumulation)
@compute @workgroup_size(WORKGROUP_SIZE)
fn accumulate(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i < params.n) { target_[i] = target_[i] + source[i]; }
}
