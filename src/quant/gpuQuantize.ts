// A 4-bit weight resident on the GPU (what linear4bit reads), made by quantizing an f32 weight that is
// already on the GPU (shaders/quantize_4bit.wgsl, identical bytes to the CPU reference), by uploading
// a QuantState (a pre-quantized checkpoint), or read back into a QuantState (to write a file).
//
// With double quantization the 4-bit pass runs on the GPU and the second level runs on the CPU
// reference over the read-back absmax: it needs the mean of all block absmax values, a reduction
// whose rounding must match the reference exactly and which WGSL (no f64) cannot reproduce cheaply,
// and it touches one value per block (1/64 of the weight's elements, 1/256 of its f32 bytes).

import type { Engine } from '../engine/engine.ts';
import { grid1d } from '../engine/kernels/grid.ts';
import type { Tensor } from '../engine/tensor.ts';
import { u32 } from '../gpu/runtime.ts';
import { codebook, DYNAMIC_MAP, type QuantType } from './codebooks.ts';
import { doubleQuantize } from './quantize.ts';
import {
  blockCount,
  checkBlocksize,
  checkQuantType,
  elementCount,
  ElementCountError,
  NESTED_BLOCKSIZE,
  QuantDTypeError,
  QuantStateFormatError,
  validateQuantState,
  type QuantState,
} from './quantState.ts';

/** Offsets into the `tables` buffer: 16 code values, then the 256-entry nested map. */
export const TABLE_CODES = 0;
export const TABLE_NESTED_MAP = 16;
export const TABLE_LENGTH = 16 + 256;

export interface GpuQuantizeOptions {
  quantType?: QuantType;
  blocksize?: number;
  doubleQuant?: boolean;
  /** Name used in errors (defaults to the tensor's name). */
  name?: string;
  /** dtype of the original weight, recorded in the quant state. */
  dtype?: string;
}

/** A frozen 4-bit linear weight W [out, in] on the GPU; owns its buffers until dispose(). */
export class QuantizedWeight {
  constructor(
    readonly name: string,
    readonly quantType: QuantType,
    readonly blocksize: number,
    /** [out, in] */
    readonly shape: readonly [number, number],
    readonly dtype: string,
    /** ceil(n / 8) u32 words holding the packed bytes. */
    readonly packed: Tensor,
    /** f32 absmax per block, or with double quantization the 8-bit codes packed four per u32. */
    readonly absmax: Tensor,
    /** f32 absmax2 per nested block (double quantization only). */
    readonly nestedAbsmax: Tensor | null,
    readonly nestedBlocksize: number,
    /** f32 mean of the absmax (double quantization only). */
    readonly offset: number,
    /** [TABLE_LENGTH] f32: code values, then the nested map (zeros without double quantization). */
    readonly tables: Tensor,
  ) {}

  get outFeatures(): number {
    return this.shape[0];
  }

  get inFeatures(): number {
    return this.shape[1];
  }

  get elements(): number {
    return this.shape[0] * this.shape[1];
  }

  get blocks(): number {
    return blockCount(this.elements, this.blocksize);
  }

  get nested(): boolean {
    return this.nestedAbsmax !== null;
  }

  /** The buffers, for keeping them alive on the tape. */
  get tensors(): Tensor[] {
    return [this.packed, this.absmax, ...(this.nestedAbsmax ? [this.nestedAbsmax] : []), this.tables];
  }

  /** GPU bytes held: packed codes, and the quantization state (absmax or its nested parts, tables). */
  get bytes(): { packed: number; state: number } {
    const state = this.tensors.filter((tensor) => tensor !== this.packed).reduce((sum, tensor) => sum + tensor.byteLength, 0);
    return { packed: this.packed.byteLength, state };
  }

  dispose(): void {
    for (const tensor of this.tensors) tensor.dispose();
  }
}

/** Bytes padded with zeros to whole u32 words. */
function wordsOf(bytes: Uint8Array): Uint32Array {
  const words = new Uint32Array(Math.max(1, Math.ceil(bytes.length / 4)));
  new Uint8Array(words.buffer).set(bytes);
  return words;
}

function tablesOf(quantMap: Float32Array, nestedMap: Float32Array | null): Float32Array {
  const tables = new Float32Array(TABLE_LENGTH);
  tables.set(quantMap, TABLE_CODES);
  if (nestedMap) tables.set(nestedMap, TABLE_NESTED_MAP);
  return tables;
}

function linearShape(tensor: string, shape: readonly number[]): [number, number] {
  if (shape.length !== 2) throw new QuantStateFormatError(tensor, `a linear weight is 2-D [out, in], got shape ${JSON.stringify(shape)}`);
  if (elementCount(shape) === 0) throw new ElementCountError(tensor, `shape ${JSON.stringify(shape)} has no elements`);
  return [shape[0], shape[1]];
}

/**
 * Quantize an f32 weight [out, in] that is on the GPU. The result's bytes are identical to
 * quantize4bit() on the same values. Resolves after the read-back that double quantization needs
 * (immediately otherwise); the input tensor is left as it is (the caller may dispose it).
 */
