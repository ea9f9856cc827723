// Deterministic sums over the middle axis of x viewed as [O, R, C]: the backward pass of
// broadcasting (ops/arithmetic.ts), where a broadcast operand's gradient is the output gradient
// summed over the dims it was repeated along. The host splits any broadcast pattern into passes of
// this form, and splits a long R into `chunks` partial sums to keep enough threads busy:
//   out[o, chunk, c] = scale · Σ_{r in chunk} x[o, r, c]            (reduce_middle)
//   out[o, chunk, c] = scale · Σ_{r in chunk} x[o, r, c] · m[o, r, c]  (reduce_middle_product)
// Each thread owns one output element and adds its rows in order, so results never depend on
// scheduling. Adjacent threads own adjacent c and so read adjacent addresses.
// Grid: 1-D over n = O · chunks · C outputs; a dispatch wider than 65535 workgroups spills into y.

override WORKGROUP_SIZE: u32 = 256;

struct Params {
  n: u32,
  R: u32,
  C: u32,
  rows_per_chunk: u32,
  chunks: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn flat_index(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * WORKGROUP_SIZE;
}

// The first element of this output's rows in x, and its row range.
struct Rows {
  base: u32,
  begin: u32,
  end: u32,
}

fn rows_of(i: u32) -> Rows {
  let c = i % params.C;
  let outer = i / params.C;
  let chunk = outer % params.chunks;
  let o = outer / params.chunks;
  let begin = chunk * params.rows_per_chunk;
  return Rows(o * params.R * params.C + c, begin, min(params.R, begin + params.rows_per_chunk));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn reduce_middle(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i >= params.n) { return; }
  let rows = rows_of(i);
  var sum = 0.0;
  for (var r = rows.begin; r < rows.end; r++) { sum += x[rows.base + r * params.C]; }
  out[i] = params.scale * sum;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn reduce_middle_product(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flat_index(id, groups);
  if (i >= params.n) { return; }
  let rows = rows_of(i);
  var sum = 0.0;
  for (var r = rows.begin; r < rows.end; r++) {
    let index = rows.base + r * params.C;
    sum = fma(x[index], m[index], sum);
  }
  out[i] = params.scale * sum;
}
