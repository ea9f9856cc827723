// A LoRA-adapted linear module: y = base(x) + s · B(A · dropout(x)), as PEFT's lora.Linear.forward, with
// the branch added into the base output by the fused loraAddInto kernels. Letters: IN, OUT the module's
// features, r the rank; A [r, IN] (lora_A.weight), B [OUT, r] (lora_B.weight), s = alpha / r or, with
// rsLoRA, alpha / √r. The base is any Linear: a dense f32 layer (nn.Linear [OUT, IN], or GPT-2's Conv1D
// [IN, OUT] with fanInFanOut) or a frozen 4-bit layer; it is never trained.
//
// Several named adapters can live on one module; one is active (switching changes a field, nothing is
// copied). Merging adds s · B A into the base weight in place (dense), or, for a 4-bit base, swaps in a
// dense layer dequant(W) + s · B A while the 4-bit layer waits aside, so unmerging restores it bit for bit.

import type { Engine } from '../engine/engine.ts';
import { ShapeError } from '../engine/errors.ts';
import { loraAddInto, loraMerge, loraUnmerge } from '../engine/ops/lora.ts';
import type { Tensor } from '../engine/tensor.ts';
import { DenseLinear, type Linear } from '../models/linear.ts';
import { Linear4bitModule } from './linear4bitModule.ts';

export interface LoraAdapterConfig {
  /** Rank r ≥ 1, at most min(IN, OUT). */
  r: number;
  /** lora_alpha: finite and not 0. */
  alpha: number;
  /** lora_dropout in [0, 1): applied to the branch's input while training. */
  dropout?: number;
  /** rsLoRA: s = alpha / √r instead of alpha / r. */
  useRslora?: boolean;
}

/** A LoRA configuration value out of range; `field` is PEFT's key for it. */
export class LoraConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Shared by a model's LoRA modules: the training switch (dropout) and the dropout counter stream. */
export class LoraRuntime {
  training = false;

  constructor(
    /** Philox seed of the dropout masks. */
    public seed = 0,
    /** Next unused counter; each dropout call takes x.size counters. Part of a training checkpoint. */
    public offset = 0,
  ) {}

  take(count: number): number {
    const offset = this.offset;
    this.offset += count;
    return offset;
  }
}

