// Rotary position embedding: rotates pairs of each head's first R dimensions by the angle
// position · inv_freq[i], and copies dimensions R..D unchanged. The backward pass is the same
// kernel with direction −1 (rotation by −angle is the transpose of rotation by +angle).
// x and out are [B, T, H, D] (a head row is D contiguous values); inv_freq [R/2];
// positions [B, T] or [T] (i32). Pair i is (i, i + R/2) in the 'half' layout (HF Llama's
// rotate_half) and (2i, 2i + 1) in the interleaved layout (GPT-J).
//
// Angles: p · f is not rounded to f32, because at p in the thousands that rounding alone moves the
// angle by ~1e-4 rad. It is computed in turns (fractions of a circle) as a sum of exact f32
// products of 12-bit pieces of p, f and 1/2π, each reduced with fract(), which keeps the angle
// error near 1e-7 turns for any |p| < 2²⁴. sin and cos come from polynomials on [−π/4, π/4],
// because WGSL guarantees its builtin sin/cos only to 2⁻¹¹ absolute.
// Grid: 1-D over B·T·H·(D − R/2) work items (a pair, or one copied dimension), spilling into y.

override WORKGROUP_SIZE: u32 = 256;

struct Params {
  count: u32,                   // B·T·H·(D − R/2)
  tokens: u32,                  // T
  heads: u32,                   // H
  head_dim: u32,                // D
  half_rotary: u32,             // R/2, the number of rotated pairs per head
  interleaved: u32,             // 1: pairs (2i, 2i + 1); 0: pairs (i, i + R/2)
  position_offset: i32,         // ropeAtOffset: token t sits at position offset + t
  positions_batch_stride: u32,  // ropeAtPositions: T for positions [B, T], 0 for [T]
  direction: f32,               // +1 forward, −1 backward
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> positions: array<i32>;

const INV_TWO_PI: f32 = 0.15915493667125702;         // f32(1 / 2π)
const INV_TWO_PI_REST: f32 = 6.4206382432985265e-9;  // f32(1 / 2π − INV_TWO_PI)
const TWO_PI: f32 = 6.2831853071795865;

// v with all but its 12 leading significant bits cleared; v − high_bits(v) is exact and has ≤ 12 bits.
fn high_bits(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) & 0xfffff000u);
}

// fract(u · v) for u with at most 12 significant bits and v with at most 24: both partial products
// are exact, so the only rounding is in the final sum.
fn fract_of_product(u: f32, v: f32) -> f32 {
  let v_high = high_bits(v);
  return fract(fract(u * v_high) + fract(u * (v - v_high)));
}

// p · f / 2π modulo 1, in [−1/2, 1/2].
fn rotation_turns(p: i32, f: f32) -> f32 {
  // p = p_high + p_low with ≤ 12 significant bits each while |p| < 2²⁴.
  let p_low = p & 0xfff;
  let p_high = f32(p - p_low);
  // f / 2π = q0 + q1 + q2 + small: q0..q2 are exact products of 12-bit pieces of f and 1/2π, and
  // small, below 2⁻²¹ · f / 2π, can be rounded: p · small stays below ~1 turn for |p| < 2²⁴.
  let f_high = high_bits(f);
  let f_low = f - f_high;
  let c_high = high_bits(INV_TWO_PI);
  let c_low = INV_TWO_PI - c_high;
  let q0 = f_high * c_high;
  let q1 = f_high * c_low;
  let q2 = f_low * c_high;
  let small = f_low * c_low + f * INV_TWO_PI_REST;
  var turns = fract(f32(p) * small);
  turns = fract(turns + fract_of_product(f32(p_low), q2));
  turns = fract(turns + fract_of_product(f32(p_low), q1));
  turns = fract(turns + fract_of_product(f32(p_low), q0));
  turns = fract(turns + fract_of_product(p_high, q2));
  turns = fract(turns + fract_of_product(p_high, q1));
  turns = fract(turns + fract_of_product(p_high, q0));
  return turns - round(turns);
}

// (sin, cos) of 2π · turns for turns in [−1/2, 1/2]: reduce to a quadrant, then Taylor polynomials
// on [−π/4, π/4] (truncation below 2e-9).
fn sin_cos_turns(turns: f32) -> vec2<f32> {
  let quadrant = round(turns * 4.0);
  let angle = (turns - 0.25 * quadrant) * TWO_PI;
  let a2 = angle * angle;
  let s = angle * (1.0 + a2 * (-1.0 / 6.0 + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (1.0 / 362880.0)))));
  let c = 1.0 + a2 * (-0.5 + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40320.0 + a2 * (-1.0 / 3628800.0)))));
  switch (i32(quadrant) & 3) {
    case 1: { return vec2(c, -s); }
    case 2: { return vec2(-s, -c); }
    case 3: { return vec2(-c, s); }
    default: { return vec2(s, c); }
  }
}

// Work item `slot` of a head row: slot < R/2 rotates pair `slot`; a larger slot copies dimension
// R + (slot − R/2), which is past the rotated part.
fn rope_item(head_row: u32, slot: u32, position: i32) {
  let base = head_row * params.head_dim;
  if (slot >= params.half_rotary) {
    let i = base + slot + params.half_rotary;
    out[i] = x[i];
    return;
  }
  var first = base + slot;
  var second = first + params.half_rotary;
  if (params.interleaved != 0u) {
    first = base + 2u * slot;
    second = first + 1u;
  }
  let sin_cos = sin_cos_turns(rotation_turns(position, inv_freq[slot]));
  let sine = params.direction * sin_cos.x;
  let cosine = sin_cos.y;
  let a = x[first];
  let b = x[second];
  out[first] = a * cosine - b * sine;
  out[second] = b * cosine + a * sine;
}

// Positions offset + t for every sequence of the batch (training, or generation with a KV cache).
@compute @workgroup_size(WORKGROUP_SIZE)
fn ropeAtOffset(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (w >= params.count) { return; }
  let per_head = params.head_dim - params.half_rotary;
  let head_row = w / per_head;
  let t = (head_row / params.heads) % params.tokens;
  rope_item(head_row, w % per_head, params.position_offset + i32(t));
}

// Positions read from a tensor.
@compute @workgroup_size(WORKGROUP_SIZE)
fn ropeAtPositions(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (w >= params.count) { return; }
  let per_head = params.head_dim - params.half_rotary;
  let head_row = w / per_head;
  let token = head_row / params.heads;
  let position = positions[(token / params.tokens) * params.positions_batch_stride + token % params.tokens];
  rope_item(head_row, w % per_head, position);
}
