// LoRA / QLoRA on a causal LM, as PEFT's get_peft_model + LoraModel: target modules are wrapped in
// LoraLinear (in place, through model.linears().replace), the base stays frozen, and only the active
// adapter's A and B are trainable. Several named adapters can be attached; one is active; disabling
// gives the base model back without reloading; merging folds the update into the base weights.
// The PeftModel is itself a CausalLM (forward goes through the wrapped modules).

import type { Engine } from '../engine/engine.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ModelConfig } from '../models/config.ts';
import type { KVCache } from '../models/kvCache.ts';
import type { LinearSet } from '../models/linear.ts';
import type { CausalLM, ForwardOptions } from '../models/model.ts';
import { Linear4bitModule } from './linear4bitModule.ts';
import { checkAdapterConfig, LoraConfigError, LoraLinear, LoraRuntime, type LoraAdapterConfig } from './loraLinear.ts';
import { selectTargets, type TargetModules, type TargetSpec } from './targets.ts';

export interface LoraConfig extends LoraAdapterConfig, TargetSpec {
  /** Only "none" is supported (PEFT's default): no bias is trained. */
  bias?: 'none';
}

/** An attached adapter's configuration as it will be saved (target_modules resolved as PEFT saves them). */
export interface AttachedLoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  useRslora: boolean;
  targetModules: TargetModules;
  excludeModules: TargetModules | null;
  layersToTransform: number[] | null;
  layersPattern: string | string[] | null;
  /** GPT-2's Conv1D base layers store [in, out]. */
  fanInFanOut: boolean;
  bias: 'none';
  /** The wrapped module paths, in model order. */
  paths: readonly string[];
}

export interface AttachOptions {
  /** Default "default" (PEFT's name). */
  adapterName?: string;
  /** Seeds A's init (per module) and the dropout masks. */
  seed?: number;
  /** Initial A/B per module path (an imported adapter), instead of the init. */
  weights?: ReadonlyMap<string, { A: Float32Array; B: Float32Array }>;
}

/** The PEFT name prefix of every adapter tensor (PeftModel → LoraModel → the transformers model). */
export const PEFT_PREFIX = 'base_model.model.';

/** Wrap `model`'s target modules with a LoRA adapter (it becomes the active one). */
export function attachLora(model: CausalLM, config: LoraConfig, options: AttachOptions = {}): PeftModel {
  const peft = new PeftModel(model, options.seed ?? 0);
  peft.addAdapter(options.adapterName ?? 'default', config, options);
  return peft;
}

export class PeftModel implements CausalLM {
  readonly runtime: LoraRuntime;
  private readonly configs = new Map<string, AttachedLoraConfig>();
  private active: string | null = null;
  private enabled = true;
  private released = false;

  constructor(
    readonly base: CausalLM,
    seed = 0,
  ) {
    this.runtime = new LoraRuntime(seed);
  }

  get config(): ModelConfig {
    return this.base.config;
  }

  get engine(): Engine {
    return this.base.engine;
  }

  get activeAdapter(): string | null {
    return this.active;
  }

  get adapterNames(): string[] {
    return [...this.configs.keys()];
  }

  get adaptersEnabled(): boolean {
    return this.enabled;
  }

  adapterConfig(name = this.requireActive()): AttachedLoraConfig {
    const config = this.configs.get(name);
    if (!config) throw new LoraConfigError('adapter_name', `no adapter named ${JSON.stringify(name)} (have ${this.describeNames()})`);
    return config;
  }