export function loraScaling(r: number, alpha: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

/** One named adapter of one module: its matrices (owned), hyperparameters and scaling. */
export class LoraAdapter {
  readonly scaling: number;

  constructor(
    readonly name: string,
    readonly config: Required<LoraAdapterConfig>,
    /** [r, IN] */
    readonly A: Tensor,
    /** [OUT, r] */
    readonly B: Tensor,
  ) {
    this.scaling = loraScaling(config.r, config.alpha, config.useRslora);
  }

  get r(): number {
    return this.config.r;
  }

  dispose(): void {
    this.A.dispose();
    this.B.dispose();
  }
}

export interface AddAdapterOptions {
  /** Initial values (e.g. from a file): A [r · IN], B [OUT · r] row-major. Default: PEFT's init. */
  weights?: { A: Float32Array; B: Float32Array };
  /** Seed of A's Kaiming-uniform init (ignored with weights). */
  seed?: number;
}

export class LoraLinear implements Linear {
  readonly path: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  private current: Linear;
  /** A 4-bit base set aside while a dense merged copy replaces it. */
  private quantizedBase: Linear4bitModule | null = null;
  private readonly adapterMap = new Map<string, LoraAdapter>();
  private active: string | null = null;
  private merged: string | null = null;
  /** When true the module computes base(x) only. */
  disabled = false;

  constructor(
    base: Linear,
    readonly runtime: LoraRuntime,
    /** Layout of the dense weight a 4-bit base is merged into: true for GPT-2's Conv1D ([IN, OUT]). */
    private readonly denseFanInFanOut = false,
  ) {
    if (base instanceof LoraLinear) throw new ShapeError(`LoRA on ${base.path}: the module is already LoRA-adapted`);
    this.current = base;
    this.path = base.path;
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
  }

  /** The wrapped module (a dense copy while a 4-bit base is merged). */
  get base(): Linear {
    return this.current;
  }

  get adapters(): ReadonlyMap<string, LoraAdapter> {
    return this.adapterMap;
  }

  get activeAdapter(): string | null {
    return this.active;
  }

  /** The adapter whose update is in the base weight, or null. */
  get mergedAdapter(): string | null {
    return this.merged;
  }

  /** The base weight's layout for merging: GPT-2's Conv1D stores [IN, OUT]. */
  get fanInFanOut(): boolean {
    return this.current instanceof DenseLinear ? this.current.fanInFanOut : this.denseFanInFanOut;
  }

  addAdapter(engine: Engine, name: string, config: LoraAdapterConfig, options: AddAdapterOptions = {}): LoraAdapter {
    if (this.adapterMap.has(name)) throw new LoraConfigError('adapter_name', `LoRA on ${this.path}: an adapter named ${JSON.stringify(name)} exists already`);
    const full = checkAdapterConfig(config, this.path, this.inFeatures, this.outFeatures);
    const { r } = full;
    const [IN, OUT] = [this.inFeatures, this.outFeatures];
    let aValues: Float32Array;
    let bValues: Float32Array;
    if (options.weights) {
      ({ A: aValues, B: bValues } = options.weights);
      if (aValues.length !== r * IN || bValues.length !== OUT * r) {
        throw new ShapeError(`LoRA on ${this.path}: A needs ${r * IN} values ([${r}, ${IN}]) and B ${OUT * r} ([${OUT}, ${r}]), got ${aValues.length} and ${bValues.length}`);
      }
    } else {
      aValues = kaimingUniform(r, IN, options.seed ?? 0);
      bValues = new Float32Array(OUT * r);
    }
    const tensor = (values: Float32Array, shape: number[], which: string) =>
      engine.keep(engine.tensor(values, shape, { name: `${this.path}.${which}.${name}.weight`, category: 'adapters' }));
    const adapter = new LoraAdapter(name, full, tensor(aValues, [r, IN], 'lora_A'), tensor(bValues, [OUT, r], 'lora_B'));
    this.adapterMap.set(name, adapter);
    this.updateTrainable();
    return adapter;
  }

  /** Make `name` the adapter forward applies (null: none). Only the active adapter's A and B require gradients. */
  setActive(name: string | null): void {
    if (this.merged !== null && name !== this.merged) {
      throw new LoraConfigError('adapter_name', `LoRA on ${this.path}: adapter ${JSON.stringify(this.merged)} is merged; unmerge it before switching`);
    }
    this.active = name;
    this.updateTrainable();
  }

  deleteAdapter(name: string): void {
    const adapter = this.adapterMap.get(name);
    if (!adapter) return;
    if (this.merged === name) throw new LoraConfigError('adapter_name', `LoRA on ${this.path}: adapter ${JSON.stringify(name)} is merged; unmerge it before deleting it`);
    adapter.dispose();
    this.adapterMap.delete(name);
    if (this.active === name) this.active = null;
  }

  forward(x: Tensor): Tensor {
    const adapter = this.applied();
    const y = this.current.forward(x);
    if (!adapter) return y;
    const p = adapter.config.dropout;
    const dropout = this.runtime.training && p > 0 ? { p, seed: this.runtime.seed, offset: this.runtime.take(x.size) } : undefined;
    return loraAddInto(y, x, adapter.A, adapter.B, adapter.scaling, { dropout });
  }

  /** Put the active adapter's s · B A into the base weight; forward then runs the base alone. */
  async merge(engine: Engine): Promise<void> {
    if (this.merged !== null) throw new LoraConfigError('adapter_name', `LoRA on ${this.path}: adapter ${JSON.stringify(this.merged)} is merged already`);
    const adapter = this.active === null ? undefined : this.adapterMap.get(this.active);
    if (!adapter) return;
    if (this.current instanceof Linear4bitModule) {
      const dense = await this.current.toDense(engine, { fanInFanOut: this.denseFanInFanOut });
      this.quantizedBase = this.current;
      this.current = dense;
    }
    const base = this.current;
    if (!(base instanceof DenseLinear)) throw new ShapeError(`LoRA on ${this.path}: cannot merge into a ${base.constructor.name}`);
    loraMerge(base.weight, adapter.A, adapter.B, adapter.scaling, { fanInFanOut: base.fanInFanOut });
    this.merged = adapter.name;
  }

  /** Undo merge(): subtract s · B A (dense, up to f32 rounding) or restore the 4-bit base exactly. */
  unmerge(): void {
    if (this.merged === null) return;
    if (this.quantizedBase) {
      this.current.dispose();
      this.current = this.quantizedBase;
      this.quantizedBase = null;
    } else {
      const adapter = this.adapterMap.get(this.merged)!;
      const base = this.current as DenseLinear;
      loraUnmerge(base.weight, adapter.A, adapter.B, adapter.scaling, { fanInFanOut: base.fanInFanOut });
    }
    this.merged = null;
  }

  /**
   * Dispose the adapters and hand back the base module, with the merged update in it if one was merged
   * (a 4-bit base that was merged comes back as its dense merged copy). The caller owns the result.
   */
  unload(): Linear {
    for (const adapter of this.adapterMap.values()) adapter.dispose();
    this.adapterMap.clear();
    this.quantizedBase?.dispose();
    this.quantizedBase = null;
    this.active = null;
    this.merged = null;
    return this.current;
  }

  /** The base's tensors under their names, and each adapter's as `${path}.lora_A.${name}.weight` (PEFT's in-memory names). */
  parameters(): Map<string, Tensor> {
    const params = new Map(this.current.parameters());
    for (const adapter of this.adapterMap.values()) {
      params.set(`${this.path}.lora_A.${adapter.name}.weight`, adapter.A);
      params.set(`${this.path}.lora_B.${adapter.name}.weight`, adapter.B);
    }
    return params;
  }

  dispose(): void {
    this.unload().dispose();
  }

  private applied(): LoraAdapter | undefined {
    if (this.disabled || this.merged !== null || this.active === null) return undefined;
    return this.adapterMap.get(this.active);
  }

  private updateTrainable(): void {
    for (const adapter of this.adapterMap.values()) {
      adapter.A.requiresGrad = adapter.name === this.active;
      adapter.B.requiresGrad = adapter.name === this.active;
    }
  }
}

/** The config with defaults filled in, after range checks that name PEFT's field. */
export function checkAdapterConfig(config: LoraAdapterConfig, path: string, inFeatures: number, outFeatures: number): Required<LoraAdapterConfig> {
  const { r, alpha } = config;
  const dropout = config.dropout ?? 0;
  const useRslora = config.useRslora ?? false;
  if (!Number.isSafeInteger(r) || r < 1) throw new LoraConfigError('r', `LoRA rank r must be a positive integer, got ${r}`);
  const limit = Math.min(inFeatures, outFeatures);
  if (r > limit) {
    throw new LoraConfigError('r', `LoRA rank r = ${r} is larger than ${path} allows (min(in ${inFeatures}, out ${outFeatures}) = ${limit})`);
  }
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha === 0) {
    throw new LoraConfigError('lora_alpha', `lora_alpha must be a finite number other than 0, got ${alpha}`);
  }
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) throw new LoraConfigError('lora_dropout', `lora_dropout must be in [0, 1), got ${dropout}`);
  if (typeof useRslora !== 'boolean') throw new LoraConfigError('use_rslora', `use_rslora must be true or false, got ${String(useRslora)}`);
  return { r, alpha, dropout, useRslora };
}

/**
 * PEFT's lora_A init: nn.init.kaiming_uniform_(A, a=√5) on A [r, IN], whose bound
 * gain · √(3 / fan_in) with gain = √(2 / (1 + a²)) is exactly 1/√IN: A ~ U(−1/√IN, 1/√IN).
 * Seeded (not torch's generator, so not the same draws as PyTorch).
 */
export function kaimingUniform(r: number, inFeatures: number, seed: number): Float32Array {
  const bound = 1 / Math.sqrt(inFeatures);
  const random = seededRandom(seed);
  return Float32Array.from({ length: r * inFeatures }, () => (random() * 2 - 1) * bound);
}

/** splitmix32: uniform in [0, 1) from a 32-bit seed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}
