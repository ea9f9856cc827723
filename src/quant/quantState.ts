// The state of one 4-bit quantized weight, in bitsandbytes' layout, and its validation. A weight of
// shape S (n = ∏S elements, row-major) is cut into ceil(n / blocksize) blocks of contiguous elements;
// `packed` holds ceil(n / 2) bytes, byte j = (code[2j] << 4) | code[2j + 1] (a padding code fills the
// low nibble when n is odd). Block scales are either `absmax` (one f32 per block) or, with double
// quantization, `nested`: one 8-bit code per block into a 256-entry map, an f32 scale per group of
// `nested.blocksize` blocks, and an f32 offset: absmax[b] = map[codes[b]] · absmax2[b / nested.blocksize] + offset.

import { isQuantType, type QuantType } from './codebooks.ts';

export const MIN_BLOCKSIZE = 32;
export const MAX_BLOCKSIZE = 4096;
/** bitsandbytes always quantizes the absmax in blocks of 256. */
export const NESTED_BLOCKSIZE = 256;

export interface NestedAbsmax {
  /** One 8-bit code per 4-bit block (`weight.absmax` of a double-quantized layer). */
  codes: Uint8Array;
  /** One f32 scale per group of `blocksize` codes (`weight.nested_absmax`). */
  absmax2: Float32Array;
  blocksize: number;
  /** The 256-entry code (`weight.nested_quant_map`). */
  map: Float32Array;
  /** mean(absmax), an f32 value (`nested_offset` of the quant-state JSON). */
  offset: number;
}

export interface QuantState {
  quantType: QuantType;
  blocksize: number;
  /** Shape of the original weight, [out, in] for a linear layer. */
  shape: number[];
  /** dtype of the original weight, as bitsandbytes records it ('float32', 'float16', 'bfloat16'). */
  dtype: string;
  /** ceil(n / 2) bytes. */
  packed: Uint8Array;
  /** The 16 code values (`weight.quant_map`). */
  quantMap: Float32Array;
  /** Per-block f32 absmax; null when the scales are double-quantized. */
  absmax: Float32Array | null;
  nested: NestedAbsmax | null;
}

/** Base of the typed errors: every one names the tensor in `tensor` and in the message. */
export class QuantStateError extends Error {
  constructor(
    readonly tensor: string,
    detail: string,
  ) {
    super(`${JSON.stringify(tensor)}: ${detail}`);
    this.name = new.target.name;
  }
}

/** A block size that is not a power of two in [32, 4096] (or a nested one that is not a power of two). */
export class BlockSizeError extends QuantStateError {}

/** A quant type other than nf4 / fp4. */
export class UnknownQuantTypeError extends QuantStateError {}

/** A tensor whose element count (or shape) differs from what the quant state says. */
export class ElementCountError extends QuantStateError {}

/** A packed weight, absmax or nested tensor that is shorter than the quant state needs. */
export class TruncatedTensorError extends QuantStateError {}

/** A part of the state stored with a dtype bitsandbytes never writes there (e.g. an f16 absmax). */
export class QuantDTypeError extends QuantStateError {}

/** A quant-state JSON that is not valid JSON, lacks a field, or has a field of the wrong type. */
export class QuantStateFormatError extends QuantStateError {}

/** NaN or ±Infinity in a weight being quantized. */
export class NonFiniteWeightError extends QuantStateError {}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

export function blockCount(elements: number, blocksize: number): number {
  return Math.ceil(elements / blocksize);
}

export function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && (value & (value - 1)) === 0;
}

export function checkBlocksize(tensor: string, blocksize: unknown): number {
  if (typeof blocksize !== 'number' || !isPowerOfTwo(blocksize) || blocksize < MIN_BLOCKSIZE || blocksize > MAX_BLOCKSIZE) {
    throw new BlockSizeError(tensor, `block size ${String(blocksize)} is not a power of two between ${MIN_BLOCKSIZE} and ${MAX_BLOCKSIZE}`);
  }
  return blocksize;
}