export async function quantizeOnGpu(engine: Engine, weight: Tensor, options: GpuQuantizeOptions = {}): Promise<QuantizedWeight> {
  const name = options.name ?? (weight.name || `tensor #${weight.id}`);
  const quantType = checkQuantType(name, options.quantType ?? 'nf4');
  const blocksize = checkBlocksize(name, options.blocksize ?? 64);
  if (weight.dtype !== 'f32') throw new QuantDTypeError(name, `only f32 weights can be quantized, got ${weight.dtype}`);
  const shape = linearShape(name, weight.shape);
  const n = weight.size;
  if (n >= 2 ** 32) throw new ElementCountError(name, `${n} elements do not fit the kernel's 32-bit indices`);
  const blocks = blockCount(n, blocksize);

  const packed = engine.keep(engine.empty([Math.ceil(n / 8)], { dtype: 'u32', name: `${name} (4-bit codes)`, category: 'frozenWeights' }));
  const absmax = engine.keep(engine.empty([blocks], { name: `${name} (absmax)`, category: 'quantState' }));
  engine.gpu.dispatch(
    { shader: 'quantize_4bit', entryPoint: 'quantize_4bit' },
    {
      params: [u32(n), u32(blocksize), u32(blocks), u32(quantType === 'nf4' ? 0 : 1)],
      bindings: [weight.binding, packed.binding, absmax.binding],
      workgroups: grid1d(blocks, 1),
    },
  );

  const quantMap = codebook(quantType);
  if (!options.doubleQuant) {
    const tables = engine.keep(engine.tensor(tablesOf(quantMap, null), [TABLE_LENGTH], { category: 'quantState' }));
    return new QuantizedWeight(name, quantType, blocksize, shape, options.dtype ?? 'float32', packed, absmax, null, 0, 0, tables);
  }
  let absmaxHost: Float32Array;
  try {
    absmaxHost = (await absmax.read()) as Float32Array;
  } catch (error) {
    packed.dispose();
    throw error;
  } finally {
    absmax.dispose();
  }
  const nested = doubleQuantize(absmaxHost, NESTED_BLOCKSIZE, DYNAMIC_MAP);
  const codes = engine.keep(engine.tensor(wordsOf(nested.codes), [Math.max(1, Math.ceil(blocks / 4))], { dtype: 'u32', category: 'quantState' }));
  const absmax2 = engine.keep(engine.tensor(nested.absmax2, [nested.absmax2.length], { category: 'quantState' }));
  const tables = engine.keep(engine.tensor(tablesOf(quantMap, nested.map), [TABLE_LENGTH], { category: 'quantState' }));
  return new QuantizedWeight(name, quantType, blocksize, shape, options.dtype ?? 'float32', packed, codes, absmax2, nested.blocksize, nested.offset, tables);
}

/** Put a QuantState (e.g. read from a bitsandbytes checkpoint) on the GPU; validates it first. */
export function uploadQuantState(engine: Engine, name: string, state: QuantState): QuantizedWeight {
  validateQuantState(name, state);
  const shape = linearShape(name, state.shape);
  const packed = engine.keep(engine.tensor(wordsOf(state.packed), [Math.max(1, Math.ceil(state.packed.length / 4))], { dtype: 'u32', category: 'frozenWeights' }));
  if (state.absmax) {
    const absmax = engine.keep(engine.tensor(state.absmax, [state.absmax.length], { category: 'quantState' }));
    const tables = engine.keep(engine.tensor(tablesOf(state.quantMap, null), [TABLE_LENGTH], { category: 'quantState' }));
    return new QuantizedWeight(name, state.quantType, state.blocksize, shape, state.dtype, packed, absmax, null, 0, 0, tables);
  }
  const nested = state.nested!;
  const codes = engine.keep(engine.tensor(wordsOf(nested.codes), [Math.max(1, Math.ceil(nested.codes.length / 4))], { dtype: 'u32', category: 'quantState' }));
  const absmax2 = engine.keep(engine.tensor(nested.absmax2, [nested.absmax2.length], { category: 'quantState' }));
  const tables = engine.keep(engine.tensor(tablesOf(state.quantMap, nested.map), [TABLE_LENGTH], { category: 'quantState' }));
  return new QuantizedWeight(name, state.quantType, state.blocksize, shape, state.dtype, packed, codes, absmax2, nested.blocksize, nested.offset, tables);
}

async function readBytes(tensor: Tensor, length: number): Promise<Uint8Array> {
  const words = await tensor.read();
  return new Uint8Array(words.buffer, 0, length).slice();
}

/** Read a GPU weight back as a QuantState (for writing a bitsandbytes-layout file). */
export async function downloadQuantState(weight: QuantizedWeight): Promise<QuantState> {
  const n = weight.elements;
  const packed = await readBytes(weight.packed, Math.ceil(n / 2));
  const tables = (await weight.tables.read()) as Float32Array;
  const quantMap = tables.slice(TABLE_CODES, TABLE_CODES + 16);
  const base = { quantType: weight.quantType, blocksize: weight.blocksize, shape: [...weight.shape], dtype: weight.dtype, packed, quantMap };
  if (!weight.nestedAbsmax) {
    const absmax = (await weight.absmax.read()) as Float32Array;
    return validateQuantState(weight.name, { ...base, absmax: absmax.slice(), nested: null });
  }
  const codes = await readBytes(weight.absmax, weight.blocks);
  const absmax2 = ((await weight.nestedAbsmax.read()) as Float32Array).slice();
  const map = tables.slice(TABLE_NESTED_MAP, TABLE_NESTED_MAP + 256);
  return validateQuantState(weight.name, {
    ...base,
    absmax: null,
    nested: { codes, absmax2, blocksize: weight.nestedBlocksize, map, offset: weight.offset },
  });
}
