// Blockwise 4-bit quantization (NF4 / FP4) of an f32 weight already on the GPU, producing the same
// bytes as the CPU reference (src/quant/quantize.ts) and bitsandbytes' kQuantizeBlockwise.
//
// Per block of BLOCK contiguous elements of the flattened weight: absmax = max |x|;
// scale = 1 / absmax and p = x · scale, both rounded to nearest-even f32; the code counts the
// thresholds that p is strictly greater than (src/quant/codebooks.ts). WGSL allows 2.5 ULP
// division, flushing subnormals to zero and indeterminate results for NaN and ∞, any of which would
// change codes, so the weight is read as raw bits and the reciprocal, the product and the
// comparisons are all done in integer arithmetic. The NaN of 0 · ∞ (an all-zero block, or a zero in
// a block whose reciprocal overflows) is handled explicitly: it gets code 0, as in bitsandbytes.
//
// Output: `packed` holds ceil(n / 2) bytes as u32 words (byte j = code[2j] << 4 | code[2j + 1], little
// endian within a word); when n is odd the low nibble of the last byte codes a padding 0.0. Blocks
// hold a multiple of 8 elements, so each word belongs to one block and one thread writes it whole.
// Grid: one workgroup per block, blocks = x + y · num_workgroups.x (1-D, spilling into y).

const THREADS: u32 = 64u;
const SIGN: u32 = 0x80000000u;
const MAGNITUDE: u32 = 0x7fffffffu;
const INFINITY: u32 = 0x7f800000u;

// f32 bit patterns of NF4_THRESHOLDS and FP4_THRESHOLDS in src/quant/codebooks.ts (bitsandbytes'
// dQuantizeNF4 / dQuantizeFP4 literals), ascending.
const NF4_THRESHOLDS = array<u32, 15>(
  0xbf591cd8u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u, 0xbe703cecu, 0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu,
  0x3df64862u, 0x3e5067e0u, 0x3e9582d4u, 0x3ec753f9u, 0x3f006d04u, 0x3f248dafu, 0x3f5c89dau,
);
const FP4_THRESHOLDS = array<u32, 7>(0x3b2aaab9u, 0x3db00000u, 0x3e555555u, 0x3e955555u, 0x3ed55556u, 0x3f155550u, 0x3f555555u);
// FP4 code (without sign) of each magnitude rank.
const FP4_CODE_BY_RANK = array<u32, 8>(0u, 1u, 6u, 7u, 4u, 5u, 2u, 3u);