  /** Attach a new adapter to the modules `config` selects and make it active. */
  addAdapter(name: string, config: LoraConfig, options: Omit<AttachOptions, 'adapterName'> = {}): AttachedLoraConfig {
    this.checkAlive();
    if (typeof name !== 'string' || name.length === 0 || /[.\s]/.test(name)) {
      throw new LoraConfigError('adapter_name', `an adapter name must be non-empty, without dots or spaces, got ${JSON.stringify(name)}`);
    }
    if (this.configs.has(name)) throw new LoraConfigError('adapter_name', `an adapter named ${JSON.stringify(name)} is attached already`);
    if ((config.bias ?? 'none') !== 'none') throw new LoraConfigError('bias', `bias ${JSON.stringify(config.bias)} is not supported; only "none"`);
    if (this.loraModules().some((m) => m.mergedAdapter !== null)) throw new LoraConfigError('adapter_name', 'an adapter is merged; unmerge() before adding another');
    const linears = this.linears();
    const basePaths = linears.paths();
    const selection = selectTargets(basePaths, this.config.modelType, config);
    // Check the hyperparameters against every target before wrapping anything.
    for (const path of selection.paths) {
      const module = linears.get(path);
      checkAdapterConfig(config, path, module.inFeatures, module.outFeatures);
      const initial = options.weights?.get(path);
      if (options.weights && !initial) throw new LoraConfigError('weights', `no initial weights for target ${path}`);
      if (initial && (initial.A.length !== config.r * module.inFeatures || initial.B.length !== module.outFeatures * config.r)) {
        throw new LoraConfigError('weights', `initial weights for ${path} must be A [${config.r}, ${module.inFeatures}] and B [${module.outFeatures}, ${config.r}]`);
      }
      if (module instanceof LoraLinear && module.runtime !== this.runtime) {
        throw new LoraConfigError('target_modules', `${path} is LoRA-adapted by another PeftModel`);
      }
    }
    const fanInFanOut = this.config.family === 'gpt2';
    for (const [index, path] of selection.paths.entries()) {
      const existing = linears.get(path);
      let module: LoraLinear;
      if (existing instanceof LoraLinear) {
        module = existing;
      } else {
        module = new LoraLinear(existing, this.runtime, fanInFanOut);
        module.disabled = !this.enabled;
        linears.replace(path, () => module);
      }
      module.addAdapter(this.engine, name, config, {
        weights: options.weights?.get(path),
        seed: hashSeed(options.seed ?? this.runtime.seed, name, index),
      });
    }
    const attached: AttachedLoraConfig = {
      r: config.r,
      alpha: config.alpha,
      dropout: config.dropout ?? 0,
      useRslora: config.useRslora ?? false,
      targetModules: selection.targetModules,
      excludeModules: config.excludeModules ?? null,
      layersToTransform: config.layersToTransform === null || config.layersToTransform === undefined ? null : [config.layersToTransform].flat(),
      layersPattern: config.layersPattern === null || config.layersPattern === undefined ? null : typeof config.layersPattern === 'string' ? config.layersPattern : [...config.layersPattern],
      fanInFanOut,
      bias: 'none',
      paths: selection.paths,
    };
    this.configs.set(name, attached);
    this.setAdapter(name);
    return attached;
  }

  /** Make `name` the adapter forward applies; instant (no tensor is copied). */
  setAdapter(name: string): void {
    this.checkAlive();
    this.adapterConfig(name);
    for (const module of this.loraModules()) module.setActive(module.adapters.has(name) ? name : null);
    this.active = name;
  }

  /** Remove an adapter and free its tensors; modules left with no adapter get their base back. */
  deleteAdapter(name: string): void {
    this.checkAlive();
    this.adapterConfig(name);
    const linears = this.linears();
    for (const module of this.loraModules()) {
      module.deleteAdapter(name);
      if (module.adapters.size === 0) linears.replace(module.path, () => module.unload());
    }
    this.configs.delete(name);
    if (this.active === name) {
      this.active = null;
      const next = this.configs.keys().next();
      if (!next.done) this.setAdapter(next.value);
    }
  }

  /** Base-model outputs until enableAdapters(). Refused while an adapter is merged (unmerge first). */
  disableAdapters(): void {
    if (this.loraModules().some((m) => m.mergedAdapter !== null)) {
      throw new LoraConfigError('adapter_name', 'an adapter is merged into the base weights; unmerge() before disabling adapters');
    }
    this.setEnabled(false);
  }

  enableAdapters(): void {
    this.setEnabled(true);
  }

  /** Run `fn` with the adapters disabled (PEFT's `with model.disable_adapter():`); an async `fn` until it settles. */
  withAdaptersDisabled<T>(fn: () => T): T {
    const was = this.enabled;
    this.disableAdapters();
    let result: T;
    try {
      result = fn();
    } catch (error) {
      this.setEnabled(was);
      throw error;
    }
    if (result instanceof Promise) return result.finally(() => this.setEnabled(was)) as T;
    this.setEnabled(was);
    return result;
  }

  /** Training mode turns LoRA dropout on. */
  train(mode = true): void {
    this.runtime.training = mode;
  }