export function checkNestedBlocksize(tensor: string, blocksize: unknown): number {
  if (typeof blocksize !== 'number' || !isPowerOfTwo(blocksize) || blocksize > 1 << 20) {
    throw new BlockSizeError(tensor, `nested block size ${String(blocksize)} is not a power of two`);
  }
  return blocksize;
}

export function checkQuantType(tensor: string, quantType: unknown): QuantType {
  if (!isQuantType(quantType)) {
    throw new UnknownQuantTypeError(tensor, `unknown quant type ${JSON.stringify(quantType)} (expected "nf4" or "fp4")`);
  }
  return quantType;
}

export function checkShape(tensor: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || shape.length === 0 || shape.some((dim) => !Number.isSafeInteger(dim) || dim < 0)) {
    throw new QuantStateFormatError(tensor, `invalid shape ${JSON.stringify(shape)}`);
  }
  const elements = elementCount(shape);
  if (!Number.isSafeInteger(elements) || elements > 2 ** 32 - 1) {
    throw new ElementCountError(tensor, `shape ${JSON.stringify(shape)} has ${elements} elements, more than 2^32 − 1`);
  }
  return shape as number[];
}

/** `actual` must equal `expected`: shorter means truncated, longer means a different element count. */
function checkLength(tensor: string, what: string, actual: number, expected: number, unit: string): void {
  if (actual < expected) {
    throw new TruncatedTensorError(tensor, `${what} has ${actual} ${unit} but the quant state needs ${expected}`);
  }
  if (actual > expected) {
    throw new ElementCountError(tensor, `${what} has ${actual} ${unit} but the quant state says ${expected}`);
  }
}

/** Throws a typed error naming `tensor` unless the state is complete and consistent. */
export function validateQuantState(tensor: string, state: QuantState): QuantState {
  checkQuantType(tensor, state.quantType);
  checkBlocksize(tensor, state.blocksize);
  const elements = elementCount(checkShape(tensor, state.shape));
  const blocks = blockCount(elements, state.blocksize);
  checkLength(tensor, 'the packed weight', state.packed.length, Math.ceil(elements / 2), 'bytes');
  checkLength(tensor, 'the quant map', state.quantMap.length, 16, 'entries');
  if ((state.absmax === null) === (state.nested === null)) {
    throw new QuantStateFormatError(tensor, 'the quant state needs exactly one of absmax and nested absmax');
  }
  if (state.absmax) checkLength(tensor, 'absmax', state.absmax.length, blocks, 'values');
  if (state.nested) {
    const nested = state.nested;
    checkNestedBlocksize(tensor, nested.blocksize);
    checkLength(tensor, 'the quantized absmax', nested.codes.length, blocks, 'codes');
    checkLength(tensor, 'nested_absmax', nested.absmax2.length, blockCount(blocks, nested.blocksize), 'values');
    checkLength(tensor, 'nested_quant_map', nested.map.length, 256, 'entries');
    if (!Number.isFinite(nested.offset)) throw new QuantStateFormatError(tensor, `nested_offset ${nested.offset} is not finite`);
  }
  return state;
}

/** The state must describe a weight of exactly this shape (e.g. the [out, in] a model's config implies). */
export function expectShape(tensor: string, state: QuantState, shape: readonly number[]): void {
  const same = state.shape.length === shape.length && state.shape.every((dim, i) => dim === shape[i]);
  if (!same) {
    throw new ElementCountError(
      tensor,
      `the quant state says shape ${JSON.stringify(state.shape)} (${elementCount(state.shape)} elements) but the model needs ${JSON.stringify(shape)} (${elementCount(shape)} elements)`,
    );
  }
}

/** Bytes a quantized weight occupies (packed codes plus scales), for memory accounting. */
export function quantStateBytes(state: QuantState): { packed: number; scales: number } {
  const scales = state.absmax
    ? state.absmax.byteLength
    : state.nested!.codes.byteLength + state.nested!.absmax2.byteLength + state.nested!.map.byteLength + 4;
  return { packed: state.packed.byteLength, scales: scales + state.quantMap.byteLength };
}
