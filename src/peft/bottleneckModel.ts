// Bottleneck adapters on a causal LM (GPT-2 and the Llama family), placed as AdapterHub's `adapters`
// library places them (adapter-hub/adapters, read for this file: src/adapters/methods/bottleneck.py
// BottleneckLayer.bottleneck_layer_forward, src/adapters/methods/modeling.py Adapter.pre_forward /
// forward / post_forward, src/adapters/configuration/adapter_config.py SeqBnConfig / DoubleSeqBnConfig,
// src/adapters/models/{llama,gpt2}/modeling_*.py and mixin_*.py).
//
// Where the adapter sits. Each decoder layer has two adapter slots: `attention_adapters` (location
// "mh_adapter", used when mh_adapter is true) right after the attention output projection (o_proj /
// c_proj), and `output_adapters` ("output_adapter", when output_adapter is true) right after the MLP's
// down projection (down_proj / mlp.c_proj). AdapterHub's Llama and GPT-2 blocks replace their residual
// additions by `attention_adapters(attn_output, residual, None)` and `output_adapters(mlp_output, residual,
// None)`: the slot receives the sub-layer output `o` before the residual add, the block's residual stream
// `h`, and no layer norm (these are pre-norm blocks). With one active adapter (a Stack of one), the slot
// then computes, with f(x) = scaling · up(act(down(x))):
//   pre_forward:  x = o + h if original_ln_before (no layer norm given: just the residual add), else o;
//                 the adapter's own residual r = o if residual_before_ln, else x;
//   forward:      y = f(x) + r;
//   post_forward: original_ln_after adds the block residual again without a norm: out = y + h.
// So the presets give
//   seq_bn / "pfeiffer" (original_ln_before = true, residual_before_ln = true, after the MLP only):
//       out = z + f(z) with z = h + o: the adapter transforms the sub-layer's output after the residual add;
//   double_seq_bn / "houlsby" (original_ln_before = false, after attention and after the MLP):
//       out = h + o + f(o): the adapter transforms the sub-layer's output before the residual add.
// residual_before_ln = false with original_ln_before = true gives out = z + f(z) + h, implemented as
// written there. Unsupported options (original_ln_after = false, the adapter's own layer norms, gating,
// parallel adapters, PHM layers, learned scaling, invertible adapters) are refused by bottleneckFiles.ts.
// The model hook is TransformerLM.setResidualHook (models/model.ts): the block hands over (o, h) and
// takes back the new stream; without an active adapter it returns h + o, the base model's own sum.
//
// Qwen2 is not one of AdapterHub's built-in architectures (it reaches them only through its plugin
// interface, whose hooks pass a layer norm); here it is treated like Llama, whose block it shares.

import type { Engine } from '../engine/engine.ts';
import { add } from '../engine/ops/arithmetic.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ModelConfig } from '../models/config.ts';
import { TransformerLM, type CausalLM, type ResidualSite } from '../models/model.ts';
import {
  BOTTLENECK_INITS,
  BOTTLENECK_NON_LINEARITIES,
  BottleneckAdapter,
  BottleneckError,
  bottleneckTensorShapes,
  uploadInto,
  type BottleneckInit,
  type BottleneckNonLinearity,
} from './bottleneck.ts';

/** An adapter's architecture, after AdapterHub's BnConfig (only the options tabtune implements). */
export interface BottleneckConfig {
  /** An adapter after each attention block (`attention_adapters`). */
  readonly mhAdapter: boolean;
  /** An adapter after each feed-forward block (`output_adapters`). */
  readonly outputAdapter: boolean;
  /** Bottleneck width = hidden // reduction_factor (at least 1); a number, or per layer {"3": 8, "default": 16}. */
  readonly reductionFactor: number | Readonly<Record<string, number>>;
  readonly nonLinearity: BottleneckNonLinearity;
  /** The adapter reads the stream after the residual add (Pfeiffer) rather than the sub-layer output (Houlsby). */
  readonly originalLnBefore: boolean;
  /** The adapter's own residual is the sub-layer output (true, both presets) or its input. */
  readonly residualBeforeLn: boolean;
  readonly initWeights: BottleneckInit;
  readonly scaling: number;
  readonly dropout: number;
  /** Layers that get no adapter. */
  readonly leaveOut: readonly number[];
}

export type BottleneckPresetName = 'seq_bn' | 'double_seq_bn';

/**
 * AdapterHub's presets (SeqBnConfig, DoubleSeqBnConfig), except the initialisation: AdapterHub's default
 * "bert" only starts near the identity, tabtune's default "mam_adapter" starts exactly at it (override
 * initWeights for the other).
 */