  eval(): void {
    this.train(false);
  }

  /** The wrapped modules, in model order. */
  loraModules(): LoraLinear[] {
    return this.linears()
      .entries()
      .map(([, module]) => module)
      .filter((module): module is LoraLinear => module instanceof LoraLinear);
  }

  /**
   * The active adapter's trainable tensors by PEFT's parameter name
   * (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight`), in model order.
   */
  trainableParameters(name = this.requireActive()): Map<string, Tensor> {
    this.adapterConfig(name);
    const params = new Map<string, Tensor>();
    for (const module of this.loraModules()) {
      const adapter = module.adapters.get(name);
      if (!adapter) continue;
      params.set(`${PEFT_PREFIX}${module.path}.lora_A.${name}.weight`, adapter.A);
      params.set(`${PEFT_PREFIX}${module.path}.lora_B.${name}.weight`, adapter.B);
    }
    return params;
  }

  /** PEFT's print_trainable_parameters numbers: the active adapter's elements, and every parameter's (a 4-bit weight counts OUT · IN). */
  parameterCounts(): { trainable: number; total: number } {
    let trainable = 0;
    if (this.active !== null) for (const tensor of this.trainableParameters().values()) trainable += tensor.size;
    let total = 0;
    for (const tensor of this.parameters().values()) total += tensor.size;
    for (const [, module] of this.linears().entries()) {
      const base = module instanceof LoraLinear ? module.base : module;
      if (base instanceof Linear4bitModule) total += base.weight.elements;
    }
    return { trainable, total };
  }

  /** Fold the active adapter into the base weights (4-bit bases become dense: dequant(W) + s · B A). */
  async merge(): Promise<void> {
    this.checkAlive();
    this.requireActive();
    if (!this.enabled) throw new LoraConfigError('adapter_name', 'adapters are disabled; enable them before merging');
    for (const module of this.loraModules()) if (module.mergedAdapter === null) await module.merge(this.engine);
  }

  unmerge(): void {
    this.checkAlive();
    for (const module of this.loraModules()) module.unmerge();
  }

  /** Merge the active adapter, drop all adapters, and return the plain base model (this PeftModel is then spent). */
  async mergeAndUnload(): Promise<CausalLM> {
    await this.merge();
    return this.release();
  }

  /** Drop all adapters without merging (unmerging first) and return the plain base model. */
  unload(): CausalLM {
    this.unmerge();
    return this.release();
  }

  forward(ids: Tensor, options?: ForwardOptions): Tensor {
    this.checkAlive();
    return this.base.forward(ids, options);
  }

  hidden(ids: Tensor, options?: ForwardOptions): Tensor {
    this.checkAlive();
    return this.base.hidden(ids, options);
  }

  head(hidden: Tensor): Tensor {
    return this.base.head(hidden);
  }

  parameters(): Map<string, Tensor> {
    return this.base.parameters();
  }

  linears(): LinearSet {
    return this.base.linears();
  }

  createKVCache(batch: number, maxLength: number): KVCache {
    return this.base.createKVCache(batch, maxLength);
  }

  dispose(): void {
    this.released = true;
    this.configs.clear();
    this.base.dispose();
  }

  private release(): CausalLM {
    const linears = this.linears();
    for (const module of this.loraModules()) linears.replace(module.path, () => module.unload());
    this.configs.clear();
    this.active = null;
    this.released = true;
    return this.base;
  }

  private setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    for (const module of this.loraModules()) module.disabled = !enabled;
  }

  private requireActive(): string {
    if (this.active === null) throw new LoraConfigError('adapter_name', 'no adapter is active');
    return this.active;
  }

  private describeNames(): string {
    return this.configs.size ? [...this.configs.keys()].map((n) => JSON.stringify(n)).join(', ') : 'none';
  }

  private checkAlive(): void {
    if (this.released) throw new Error('this PeftModel was unloaded or disposed; use the model it returned');
  }
}

/** A 32-bit seed per (seed, adapter, module index): FNV-1a over the three. */
function hashSeed(seed: number, name: string, index: number): number {
  let hash = 0x811c9dc5;
  for (const ch of `${seed}\u0000${name}\u0000${index}`) hash = Math.imul(hash ^ ch.codePointAt(0)!, 0x01000193) >>> 0;
  return hash;
}
