// The causal language model interface every architecture implements, and the shared skeleton of a
// decoder-only transformer: embed → blocks → final norm → LM head, with an optional KV cache.
// Letters: B batch, T new tokens, C hidden size, V vocabulary.

import type { Engine } from '../engine/engine.ts';
import { ShapeError, shapeText } from '../engine/errors.ts';
import { add } from '../engine/ops/arithmetic.ts';
import { requireDType } from '../engine/ops/checks.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { reshape } from '../engine/ops/reshape.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ModelConfig } from './config.ts';
import { KVCache } from './kvCache.ts';
import { LinearSet } from './linear.ts';

export interface ForwardOptions {
  /** Attend over and append to this cache; the forward then records no gradients. */
  kvCache?: KVCache;
  /** Position of the first token: default 0, or the cache's length (which it must equal when both are given). */
  positionOffset?: number;
}

export interface CausalLM {
  readonly config: ModelConfig;
  readonly engine: Engine;
  /** ids i32 [B, T] → logits f32 [B, T, V]. */
  forward(ids: Tensor, options?: ForwardOptions): Tensor;
  /** ids i32 [B, T] → final hidden states [B, T, C] (after the final norm), for a chunked or fused LM head. */
  hidden(ids: Tensor, options?: ForwardOptions): Tensor;
  /** hidden [..., C] → logits [..., V]. */
  head(hidden: Tensor): Tensor;
  /** Every weight by its Hugging Face state-dict name (a tied head appears once, as the embedding). */
  parameters(): Map<string, Tensor>;
  /** The linear modules of the blocks by module path, for adapters and quantization to wrap or replace. */
  linears(): LinearSet;
  /**
   * A cache for B sequences of at most maxLength positions (prompt + generated). Its size is
   * layers · 2 · B · maxLength · KVH · D · 4 bytes, so there is no default: a long context is costly.
   */
  createKVCache(batch: number, maxLength: number): KVCache;
  dispose(): void;
}

/** What a block needs besides its input: sizes, where the tokens sit, and the cache. */
export interface BlockContext {
  readonly batch: number;
  readonly tokens: number;
  readonly positionOffset: number;
  readonly cache: KVCache | null;
}

/** The two places in a block where a sub-layer's output joins the residual stream. */
export type ResidualSite = 'attention' | 'mlp';

/**
 * Replaces a block's residual addition `residual + output` (bottleneck adapters run here). `output` is the
 * sub-layer's output [B, T, C] (after o_proj / c_proj / down_proj), `residual` the stream entering the
 * sub-layer; the hook returns the stream leaving it, [B, T, C].
 */
export type ResidualHook = (layer: number, site: ResidualSite, output: Tensor, residual: Tensor) => Tensor;

/** Small i32 index tensors (positions, gather indices) kept across forwards instead of uploaded each time. */
export class IndexTensors {
  private readonly cached = new Map<string, Tensor>();

  constructor(
    private readonly engine: Engine,
    private readonly capacity = 64,
  ) {}

  get(key: string, shape: readonly number[], make: () => Int32Array): Tensor {
    let tensor = this.cached.get(key);
    if (tensor && !tensor.isDestroyed) return tensor;
    if (this.cached.size >= this.capacity) {
      // The oldest goes; a tape that saved it holds its own reference.
      const [oldest, old] = this.cached.entries().next().value as [string, Tensor];
      this.cached.delete(oldest);
      old.dispose();
    }
    tensor = this.engine.keep(this.engine.tensor(make(), shape, { dtype: 'i32', name: key }));
    this.cached.set(key, tensor);
    return tensor;
  }

  dispose(): void {
    for (const tensor of this.cached.values()) tensor.dispose();
    this.cached.clear();
  }
}

/**
 * Shared skeleton. Owns its weights: the constructor receives every tensor by state-dict name; a subclass
 * moves the linear layers' tensors into `linearSet` with take() and the rest stay in `weights`.
 */
export abstract class TransformerLM<Config extends ModelConfig> implements CausalLM {
  protected readonly linearSet = new LinearSet();
  protected readonly indices: IndexTensors;
  private disposed = false;
  private residualHook: ResidualHook | null = null;

  constructor(
    readonly engine: Engine,
    readonly config: Config,
    protected readonly weights: Map<string, Tensor>,
  ) {
    this.indices = new IndexTensors(engine);
  }

  /** Remove a tensor from `weights` (it moves into a module); null when absent and optional. */
  protected take(name: string): Tensor;
  protected take(name: string, optional: true): Tensor | null;
  protected take(name: string, optional = false): Tensor | null {
    const tensor = this.weights.get(name);
    if (!tensor) {
      if (optional) return null;
      throw new Error(`model weights have no ${JSON.stringify(name)}`);
    }
    this.weights.delete(name);
    return tensor;
  }

  protected weight(name: string): Tensor {
    const tensor = this.weights.get(name);
    if (!tensor) throw new Error(`model weights have no ${JSON.stringify(name)}`);
    return tensor;
  }

  /** ids [B, T] → the hidden states entering block 0, [B, T, C]. */
  protected abstract embed(ids: Tensor, context: BlockContext): Tensor;
  /** One block: h [B, T, C] → [B, T, C]. */
  protected abstract block(layer: number, h: Tensor, context: BlockContext): Tensor;
  protected abstract finalNorm(h: Tensor): Tensor;
  /** [V, C]: the LM head, or the token embedding when tied. */
  protected abstract headWeight(): Tensor;
  /** Throws when T tokens from `positionOffset` are more than the architecture can place. */
  protected abstract checkPositions(positionOffset: number, tokens: number): void;