export const BOTTLENECK_PRESETS: Readonly<Record<BottleneckPresetName, BottleneckConfig>> = Object.freeze({
  seq_bn: Object.freeze({
    mhAdapter: false,
    outputAdapter: true,
    reductionFactor: 16,
    nonLinearity: 'relu',
    originalLnBefore: true,
    residualBeforeLn: true,
    initWeights: 'mam_adapter',
    scaling: 1,
    dropout: 0,
    leaveOut: Object.freeze([]),
  }),
  double_seq_bn: Object.freeze({
    mhAdapter: true,
    outputAdapter: true,
    reductionFactor: 16,
    nonLinearity: 'swish',
    originalLnBefore: false,
    residualBeforeLn: true,
    initWeights: 'mam_adapter',
    scaling: 1,
    dropout: 0,
    leaveOut: Object.freeze([]),
  }),
});

/** AdapterHub's identifiers for the presets (ADAPTER_CONFIG_MAP). */
export const BOTTLENECK_PRESET_ALIASES: Readonly<Record<string, BottleneckPresetName>> = Object.freeze({
  seq_bn: 'seq_bn',
  pfeiffer: 'seq_bn',
  double_seq_bn: 'double_seq_bn',
  houlsby: 'double_seq_bn',
});

/** A preset by name (or a whole config) with overrides, validated. */
export function bottleneckConfig(base: string | BottleneckConfig = 'seq_bn', overrides: Partial<BottleneckConfig> = {}): BottleneckConfig {
  let config: BottleneckConfig;
  if (typeof base === 'string') {
    const preset = BOTTLENECK_PRESET_ALIASES[base];
    if (!preset) throw new BottleneckError(`unknown bottleneck preset ${JSON.stringify(base)} (known: ${Object.keys(BOTTLENECK_PRESET_ALIASES).join(', ')})`);
    config = BOTTLENECK_PRESETS[preset];
  } else {
    config = base;
  }
  const merged = { ...config, ...overrides };
  const reductionFactor =
    typeof merged.reductionFactor === 'number' ? merged.reductionFactor : Object.freeze({ ...merged.reductionFactor });
  const result: BottleneckConfig = Object.freeze({ ...merged, reductionFactor, leaveOut: Object.freeze([...merged.leaveOut]) });
  validateBottleneckConfig(result);
  return result;
}

/** Throws BottleneckError naming the field (in AdapterHub's spelling) when a config is unusable. */
export function validateBottleneckConfig(config: BottleneckConfig): void {
  const fail = (field: string, why: string): never => {
    throw new BottleneckError(`bottleneck config: ${field} ${why}`);
  };
  if (typeof config.mhAdapter !== 'boolean') fail('mh_adapter', 'must be true or false');
  if (typeof config.outputAdapter !== 'boolean') fail('output_adapter', 'must be true or false');
  if (!config.mhAdapter && !config.outputAdapter) fail('mh_adapter / output_adapter', 'are both false: the adapter would add nothing');
  const rf = config.reductionFactor;
  if (typeof rf === 'number') {
    if (!(Number.isFinite(rf) && rf > 0)) fail('reduction_factor', `must be a positive number, got ${rf}`);
  } else if (rf && typeof rf === 'object') {
    const entries = Object.entries(rf);
    if (entries.length === 0) fail('reduction_factor', 'is an empty mapping');
    for (const [key, value] of entries) {
      if (key !== 'default' && !/^(0|[1-9][0-9]*)$/.test(key)) fail('reduction_factor', `has the key ${JSON.stringify(key)}: keys are layer numbers or "default"`);
      if (!(typeof value === 'number' && Number.isFinite(value) && value > 0)) fail(`reduction_factor.${key}`, `must be a positive number, got ${String(value)}`);
    }
  } else {
    fail('reduction_factor', 'must be a number or a mapping of layer numbers to numbers');
  }
  if (!(BOTTLENECK_NON_LINEARITIES as readonly string[]).includes(config.nonLinearity)) {
    fail('non_linearity', `is ${JSON.stringify(config.nonLinearity)}, which tabtune does not implement (supported: ${BOTTLENECK_NON_LINEARITIES.join(', ')})`);
  }
  if (typeof config.originalLnBefore !== 'boolean') fail('original_ln_before', 'must be true or false');
  if (typeof config.residualBeforeLn !== 'boolean') fail('residual_before_ln', 'must be true or false');
  if (!(BOTTLENECK_INITS as readonly string[]).includes(config.initWeights)) {
    fail('init_weights', `is ${JSON.stringify(config.initWeights)} (supported: ${BOTTLENECK_INITS.join(', ')})`);
  }
  if (!(typeof config.scaling === 'number' && Number.isFinite(config.scaling))) fail('scaling', `must be a finite number, got ${String(config.scaling)}`);
  if (!(typeof config.dropout === 'number' && config.dropout >= 0 && config.dropout < 1)) fail('dropout', `must be in [0, 1), got ${String(config.dropout)}`);
  if (!Array.isArray(config.leaveOut) || config.leaveOut.some((layer) => !Number.isSafeInteger(layer) || layer < 0)) {
    fail('leave_out', 'must be a list of non-negative layer numbers');
  }
}

