// KV cache for generation: per layer, keys and values [B, S, KVH, D] preallocated for S = maxLength
// positions. A forward over T new tokens writes its k, v at positions length .. length + T − 1 of every
// layer, attends over the cache (rows after the written ones are never read: attention's kvOffset), and
// then advances length by T. Prefill is a forward over the prompt; decoding is T = 1 steps.

import type { Engine } from '../engine/engine.ts';
import { ShapeError, shapeText } from '../engine/errors.ts';
import type { Tensor } from '../engine/tensor.ts';

export interface KVCacheShape {
  layers: number;
  /** B */
  batch: number;
  /** S: the most positions the cache holds (prompt + generated tokens). */
  maxLength: number;
  /** KVH */
  kvHeads: number;
  /** D */
  headDim: number;
}

export class KVCache {
  readonly layers: number;
  readonly batch: number;
  readonly maxLength: number;
  readonly kvHeads: number;
  readonly headDim: number;
  private filled = 0;
  /** Per layer, [B, S, KVH, D]. */
  private readonly keys: Tensor[] = [];
  private readonly values: Tensor[] = [];

  constructor(engine: Engine, shape: KVCacheShape) {
    for (const [name, value] of Object.entries(shape)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new ShapeError(`KV cache: ${name} must be a positive integer, got ${value}`);
    }
    ({ layers: this.layers, batch: this.batch, maxLength: this.maxLength, kvHeads: this.kvHeads, headDim: this.headDim } = shape);
    const dims = [this.batch, this.maxLength, this.kvHeads, this.headDim];
    try {
      for (let layer = 0; layer < this.layers; layer++) {
        this.keys.push(engine.keep(engine.empty(dims, { name: `kv cache keys ${layer}` })));
        this.values.push(engine.keep(engine.empty(dims, { name: `kv cache values ${layer}` })));
      }
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  /** Positions written so far: the position of the next token. */
  get length(): number {
    return this.filled;
  }

  /** Throws unless T more tokens of batch B fit. */
  checkRoom(batch: number, tokens: number): void {
    if (batch !== this.batch) throw new ShapeError(`KV cache: built for batch ${this.batch}, got a batch of ${batch}`);
    if (this.filled + tokens > this.maxLength) {
      throw new ShapeError(`KV cache: ${this.filled} positions used + ${tokens} new exceed its ${this.maxLength} positions`);
    }
  }

  /**
   * Write one layer's k and v for the new tokens ([B, T, KVH, D] each) at positions length .. length + T − 1
   * and return the whole cache of that layer ([B, S, KVH, D]) for attention with kvOffset = length.
   */
  write(layer: number, k: Tensor, v: Tensor): { keys: Tensor; values: Tensor } {
    const keys = this.keys[layer];
    const values = this.values[layer];
    if (!keys) throw new RangeError(`KV cache: no layer ${layer} (it has ${this.layers})`);
    const tokens = k.shape[1];
    const expected = [this.batch, tokens, this.kvHeads, this.headDim];
    for (const [what, t] of [['k', k], ['v', v]] as const) {
      if (t.rank !== 4 || t.shape.some((dim, i) => dim !== expected[i])) {
        throw new ShapeError(`KV cache: ${what} must be ${shapeText(expected)}, got ${shapeText(t.shape)}`);
      }
    }
    this.checkRoom(k.shape[0], tokens);
    const gpu = k.engine.gpu;
    const rowBytes = this.kvHeads * this.headDim * 4;
    for (let b = 0; b < this.batch; b++) {
      const source = b * tokens * rowBytes;
      const target = (b * this.maxLength + this.filled) * rowBytes;
      gpu.copy(k.buffer, source, keys.buffer, target, tokens * rowBytes);
      gpu.copy(v.buffer, source, values.buffer, target, tokens * rowBytes);
    }
    return { keys, values };
  }

  /** Called once every layer has written T tokens. */
  advance(tokens: number): void {
    this.checkRoom(this.batch, tokens);
    this.filled += tokens;
  }

  /** Forget everything (the buffers are kept for the next sequence). */
  reset(): void {
    this.filled = 0;
  }

  /** Keep only the first `length` positions (drop a rejected continuation). */
  truncate(length: number): void {
    if (!Number.isSafeInteger(length) || length < 0 || length > this.filled) {
      throw new RangeError(`KV cache: cannot truncate ${this.filled} positions to ${length}`);
    }
    this.filled = length;
  }

  dispose(): void {
    for (const tensor of [...this.keys, ...this.values]) tensor.dispose();
    this.keys.length = 0;
    this.values.length = 0;
  }
}
