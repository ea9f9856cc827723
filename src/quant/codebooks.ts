// Codebooks of bitsandbytes' 4-bit and 8-bit blockwise quantization, and the exact decision rules
// that map a scaled value to a code. Everything here is f32 arithmetic written out in JavaScript
// numbers with Math.fround after each operation, so the results are the bits bitsandbytes produces.
//
// Decision rules follow the bitsandbytes CUDA kernels (csrc/kernels.cu: dQuantizeNF4, dQuantizeFP4,
// dQuantize<0>), which produce the 4-bit checkpoints found on the hub: a value goes to the upper code
// only when it is strictly greater than the f32 threshold written in the kernel, so a value exactly on
// a threshold takes the lower code, and NaN (0 · ∞ in an all-zero block) takes code 0.

export type QuantType = 'nf4' | 'fp4';
export const QUANT_TYPES: readonly QuantType[] = ['nf4', 'fp4'];

export function isQuantType(value: unknown): value is QuantType {
  return value === 'nf4' || value === 'fp4';
}

/** NF4 code values by index (sorted ascending): `weight.quant_map` of an nf4 layer. */
export const NF4_CODE = Float32Array.of(
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
);

/**
 * FP4 code values by index: sign in bit 3, then a 2-bit exponent and a 1-bit mantissa (bias 3),
 * normalised by the largest magnitude (12) in f32, as bitsandbytes' get_4bit_type('fp4') builds it.
 */
export const FP4_CODE = Float32Array.from(
  [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3],
  (value) => Math.fround(value / 12),
);

/**
 * The f32 thresholds of bitsandbytes' dQuantizeNF4 decision tree, ascending: NF4_THRESHOLDS[i] lies
 * between NF4_CODE[i] and NF4_CODE[i + 1] (their midpoint rounded to f32).
 */
export const NF4_THRESHOLDS = Float32Array.of(
  -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
  -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
  0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
  0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
);

/**
 * The f32 magnitude thresholds of bitsandbytes' dQuantizeFP4 tree, ascending. They are the kernel's
 * decimal literals, which are NOT all the exact f32 midpoints (0.583333f, 0.00260417f, ... are
 * truncated decimals), so they are kept as written there.
 */
export const FP4_THRESHOLDS = Float32Array.of(
  0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333,
);

/** FP4 code (without the sign bit) of each magnitude rank 0..7, i.e. the codes sorted by |value|. */
export const FP4_CODE_BY_RANK = Uint8Array.of(0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011);

export function codebook(quantType: QuantType): Float32Array {
  return quantType === 'nf4' ? NF4_CODE : FP4_CODE;
}

/** Number of entries of `sorted` that `x` is strictly greater than (a binary search; NaN gives 0). */
function rankAbove(sorted: Float32Array, x: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (x > sorted[mid]) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** NF4 code of a scaled value (an f32, normally in [-1, 1]); same comparisons as dQuantizeNF4. */
export function nf4Code(x: number): number {
  return rankAbove(NF4_THRESHOLDS, x);
}

/** FP4 code of a scaled value; same comparisons as dQuantizeFP4 (−0 and NaN get the positive sign). */
export function fp4Code(x: number): number {
  const sign = x < 0 ? 0b1000 : 0;
  return FP4_CODE_BY_RANK[rankAbove(FP4_THRESHOLDS, Math.abs(x))] | sign;
}

export function code4bit(quantType: QuantType, x: number): number {
  return quantType === 'nf4' ? nf4Code(x) : fp4Code(x);
}

/**
 * torch.linspace(start, end, steps) in f32 as the CPU kernel of torch ≥ 2 computes it: the first half
 * counts up from start, the second half down from end, each element rounded once (the kernel's
 * `start + step * i` is contracted into one fused multiply-add). The sums below are exact in float64
 * (f32 operands of exponent ≥ −4, an integer multiplier below 2^7), so Math.fround rounds only once.
 * (torch 1.13's vectorised kernel rounded differently in 42 of the map's 256 entries; bitsandbytes
 * maps printed under torch 2 match this one.)
 */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const first = Math.fround(start);
  const last = Math.fround(end);
  const step = Math.fround(Math.fround(last - first) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const out = new Float32Array(steps);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? Math.fround(first + step * i) : Math.fround(last - step * (steps - 1 - i));
  }
  return out;
}

/**
 * bitsandbytes' create_dynamic_map(signed, max_exponent_bits, total_bits): the 8-bit code used for
 * the second level of double quantization (`weight.nested_quant_map`). For each exponent i, the means
 * of consecutive points of linspace(0.1, 1, fraction_items) scaled by 10^(i − (max_exponent_bits − 1)),
 * with their negatives when signed, plus 0 and 1, sorted.
 */
export function createDynamicMap(signed = true, maxExponentBits = 7, totalBits = 8): Float32Array {
  const data: number[] = [];
  const nonSignBits = totalBits - 1;
  const additionalItems = 2 ** (nonSignBits - maxExponentBits) - 1;
  const addMeans = (points: number, scale: number) => {
    const boundaries = linspaceF32(0.1, 1, points);
    const factor = Math.fround(scale);
    for (let j = 0; j + 1 < boundaries.length; j++) {
      const mean = Math.fround(Math.fround(boundaries[j] + boundaries[j + 1]) / 2);
      data.push(Math.fround(factor * mean));
      if (signed) data.push(Math.fround(-factor * mean));
    }
  };
  let lastScale = 0;
  for (let i = 0; i < maxExponentBits; i++) {
    const fractionItems = signed ? 2 ** (i + nonSignBits - maxExponentBits) + 1 : 2 ** (i + nonSignBits - maxExponentBits + 1) + 1;
    lastScale = 10 ** (-(maxExponentBits - 1) + i);
    addMeans(fractionItems, lastScale);
  }
  if (additionalItems > 0) addMeans(additionalItems + 1, lastScale);
  data.push(0, 1);
  if (data.length !== 2 ** totalBits) throw new Error(`dynamic map has ${data.length} entries, expected ${2 ** totalBits}`);
  while (data.length < 256) data.push(0);
  data.sort((a, b) => a - b);
  return Float32Array.from(data);
}

/** The signed dynamic map used by double quantization, built once. */
export const DYNAMIC_MAP: Float32Array = createDynamicMap(true, 7, 8);

/**
 * Code of `x` in a sorted 256-entry map, exactly as bitsandbytes' dQuantize<0> finds it: a 7-step
 * binary search from index 127, then the probed neighbour wins only if `x` is strictly beyond the f32
 * midpoint (upper + val) · 0.5 (or lower + val). An exact midpoint stays at the search's last pivot.
 */
export function code8bit(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot];
  for (let step = 64; step > 0; step >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += step;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= step;
    }
    val = code[pivot];
  }
  if (upperPivot === 255) upper = code[upperPivot];
  if (lowerPivot === 0) lower = code[lowerPivot];
  if (x > val) {
    const midpoint = Math.fround(Math.fround(upper + val) * 0.5);
    return x > midpoint ? upperPivot : pivot;
  }
  const midpoint = Math.fround(Math.fround(lower + val) * 0.5);
  return x < midpoint ? lowerPivot : pivot;
}