/** One adapter module's place in the model. */
export interface BottleneckPlacement {
  readonly layer: number;
  readonly site: ResidualSite;
  /** AdapterHub's attribute of the decoder layer: `attention_adapters` or `output_adapters`. */
  readonly slot: 'attention_adapters' | 'output_adapters';
  /** M */
  readonly downSize: number;
}

/** Python's float floor division a // b (CPython's float_floor_div), for AdapterHub's `hidden // reduction_factor`. */
export function pythonFloorDivide(a: number, b: number): number {
  const mod = a % b;
  let div = (a - mod) / b;
  if (mod !== 0 && b < 0 !== mod < 0) div -= 1;
  if (div === 0) return 0;
  let floor = Math.floor(div);
  if (div - floor > 0.5) floor += 1;
  return floor;
}

/** The reduction factor of one layer (a mapping's entry for the layer, else its "default"). */
export function reductionFactorOf(config: BottleneckConfig, layer: number): number {
  const rf = config.reductionFactor;
  if (typeof rf === 'number') return rf;
  const value = rf[String(layer)] ?? rf.default;
  if (value === undefined) {
    throw new BottleneckError(`bottleneck config: reduction_factor has no entry for layer ${layer} and no "default"`);
  }
  return value;
}

/** Every module an adapter with this config gets on a model, in AdapterHub's state-dict order. */
export function planBottleneck(modelConfig: ModelConfig, config: BottleneckConfig): BottleneckPlacement[] {
  validateBottleneckConfig(config);
  const C = modelConfig.hiddenSize;
  const placements: BottleneckPlacement[] = [];
  for (let layer = 0; layer < modelConfig.numLayers; layer++) {
    if (config.leaveOut.includes(layer)) continue;
    const downSize = Math.max(1, pythonFloorDivide(C, reductionFactorOf(config, layer)));
    if (config.mhAdapter) placements.push({ layer, site: 'attention', slot: 'attention_adapters', downSize });
    if (config.outputAdapter) placements.push({ layer, site: 'mlp', slot: 'output_adapters', downSize });
  }
  return placements;
}

/** The decoder layers' path in the model's state dict: `transformer.h` (GPT-2) or `model.layers`. */
export function layersPath(modelConfig: ModelConfig): string {
  return modelConfig.family === 'gpt2' ? 'transformer.h' : 'model.layers';
}

/** A tensor's state-dict key as AdapterHub saves it, e.g. `model.layers.0.output_adapters.adapters.a.adapter_up.weight`. */
export function bottleneckTensorKey(modelConfig: ModelConfig, placement: BottleneckPlacement, adapterName: string, tensor: string): string {
  return `${layersPath(modelConfig)}.${placement.layer}.${placement.slot}.adapters.${adapterName}.${tensor}`;
}

/** Every tensor an adapter has, key → shape, in file order. */
export function expectedBottleneckTensors(modelConfig: ModelConfig, config: BottleneckConfig, adapterName: string): Map<string, number[]> {
  const tensors = new Map<string, number[]>();
  for (const placement of planBottleneck(modelConfig, config)) {
    for (const [name, shape] of bottleneckTensorShapes(modelConfig.hiddenSize, placement.downSize)) {
      tensors.set(bottleneckTensorKey(modelConfig, placement, adapterName, name), shape);
    }
  }
  return tensors;
}

/** Names AdapterHub accepts and that keep the key layout unambiguous (no dots, no whitespace). */
export function checkAdapterName(name: string): void {
  if (typeof name !== 'string' || !/^[^.\s]{1,200}$/u.test(name)) {
    throw new BottleneckError(`adapter name ${JSON.stringify(name)} must be 1 to 200 characters without dots or whitespace`);
  }
}

interface NamedAdapter {
  readonly name: string;
  readonly config: BottleneckConfig;
  readonly placements: readonly BottleneckPlacement[];
  /** by `${layer}:${site}` */
  readonly modules: Map<string, BottleneckAdapter>;
}

