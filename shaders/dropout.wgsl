// Dropout with a counter-based RNG: element i keeps its value, scaled by 1 / (1 − p), when
// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) of the
// counter (offset + i as 64 bits, 0, 0) under the key (seed as 64 bits) gives a first word
// ≥ threshold = floor(p · 2^32). The mask is a pure function of (seed, offset + i), so it is never
// stored: the backward pass runs this same kernel on the output gradient.
// x, y: [n] f32 (any shape, flat). Grid: grid1d over n.

override WORKGROUP_SIZE: u32 = 256;

struct Params {
  n: u32,
  threshold: u32,   // floor(p · 2^32)
  scale: f32,       // 1 / (1 − p)
  seed_lo: u32,
  seed_hi: u32,
  offset_lo: u32,   // counter of element 0, as two 32-bit halves
  offset_hi: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;  // key schedule: golden ratio
const PHILOX_W1: u32 = 0xBB67AE85u;  // key schedule: sqrt(3) − 1

// High 32 bits of the 64-bit product a · b, from 16-bit halves (WGSL has no 64-bit integers).
// cross cannot overflow: at most (2^16 − 1)^2 + 2 (2^16 − 1) = 2^32 − 1.
fn mul_hi(a: u32, b: u32) -> u32 {
  let a_lo = a & 0xffffu;
  let a_hi = a >> 16u;
  let b_lo = b & 0xffffu;
  let b_hi = b >> 16u;
  let lo_lo = a_lo * b_lo;
  let hi_lo = a_hi * b_lo;
  let lo_hi = a_lo * b_hi;
  let cross = (lo_lo >> 16u) + (hi_lo & 0xffffu) + lo_hi;
  return a_hi * b_hi + (hi_lo >> 16u) + (cross >> 16u);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var round = 0u; round < 10u; round++) {
    if (round > 0u) { k += vec2<u32>(PHILOX_W0, PHILOX_W1); }
    let hi0 = mul_hi(PHILOX_M0, c.x);
    let lo0 = PHILOX_M0 * c.x;
    let hi1 = mul_hi(PHILOX_M1, c.z);
    let lo1 = PHILOX_M1 * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}

// y[i] = x[i] · scale where element i is kept, 0 where it is dropped.
@compute @workgroup_size(WORKGROUP_SIZE)
fn dropout(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * WORKGROUP_SIZE;
  if (i >= params.n) { return; }
  let counter_lo = params.offset_lo + i;
  let counter_hi = params.offset_hi + select(0u, 1u, counter_lo < i);  // carry out of the low word
  let bits = philox4x32_10(vec4<u32>(counter_lo, counter_hi, 0u, 0u), vec2<u32>(params.seed_lo, params.seed_hi));
  y[i] = select(0.0, x[i] * params.scale, bits.x >= params.threshold);
}
