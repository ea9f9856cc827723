// CPU reference of bitsandbytes' 4-bit blockwise quantization (NF4 / FP4), double quantization and
// dequantization. It defines the bytes the GPU quantizer (shaders/quantize_4bit.wgsl) must produce.
//
// Per block of `blocksize` contiguous elements of the flattened weight, as kQuantizeBlockwise does it:
// absmax = max |x| (f32); scale = 1 / absmax (an f32 division); each code is chosen from x · scale (an
// f32 product) by the comparisons in codebooks.ts. An all-zero block has absmax 0, scale +∞ and
// 0 · ∞ = NaN, which every comparison rejects: its codes are 0 (NF4 code 0 is −1.0, dequantized to
// −1.0 · 0 = −0), as in bitsandbytes. When the element count is odd, the low nibble of the last byte
// is the code of a padding 0.0 scaled like the rest of the last block.
//
// Double quantization (compress_statistics): offset = mean(absmax); absmax − offset is quantized
// blockwise (256) to 8 bits with the signed dynamic map. The mean is the float64 sum in index order
// divided by the count, rounded to f32: bitsandbytes takes torch's f32 mean, whose summation order is
// unspecified, so its last bit may differ; the offset travels in the state, so loading stays exact.

import { code4bit, code8bit, codebook, DYNAMIC_MAP, type QuantType } from './codebooks.ts';
import {
  blockCount,
  checkBlocksize,
  checkQuantType,
  checkShape,
  elementCount,
  ElementCountError,
  NESTED_BLOCKSIZE,
  NonFiniteWeightError,
  validateQuantState,
  type NestedAbsmax,
  type QuantState,
} from './quantState.ts';

export interface QuantizeOptions {
  quantType?: QuantType;
  /** Elements per block: a power of two in [32, 4096]; bitsandbytes' default is 64. */
  blocksize?: number;
  /** Quantize the block absmax too (bnb_4bit_use_double_quant). */
  doubleQuant?: boolean;
  /** dtype of the original weight, recorded in the quant state. */
  dtype?: string;
}

/** Quantize a row-major weight of `shape`; `tensor` names it in errors. */
export function quantize4bit(tensor: string, data: Float32Array, shape: readonly number[], options: QuantizeOptions = {}): QuantState {
  const quantType = checkQuantType(tensor, options.quantType ?? 'nf4');
  const blocksize = checkBlocksize(tensor, options.blocksize ?? 64);
  const checkedShape = checkShape(tensor, [...shape]);
  if (elementCount(checkedShape) !== data.length) {
    throw new ElementCountError(tensor, `has ${data.length} elements but shape ${JSON.stringify(checkedShape)} needs ${elementCount(checkedShape)}`);
  }
  const bad = data.findIndex((value) => !Number.isFinite(value));
  if (bad >= 0) throw new NonFiniteWeightError(tensor, `element ${bad} is ${data[bad]}; only finite weights can be quantized`);
  const { packed, absmax } = quantizeBlocks(quantType, data, blocksize);
  const state: QuantState = {
    quantType,
    blocksize,
    shape: checkedShape,
    dtype: options.dtype ?? 'float32',
    packed,
    quantMap: Float32Array.from(codebook(quantType)),
    absmax: options.doubleQuant ? null : absmax,
    nested: options.doubleQuant ? doubleQuantize(absmax) : null,
  };
  return validateQuantState(tensor, state);
}

/** The packed 4-bit codes and per-block absmax of `data`. */
export function quantizeBlocks(quantType: QuantType, data: Float32Array, blocksize: number): { packed: Uint8Array; absmax: Float32Array } {
  const n = data.length;
  const blocks = blockCount(n, blocksize);
  const absmax = new Float32Array(blocks);
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let block = 0; block < blocks; block++) {
    const start = block * blocksize;
    const end = Math.min(n, start + blocksize);
    let max = 0;
    for (let i = start; i < end; i++) max = Math.max(max, Math.abs(data[i]));
    absmax[block] = max;
    const scale = Math.fround(1 / max);
    // The padding element of an odd count belongs to the last block.
    const last = block === blocks - 1 ? end + (n % 2) : end;
    for (let i = start; i < last; i++) {
      const value = i < n ? data[i] : 0;
      const code = code4bit(quantType, Math.fround(value * scale));
      packed[i >> 1] |= i % 2 === 0 ? code << 4 : code;
    }
  }
  return { packed, absmax };
}

/** float64 sum in index order / count, rounded to f32. */
export function absmaxMean(absmax: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i];
  return Math.fround(sum / absmax.length);
}

/** bitsandbytes' quantize_blockwise: 8-bit codes of `values` in `map`, one f32 absmax per block. */
export function quantizeBlockwise8bit(values: Float32Array, map: Float32Array, blocksize: number): { codes: Uint8Array; absmax: Float32Array } {
  const n = values.length;
  const blocks = blockCount(n, blocksize);
  const absmax = new Float32Array(blocks);
  const codes = new Uint8Array(n);
  for (let block = 0; block < blocks; block++) {
    const start = block * blocksize;
    const end = Math.min(n, start + blocksize);
    let max = 0;
    for (let i = start; i < end; i++) max = Math.max(max, Math.abs(values[i]));
    absmax[block] = max;
    const scale = Math.fround(1 / max);
    for (let i = start; i < end; i++) codes[i] = code8bit(map, Math.fround(values[i] * scale));
  }
  return { codes, absmax };
}

/** Second-level quantization of the block absmax (bitsandbytes' compress_statistics). */
export function doubleQuantize(absmax: Float32Array, blocksize = NESTED_BLOCKSIZE, map: Float32Array = DYNAMIC_MAP): NestedAbsmax {
  const offset = absmaxMean(absmax);
  const centred = absmax.map((value) => value - offset); // Float32Array.map rounds each difference to f32
  const { codes, absmax: absmax2 } = quantizeBlockwise8bit(centred, map, blocksize);
  return { codes, absmax2, blocksize, map: Float32Array.from(map), offset };
}

/** The f32 absmax of every block: stored, or map[code] · absmax2 + offset (two f32 roundings) when nested. */
export function dequantizeAbsmax(state: QuantState): Float32Array {
  if (state.absmax) return state.absmax;
  const nested = state.nested!;
  const out = new Float32Array(nested.codes.length);
  for (let block = 0; block < out.length; block++) {
    const scaled = Math.fround(nested.map[nested.codes[block]] * nested.absmax2[Math.floor(block / nested.blocksize)]);
    out[block] = scaled + nested.offset;
  }
  return out;
}

/** The 4-bit code of element `index` (high nibble for even indices). */
export function codeAt(packed: Uint8Array, index: number): number {
  const byte = packed[index >> 1];
  return index % 2 === 0 ? byte >> 4 : byte & 0x0f;
}

/** The weight as f32: quantMap[code] · absmax[block], rounded once to f32 (element order of `shape`). */
export function dequantize4bit(state: QuantState): Float32Array {
  const absmax = dequantizeAbsmax(state);
  const n = elementCount(state.shape);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = state.quantMap[codeAt(state.packed, i)] * absmax[Math.floor(i / state.blocksize)];
  return out;
}