export interface AddAdapterOptions {
  /** Seed of the initial weights; each module gets its own stream from it. Default 0. */
  seed?: number;
  /** Make it the active adapter (default true). */
  setActive?: boolean;
}

const siteKey = (layer: number, site: ResidualSite) => `${layer}:${site}`;

/**
 * Named bottleneck adapters on one model, at most one active. Attaching installs the model's residual
 * hook; detach() removes it and frees every adapter. The base weights stay frozen: only adapter tensors
 * have requiresGrad.
 */
export class BottleneckModel {
  readonly engine: Engine;
  private readonly adapters = new Map<string, NamedAdapter>();
  private activeName: string | null = null;
  private enabled = true;
  private stream: { seed: number; offset: number } | null = null;
  private attached = true;

  private constructor(readonly model: TransformerLM<ModelConfig>) {
    this.engine = model.engine;
  }

  /** Attach to a GPT-2 or Llama-family model loaded by models/load.ts. */
  static attach(model: CausalLM): BottleneckModel {
    if (!(model instanceof TransformerLM)) {
      throw new BottleneckError('bottleneck adapters attach to the transformer models of src/models (GPT-2, Llama, Mistral, Qwen2)');
    }
    const adapted = new BottleneckModel(model as TransformerLM<ModelConfig>);
    const previous = model.setResidualHook((layer, site, output, residual) => adapted.residual(layer, site, output, residual));
    if (previous) {
      model.setResidualHook(previous);
      throw new BottleneckError('the model already has a residual hook: detach the other bottleneck adapters first');
    }
    return adapted;
  }

  get modelConfig(): ModelConfig {
    return this.model.config;
  }

  get adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  get activeAdapter(): string | null {
    return this.activeName;
  }

  hasAdapter(name: string): boolean {
    return this.adapters.has(name);
  }