  forward(ids: Tensor, options: ForwardOptions = {}): Tensor {
    return this.run(ids, options, true);
  }

  hidden(ids: Tensor, options: ForwardOptions = {}): Tensor {
    return this.run(ids, options, false);
  }

  head(hidden: Tensor): Tensor {
    const C = this.config.hiddenSize;
    if (hidden.rank < 1 || hidden.shape[hidden.rank - 1] !== C) {
      throw new ShapeError(`LM head: hidden states ${shapeText(hidden.shape)} do not end in the hidden size ${C}`);
    }
    return this.engine.scope(() => {
      const rows = reshape(hidden, [-1, C]);
      const logits = matmul(rows, this.headWeight(), { transposeB: true }); // [R, V]
      return reshape(logits, [...hidden.shape.slice(0, -1), this.config.vocabSize]);
    });
  }

  private run(ids: Tensor, options: ForwardOptions, withHead: boolean): Tensor {
    this.checkAlive();
    requireDType('model forward', ids, 'i32');
    if (ids.rank !== 2 || ids.shape[1] < 1) throw new ShapeError(`model forward: ids must be [B, T] with T ≥ 1, got ${shapeText(ids.shape)}`);
    const [batch, tokens] = ids.shape;
    const cache = options.kvCache ?? null;
    const positionOffset = options.positionOffset ?? cache?.length ?? 0;
    if (!Number.isSafeInteger(positionOffset) || positionOffset < 0) {
      throw new RangeError(`model forward: positionOffset must be a non-negative integer, got ${positionOffset}`);
    }
    if (cache) {
      if (cache.layers !== this.config.numLayers || cache.kvHeads !== this.config.numKvHeads || cache.headDim !== this.config.headDim) {
        throw new ShapeError(`model forward: the KV cache was not made for this model`);
      }
      if (positionOffset !== cache.length) {
        throw new RangeError(`model forward: positionOffset ${positionOffset} differs from the KV cache's length ${cache.length}`);
      }
      cache.checkRoom(batch, tokens);
    }
    this.checkPositions(positionOffset, tokens);

    const context: BlockContext = { batch, tokens, positionOffset, cache };
    const compute = () =>
      this.engine.scope(() => {
        let h = this.embed(ids, context);
        for (let layer = 0; layer < this.config.numLayers; layer++) {
          // Each block's temporaries go back to the pool as soon as it is done (the tape keeps what it saved).
          const input = h;
          h = this.engine.scope(() => this.block(layer, input, context));
          input.dispose();
        }
        const normed = this.finalNorm(h);
        return withHead ? this.head(normed) : normed;
      });
    const out = cache ? this.engine.noGrad(compute) : compute();
    cache?.advance(tokens);
    return out;
  }

  /** Install (or with null remove) the hook that replaces every block's residual additions; returns the previous one. */
  setResidualHook(hook: ResidualHook | null): ResidualHook | null {
    const previous = this.residualHook;
    this.residualHook = hook;
    return previous;
  }

  /** residual + output at the end of a sub-layer, or what the installed hook makes of them. */
  protected residualAdd(layer: number, site: ResidualSite, output: Tensor, residual: Tensor): Tensor {
    return this.residualHook ? this.residualHook(layer, site, output, residual) : add(residual, output);
  }

  parameters(): Map<string, Tensor> {
    return new Map([...this.weights, ...this.linearSet.parameters()]);
  }

  linears(): LinearSet {
    return this.linearSet;
  }

  createKVCache(batch: number, maxLength: number): KVCache {
    this.checkAlive();
    const { numLayers: layers, numKvHeads: kvHeads, headDim } = this.config;
    return new KVCache(this.engine, { layers, batch, maxLength, kvHeads, headDim });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.linearSet.dispose();
    for (const tensor of this.weights.values()) tensor.dispose();
    this.weights.clear();
    this.indices.dispose();
    this.disposeExtra();
  }

  /** Tensors a subclass made itself (rotary frequencies). */
  protected disposeExtra(): void {}

  private checkAlive(): void {
    if (this.disposed) throw new Error(`the ${this.config.modelType} model was disposed`);
  }
}

/**
 * Token ids from the host as an i32 [B, T] tensor, after checking every id is in [0, V): the embedding
 * kernel cannot report a bad id (it would give a zero row), so ids are checked before upload.
 */
export function tokenTensor(engine: Engine, rows: readonly (readonly number[])[], vocabSize: number): Tensor {
  const B = rows.length;
  const T = rows[0]?.length ?? 0;
  if (B === 0 || T === 0) throw new ShapeError('token ids: need at least one row of at least one token');
  const data = new Int32Array(B * T);
  rows.forEach((row, b) => {
    if (row.length !== T) throw new ShapeError(`token ids: row ${b} has ${row.length} tokens, row 0 has ${T}`);
    row.forEach((id, t) => {
      if (!Number.isSafeInteger(id) || id < 0 || id >= vocabSize) {
        throw new RangeError(`token ids: ${id} at row ${b}, position ${t} is outside the vocabulary [0, ${vocabSize})`);
      }
      data[b * T + t] = id;
    });
  });
  return engine.tensor(data, [B, T], { dtype: 'i32' });
}