struct Params {
  n: u32,           // elements of the weight
  blocksize: u32,   // power of two in [32, 4096]
  blocks: u32,
  quant_type: u32,  // 0: nf4, 1: fp4
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> weight: array<u32>;           // [n] f32 bits
@group(0) @binding(2) var<storage, read_write> packed: array<u32>;     // [ceil(n / 8)] words
@group(0) @binding(3) var<storage, read_write> absmax: array<u32>;     // [blocks] f32 bits

var<workgroup> partial_max: array<u32, THREADS>;
var<workgroup> block_reciprocal: u32;

// A normalised significand m in [2^23, 2^24) and exponent e with |value| = m · 2^(e − 150), for a
// finite non-zero f32 (subnormals are shifted up).
struct Unpacked {
  m: u32,
  e: i32,
}

fn unpack(bits: u32) -> Unpacked {
  let field = i32((bits >> 23u) & 0xffu);
  let fraction = bits & 0x7fffffu;
  if (field == 0) {
    let shift = countLeadingZeros(fraction) - 8u;
    return Unpacked(fraction << shift, 1 - i32(shift));
  }
  return Unpacked(fraction | 0x800000u, field);
}

// Round sig · 2^(biased − 150) (sig in [2^23, 2^24), plus a round bit and a sticky bit below it) to
// the nearest f32, ties to even, handling subnormal results and overflow to ∞.
fn round_to_f32(sign: u32, sig_in: u32, round_in: u32, sticky_in: bool, biased: i32) -> u32 {
  var sig = sig_in;
  var round_bit = round_in;
  var sticky = sticky_in;
  var exponent = biased;
  if (exponent < 1) {
    let shift = u32(min(1 - exponent, 26));
    let extended = (sig << 1u) | round_bit;
    sticky = sticky || (extended & ((1u << shift) - 1u)) != 0u;
    let shifted = extended >> shift;
    sig = shifted >> 1u;
    round_bit = shifted & 1u;
    exponent = 0;
  }
  if (round_bit == 1u && (sticky || (sig & 1u) == 1u)) { sig += 1u; }
  // The hidden bit of sig adds one to the exponent field; a carry out of the significand adds another.
  var bits = sig;
  if (exponent >= 1) { bits = (u32(exponent - 1) << 23u) + sig; }
  if (bits >= INFINITY) { bits = INFINITY; }
  return sign | bits;
}

// 1 / a rounded to nearest-even, for a positive finite non-zero f32 `a` (bits).
fn reciprocal_rn(a: u32) -> u32 {
  let u = unpack(a);
  // q = floor(2^48 / m) in (2^24, 2^25], by long division one byte at a time (remainders < 2^24).
  var q = 0x1000000u / u.m;
  var r = 0x1000000u % u.m;
  for (var i = 0; i < 3; i++) {
    let t = r << 8u;
    q = (q << 8u) | (t / u.m);
    r = t % u.m;
  }
  // 1 / a = (2^48 / m) · 2^(102 − e).
  if (q == 0x2000000u) { return round_to_f32(0u, 0x800000u, 0u, false, 254 - u.e); }  // a power of two
  return round_to_f32(0u, q >> 1u, q & 1u, r != 0u, 253 - u.e);
}

// x · y rounded to nearest-even, for a finite x and a positive finite y (bits).
fn multiply_rn(x: u32, y: u32) -> u32 {
  let sign = (x ^ y) & SIGN;
  if ((x & MAGNITUDE) == 0u || (y & MAGNITUDE) == 0u) { return sign; }
  let ux = unpack(x);
  let uy = unpack(y);
  // The 48-bit product of the significands as hi · 2^24 + lo, from 12-bit halves.
  let x1 = ux.m >> 12u;
  let x0 = ux.m & 0xfffu;
  let y1 = uy.m >> 12u;
  let y0 = uy.m & 0xfffu;
  let middle = x1 * y0 + x0 * y1;
  let low_full = x0 * y0 + ((middle & 0xfffu) << 12u);
  let lo = low_full & 0xffffffu;
  let hi = x1 * y1 + (middle >> 12u) + (low_full >> 24u);
  // value = (hi · 2^24 + lo) · 2^(ex + ey − 300)
  if (hi >= 0x800000u) {
    return round_to_f32(sign, hi, lo >> 23u, (lo & 0x7fffffu) != 0u, ux.e + uy.e - 126);
  }
  return round_to_f32(sign, (hi << 1u) | (lo >> 23u), (lo >> 22u) & 1u, (lo & 0x3fffffu) != 0u, ux.e + uy.e - 127);
}

// Unsigned key that orders f32 bit patterns like the numbers (−0 and +0 equal); not for NaN.
fn order_key(bits: u32) -> u32 {
  if ((bits & MAGNITUDE) == 0u) { return SIGN; }
  if ((bits & SIGN) != 0u) { return ~bits; }
  return bits | SIGN;
}

// The code of a scaled value p (f32 bits, finite or ±∞).
fn code_of(p: u32) -> u32 {
  if (params.quant_type == 0u) {
    let key = order_key(p);
    var thresholds = NF4_THRESHOLDS;
    var rank = 0u;
    for (var i = 0u; i < 15u; i++) { rank += select(0u, 1u, key > order_key(thresholds[i])); }
    return rank;
  }
  let magnitude = p & MAGNITUDE;
  var thresholds = FP4_THRESHOLDS;
  var rank = 0u;
  for (var i = 0u; i < 7u; i++) { rank += select(0u, 1u, magnitude > thresholds[i]); }
  var by_rank = FP4_CODE_BY_RANK;
  let negative = (p & SIGN) != 0u && magnitude != 0u;
  return by_rank[rank] | select(0u, 8u, negative);
}

// The code of element bits x in a block whose reciprocal absmax is `reciprocal` (bits).
fn quantize_element(x: u32, reciprocal: u32) -> u32 {
  if (reciprocal == INFINITY) {
    if ((x & MAGNITUDE) == 0u) { return 0u; }  // 0 · ∞ = NaN: every comparison is false
    return code_of((x & SIGN) | INFINITY);
  }
  return code_of(multiply_rn(x, reciprocal));
}

@compute @workgroup_size(THREADS)
fn quantize_4bit(@builtin(local_invocation_id) local: vec3<u32>, @builtin(workgroup_id) group: vec3<u32>,
                 @builtin(num_workgroups) groups: vec3<u32>) {
  let block = group.x + group.y * groups.x;
  if (block >= params.blocks) { return; }
  let start = block * params.blocksize;
  let end = min(params.n, start + params.blocksize);

  var local_max = 0u;
  for (var i = start + local.x; i < end; i += THREADS) { local_max = max(local_max, weight[i] & MAGNITUDE); }
  partial_max[local.x] = local_max;
  workgroupBarrier();
  for (var stride = THREADS / 2u; stride > 0u; stride /= 2u) {
    if (local.x < stride) { partial_max[local.x] = max(partial_max[local.x], partial_max[local.x + stride]); }
    workgroupBarrier();
  }
  if (local.x == 0u) {
    let block_max = partial_max[0];
    absmax[block] = block_max;
    // absmax 0 (all zeros): 1 / 0 = ∞, so every element is 0 · ∞ = NaN.
    var reciprocal = INFINITY;
    if (block_max != 0u) { reciprocal = reciprocal_rn(block_max); }
    block_reciprocal = reciprocal;
  }
  workgroupBarrier();
  let reciprocal = block_reciprocal;

  // Element n (the padding when n is odd) is coded as 0.0; elements past it are not part of the output.
  let coded_end = select(end, end + (params.n & 1u), end == params.n);
  let words = (end - start + 7u) / 8u;
  for (var w = local.x; w < words; w += THREADS) {
    let first = start + w * 8u;
    var word = 0u;
    for (var j = 0u; j < 8u; j++) {
      let i = first + j;
      if (i >= coded_end) { break; }
      var x = 0u;
      if (i < end) { x = weight[i]; }
      let code = quantize_element(x, reciprocal);
      // byte j / 2 of the word; the even element in its high nibble
      word |= code << ((j >> 1u) * 8u + select(0u, 4u, (j & 1u) == 0u));
    }
    packed[start / 8u + w] = word;
  }
}

// Test hook for the integer float arithmetic above: for pair i of (x, y) bits in `weight`, writes
// 1 / y (y positive) and x · y (y positive) to packed[2i] and packed[2i + 1]. Grid: ceil(n / THREADS).
@compute @workgroup_size(THREADS)
fn float_arithmetic_check(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x;
  if (i >= params.n) { return; }
  let x = weight[2u * i];
  let y = weight[2u * i + 1u];
  packed[2u * i] = reciprocal_rn(y);
  packed[2u * i + 1u] = multiply_rn(x, y);
}