  /** Add an adapter (a preset name, or a config from bottleneckConfig()); returns its placements. */
  addAdapter(name: string, config: string | BottleneckConfig = 'seq_bn', options: AddAdapterOptions = {}): BottleneckPlacement[] {
    this.checkAttached();
    checkAdapterName(name);
    if (this.adapters.has(name)) throw new BottleneckError(`an adapter named ${JSON.stringify(name)} already exists`);
    const resolved = typeof config === 'string' ? bottleneckConfig(config) : bottleneckConfig(config);
    const placements = planBottleneck(this.modelConfig, resolved);
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0) throw new BottleneckError(`seed must be a non-negative integer, got ${seed}`);
    const modules = new Map<string, BottleneckAdapter>();
    try {
      placements.forEach((placement, index) => {
        const module = new BottleneckAdapter(this.engine, {
          hiddenSize: this.modelConfig.hiddenSize,
          downSize: placement.downSize,
          nonLinearity: resolved.nonLinearity,
          scaling: resolved.scaling,
          dropout: resolved.dropout,
          init: resolved.initWeights,
          seed: (seed * 1009 + index) % 2 ** 32,
          name: `${layersPath(this.modelConfig)}.${placement.layer}.${placement.slot}.adapters.${name}`,
        });
        modules.set(siteKey(placement.layer, placement.site), module);
      });
    } catch (error) {
      for (const module of modules.values()) module.dispose();
      throw error;
    }
    this.adapters.set(name, { name, config: resolved, placements, modules });
    if (options.setActive ?? true) this.activeName = name;
    return placements;
  }

  /** The adapter used by the next forward (null: none); switching is instant. */
  setActive(name: string | null): void {
    this.checkAttached();
    if (name !== null) this.get(name);
    this.activeName = name;
  }

  /** Remove an adapter and free its tensors (the active one too: no adapter is active then). */
  deleteAdapter(name: string): void {
    this.checkAttached();
    const adapter = this.get(name);
    for (const module of adapter.modules.values()) module.dispose();
    this.adapters.delete(name);
    if (this.activeName === name) this.activeName = null;
  }

  /** While disabled the model computes its base function, whatever is active. */
  disable(): void {
    this.enabled = false;
  }

  enable(): void {
    this.enabled = true;
  }

  get isEnabled(): boolean {
    return this.enabled;
  }

  /** Run fn with the adapters disabled (base logits for comparison), restoring the switch afterwards. */
  withAdaptersDisabled<T>(fn: () => T): T {
    const previous = this.enabled;
    this.enabled = false;
    try {
      return fn();
    } finally {
      this.enabled = previous;
    }
  }

  /** Apply the adapters' dropout (where their config has one) from this Philox stream until eval(). */
  train(seed: number, offset = 0): void {
    if (!Number.isSafeInteger(seed) || seed < 0 || !Number.isSafeInteger(offset) || offset < 0) {
      throw new BottleneckError(`train: seed and offset must be non-negative integers, got ${seed} and ${offset}`);
    }
    this.stream = { seed, offset };
  }

  eval(): void {
    this.stream = null;
  }

  /** The dropout stream's position (for checkpoints), or null in evaluation mode. */
  get dropoutState(): { seed: number; offset: number } | null {
    return this.stream ? { ...this.stream } : null;
  }

  config(name: string = this.requireActive()): BottleneckConfig {
    return this.get(name).config;
  }

  placements(name: string = this.requireActive()): readonly BottleneckPlacement[] {
    return this.get(name).placements;
  }

  /** One adapter's tensors by AdapterHub state-dict key, in file order. */
  tensors(name: string = this.requireActive()): Map<string, Tensor> {
    const adapter = this.get(name);
    const out = new Map<string, Tensor>();
    for (const placement of adapter.placements) {
      const module = adapter.modules.get(siteKey(placement.layer, placement.site))!;
      for (const [tensorName, tensor] of module.parameters()) {
        out.set(bottleneckTensorKey(this.modelConfig, placement, name, tensorName), tensor);
      }
    }
    return out;
  }

  /** The module at one place (tests, inspection). */
  module(layer: number, site: ResidualSite, name: string = this.requireActive()): BottleneckAdapter | null {
    return this.get(name).modules.get(siteKey(layer, site)) ?? null;
  }

  /** What an optimizer trains: the active adapter's tensors by key (empty when none is active). */
  trainableParameters(): Map<string, Tensor> {
    return this.activeName === null ? new Map() : this.tensors(this.activeName);
  }

  /** Number of trainable values of an adapter (default: the active one; 0 when none is active). */
  trainableParameterCount(name: string | null = this.activeName): number {
    if (name === null) return 0;
    let count = 0;
    for (const module of this.get(name).modules.values()) count += module.parameterCount;
    return count;
  }

  /**
   * Overwrite an adapter's weights with host values by key (import); every key of the adapter must be
   * given with the right element count, and nothing else, or nothing is written.
   */
  setWeights(name: string, values: ReadonlyMap<string, Float32Array>): void {
    this.checkAttached();
    const tensors = this.tensors(name);
    for (const [key, tensor] of tensors) {
      const data = values.get(key);
      if (!data) throw new BottleneckError(`setWeights: no values for ${key}`);
      if (data.length !== tensor.size) throw new BottleneckError(`setWeights: ${data.length} values for ${key}, which holds ${tensor.size}`);
    }
    for (const key of values.keys()) if (!tensors.has(key)) throw new BottleneckError(`setWeights: ${key} is not a tensor of adapter ${JSON.stringify(name)}`);
    for (const [key, tensor] of tensors) uploadInto(tensor, values.get(key)!, key);
  }

  /** Remove the hook (the model computes its base function again) and free every adapter. */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.model.setResidualHook(null);
    for (const adapter of this.adapters.values()) for (const module of adapter.modules.values()) module.dispose();
    this.adapters.clear();
    this.activeName = null;
  }

  /** The residual hook: h + o without an active adapter, else AdapterHub's slot computation (file header). */
  private residual(layer: number, site: ResidualSite, output: Tensor, residual: Tensor): Tensor {
    const base = add(residual, output); // exactly what the block computes without adapters
    const adapter = this.enabled && this.activeName !== null ? this.adapters.get(this.activeName) : undefined;
    const module = adapter?.modules.get(siteKey(layer, site));
    if (!adapter || !module) return base;
    const { originalLnBefore, residualBeforeLn } = adapter.config;
    const input = originalLnBefore ? base : output;
    const stream = this.stream ?? undefined;
    const { delta, used } = module.delta(input, stream);
    if (this.stream) this.stream.offset += used;
    const out = add(base, delta);
    return originalLnBefore && !residualBeforeLn ? add(out, residual) : out;
  }

  private get(name: string): NamedAdapter {
    this.checkAttached();
    const adapter = this.adapters.get(name);
    if (!adapter) throw new BottleneckError(`no adapter named ${JSON.stringify(name)} (have: ${this.adapterNames.map((n) => JSON.stringify(n)).join(', ') || 'none'})`);
    return adapter;
  }

  private requireActive(): string {
    if (this.activeName === null) throw new BottleneckError('no adapter is active: name one');
    return this.activeName;
  }

  private checkAttached(): void {
    if (!this.attached) throw new BottleneckError('these bottleneck adapters were detached from their model');
  }
}
