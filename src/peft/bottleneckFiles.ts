// Bottleneck adapters as files in the layout of AdapterHub's `adapters` library (Hugging Face PEFT has
// no bottleneck method, so this is the format such adapters are shared in): a folder with
//   adapter_config.json  {"config": {...BnConfig...}, "hidden_size", "model_class", "model_name",
//                         "model_type", "name", "version"}, keys sorted, indent 2, as AdapterHub writes it;
//   adapter.safetensors  the adapter's state-dict entries, F32.
// A Python user loads it with `model.load_adapter(folder, use_safetensors=True)` (without that flag
// AdapterHub looks for pytorch_adapter.bin instead) and activates it with set_active_adapters(name).
//
// What was checked against the adapter-hub/adapters source (with the code search, not against a file
// saved by the library, which was not available here):
// - file names: utils.py CONFIG_NAME = "adapter_config.json", SAFE_WEIGHTS_NAME = "adapter.safetensors",
//   WEIGHTS_NAME = "pytorch_adapter.bin".
// - the wrapper: configuration/model_adapters_config.py build_full_config writes "model_type",
//   "hidden_size" (getattr(config, "hidden_size"): n_embd for GPT-2), the kwargs "model_name"
//   (config.name_or_path), "name", "model_class" (the Python class the adapter was saved from), then
//   "config" = BnConfig.to_dict() and "version" = "adapters." + __version__; loading.py
//   save_weights_config dumps it with indent=2, sort_keys=True. Without "version", loading renames the
//   non-linearity "gelu" → "gelu_new" and "gelu_orig" → "gelu" (ACTIVATION_RENAME); so a version is
//   always written (the layout of adapters 1.x; 1.3.0 is the release this was checked against).
// - "scaling" must be a float in the JSON (modeling.py Adapter: isinstance(config["scaling"], float),
//   else only "learned"/"channel" are accepted), so it is written as 1.0, never 1.
// - "architecture": to_dict() is dataclasses.asdict and `architecture` is a class attribute of the
//   non-dataclass base, so AdapterHub itself omits it; it is written here as null (FORMATS.md), which
//   from_dict sets as a plain attribute and _get_config_class maps to BnConfig.
// - keys: loading.py save_weights filters model.state_dict() for "_adapters.<name>." / ".adapters.<name>.";
//   the slots are attributes of the decoder layer (models/llama/mixin_llama.py, models/gpt2/mixin_gpt2.py:
//   self.attention_adapters / self.output_adapters = BottleneckLayer(...), whose ModuleDict is `adapters`);
//   inside, methods/modeling.py Adapter has adapter_down = nn.Sequential(Linear, activation) and
//   adapter_up = Linear. Saved from LlamaForCausalLM / GPT2LMHeadModel (or the *AdapterModel classes),
//   whose base models sit at `model` / `transformer`, that gives
//     model.layers.{i}.attention_adapters.adapters.<name>.adapter_down.0.weight   [M, C]
//     model.layers.{i}.attention_adapters.adapters.<name>.adapter_down.0.bias     [M]
//     model.layers.{i}.attention_adapters.adapters.<name>.adapter_up.weight       [C, M]
//     model.layers.{i}.attention_adapters.adapters.<name>.adapter_up.bias         [C]
//   and the same under `output_adapters`; for GPT-2 `transformer.h.{i}.…`.
// - loading.py load_weights_from_state_dict also accepts the keys without the base-model prefix (a file
//   saved from the bare LlamaModel / GPT2Model), and rename_func maps legacy module names
//   (attention_text_task_adapters, layer_text_lang_adapters, ... → adapters); import does the same.
// Not checked: a file actually written by the library (no Python `adapters` here), and whether the
// library's latest release still uses the same keys (the sources read were recent revisions of main).

import { JsonFields, parseJsonObjectFile } from '../io/jsonFields.ts';
import { FormatError, quoteName } from '../io/errors.ts';
import { readSafetensorsHeader, readTensor, type ByteSource, type SafetensorsHeader } from '../io/safetensors.ts';
import { writeSafetensors } from '../io/safetensorsWriter.ts';
import { bytesSource } from '../io/byteSource.ts';
import { describeJson, JsonNumber } from '../io/strictJson.ts';
import type { ModelConfig } from '../models/config.ts';
import { BOTTLENECK_NON_LINEARITIES, type BottleneckInit, type BottleneckNonLinearity } from './bottleneck.ts';
import {
  BOTTLENECK_PRESETS,
  BOTTLENECK_PRESET_ALIASES,
  bottleneckConfig,
  checkAdapterName,
  expectedBottleneckTensors,
  layersPath,
  type BottleneckConfig,
  type BottleneckModel,
} from './bottleneckModel.ts';

export const BOTTLENECK_CONFIG_FILE = 'adapter_config.json';
export const BOTTLENECK_WEIGHTS_FILE = 'adapter.safetensors';
const PICKLE_WEIGHTS_FILE = 'pytorch_adapter.bin';
/** The `adapters` release whose layout the files follow. */
export const ADAPTERS_LAYOUT_VERSION = 'adapters.1.3.0';
const CONFIG_MAX_BYTES = 1 << 20;

/** An adapter file that is malformed, uses options tabtune does not implement, or does not fit the model. */
export class BottleneckFileError extends FormatError {}

/** transformers' class names, for "model_class". */
const MODEL_CLASSES: Record<ModelConfig['modelType'], string> = {
  gpt2: 'GPT2LMHeadModel',
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

// ---------------------------------------------------------------------------------------------------------------
// adapter_config.json

/** A parsed adapter_config.json. */
export interface BottleneckConfigFile {
  /** The adapter's name (it is part of every tensor key). */
  name: string;
  config: BottleneckConfig;
  modelType: string | null;
  hiddenSize: number | null;
  modelName: string | null;
  modelClass: string | null;
  version: string | null;
  /** Keys of "config" that tabtune does not know (AdapterHub would set them as attributes and ignore them). */
  ignoredKeys: string[];
}

/** A Python float literal for json.dumps: integral values get ".0" (AdapterHub tests isinstance(..., float)). */
class PyFloat {
  constructor(readonly value: number) {}
}

/** adapter_config.json for one adapter of a model, as AdapterHub's save_adapter writes it. */
export function bottleneckConfigJson(modelConfig: ModelConfig, name: string, config: BottleneckConfig, modelName: string | null = null): string {
  const reductionFactor = typeof config.reductionFactor === 'number' ? config.reductionFactor : { ...config.reductionFactor };
  const bnConfig: Record<string, unknown> = {
    architecture: null,
    mh_adapter: config.mhAdapter,
    output_adapter: config.outputAdapter,
    reduction_factor: reductionFactor,
    non_linearity: config.nonLinearity,
    original_ln_before: config.originalLnBefore,
    original_ln_after: true,
    ln_before: false,
    ln_after: false,
    init_weights: config.initWeights,
    is_parallel: false,
    scaling: new PyFloat(config.scaling),
    use_gating: false,
    residual_before_ln: config.residualBeforeLn,
    adapter_residual_before_ln: false,
    inv_adapter: null,
    inv_adapter_reduction_factor: null,
    cross_adapter: false,
    leave_out: [...config.leaveOut],
    dropout: new PyFloat(config.dropout),
    phm_layer: false,
    phm_dim: 4,
    factorized_phm_W: true,
    shared_W_phm: false,
    shared_phm_rule: true,
    factorized_phm_rule: false,
    phm_c_init: 'normal',
    phm_init_range: new PyFloat(0.0001),
    learn_phm: true,
    hypercomplex_nonlinearity: 'glorot-uniform',
    phm_rank: 1,
    phm_bias: true,
    stochastic_depth: new PyFloat(0),
  };
  const wrapper = {
    config: bnConfig,
    hidden_size: modelConfig.hiddenSize,
    model_class: MODEL_CLASSES[modelConfig.modelType],
    model_name: modelName,
    model_type: modelConfig.modelType,
    name,
    version: ADAPTERS_LAYOUT_VERSION,
  };
  return `${pythonJson(wrapper, '')}\n`;
}

/** json.dumps(value, indent=2, sort_keys=True) for the values above. */
function pythonJson(value: unknown, indent: string): string {
  if (value === null) return 'null';
  if (value instanceof PyFloat) {
    if (!Number.isFinite(value.value)) throw new RangeError(`cannot write ${value.value} to adapter_config.json`);
    return Number.isInteger(value.value) ? `${value.value}.0` : JSON.stringify(value.value);
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new RangeError(`cannot write ${value} to adapter_config.json`);
    return JSON.stringify(value);
  }
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((item) => inner + pythonJson(item, inner)).join(',\n')}\n${indent}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([key, item]) => `${inner}${JSON.stringify(key)}: ${pythonJson(item, inner)}`).join(',\n')}\n${indent}}`;
}

/** BnConfig keys this reader knows; the values of the ones it does not implement are checked below. */
const KNOWN_CONFIG_KEYS = new Set([
  'architecture', 'mh_adapter', 'output_adapter', 'reduction_factor', 'non_linearity', 'original_ln_before',
  'original_ln_after', 'ln_before', 'ln_after', 'init_weights', 'is_parallel', 'scaling', 'use_gating',
  'residual_before_ln', 'adapter_residual_before_ln', 'inv_adapter', 'inv_adapter_reduction_factor', 'invertible_adapter',
  'cross_adapter', 'leave_out', 'dropout', 'phm_layer', 'phm_dim', 'factorized_phm_W', 'shared_W_phm', 'shared_phm_rule',
  'factorized_phm_rule', 'phm_c_init', 'phm_init_range', 'learn_phm', 'hypercomplex_nonlinearity', 'phm_rank', 'phm_bias',
  'stochastic_depth',
]);

/** AdapterHub's old non-linearity names, renamed when the file has no "version" (utils.py ACTIVATION_RENAME). */
const ACTIVATION_RENAME: Record<string, string> = { gelu: 'gelu_new', gelu_orig: 'gelu' };

/** Parse and check adapter_config.json; every problem is a BottleneckFileError naming the file and field. */
export function parseBottleneckConfigFile(input: string | Uint8Array, file = BOTTLENECK_CONFIG_FILE): BottleneckConfigFile {
  const json = parseJsonObjectFile(input, file, CONFIG_MAX_BYTES, BottleneckFileError);
  const top = new Fields(file, json, '', BottleneckFileError);

  const name = top.string('name');
  try {
    checkAdapterName(name);
  } catch {
    top.fail('name', `(${quoteName(name)}) cannot be used: names must be 1 to 200 characters without dots or whitespace`);
  }
  const version = top.optionalString('version');
  const modelType = top.optionalString('model_type');
  const hiddenSize = top.present('hidden_size') ? top.positiveInteger('hidden_size') : null;
  const modelName = top.optionalString('model_name');
  const modelClass = top.optionalString('model_class');

  const raw = top.raw('config');
  let config: BottleneckConfig;
  const ignoredKeys: string[] = [];
  if (typeof raw === 'string') {
    // A preset identifier instead of a dict (AdapterConfig.load accepts both).
    const preset = BOTTLENECK_PRESET_ALIASES[raw.toLowerCase()];
    if (!preset) top.fail('config', `is the identifier ${quoteName(raw)}, not a bottleneck preset tabtune knows (${Object.keys(BOTTLENECK_PRESET_ALIASES).join(', ')})`);
    config = bottleneckConfig(BOTTLENECK_PRESETS[preset], { initWeights: 'bert' });
  } else {
    const fields = top.object('config');
    config = bnConfigFrom(fields, version === null, ignoredKeys);
  }
  return { name, config, modelType, hiddenSize, modelName, modelClass, version, ignoredKeys };
}

function bnConfigFrom(fields: Fields, legacy: boolean, ignoredKeys: string[]): BottleneckConfig {
  const architecture = fields.optionalString('architecture');
  if (architecture !== null && architecture !== 'bottleneck') {
    const hint = architecture === 'lora' ? ': AdapterHub LoRA files are not read here (tabtune reads LoRA in PEFT\'s format)' : '';
    fields.fail('architecture', `is ${quoteName(architecture)}, not a bottleneck adapter${hint}`);
  }
  for (const key of fields.keys()) if (!KNOWN_CONFIG_KEYS.has(key)) ignoredKeys.push(key);

  // Options tabtune does not implement: refused by name unless they hold the value that turns them off.
  fields.requireValue('original_ln_after', true, 'the adapter output without the block residual (original_ln_after false) is not supported');
  fields.requireValue('ln_before', false, 'an adapter layer norm before the bottleneck (ln_before) is not supported');
  fields.requireValue('ln_after', false, 'an adapter layer norm after the bottleneck (ln_after) is not supported');
  fields.requireValue('is_parallel', false, 'parallel adapters (is_parallel, par_bn) are not supported');
  fields.requireValue('use_gating', false, 'gated adapters (use_gating, UniPELT) are not supported');
  fields.requireValue('phm_layer', false, 'PHM layers (phm_layer, Compacter) are not supported');
  fields.requireValue('inv_adapter', null, 'invertible adapters (inv_adapter) are not supported');
  if (fields.present('invertible_adapter')) fields.fail('invertible_adapter', 'is set: invertible adapters are not supported');
  if (fields.present('stochastic_depth') && fields.number('stochastic_depth') !== 0) {
    fields.fail('stochastic_depth', 'is not 0: stochastic depth is not supported');
  }

  const mhAdapter = fields.bool('mh_adapter');
  const outputAdapter = fields.bool('output_adapter');
  const reductionFactor = fields.reductionFactor('reduction_factor');
  let nonLinearity = fields.string('non_linearity').toLowerCase();
  if (legacy && ACTIVATION_RENAME[nonLinearity]) nonLinearity = ACTIVATION_RENAME[nonLinearity];
  if (!(BOTTLENECK_NON_LINEARITIES as readonly string[]).includes(nonLinearity)) {
    fields.fail('non_linearity', `is ${quoteName(nonLinearity)}, which tabtune does not implement (supported: ${BOTTLENECK_NON_LINEARITIES.join(', ')})`);
  }
  const originalLnBefore = fields.bool('original_ln_before', false);
  const residual = fields.raw('residual_before_ln');
  if (residual === 'post_add') {
    fields.fail('residual_before_ln', 'is "post_add", which AdapterHub only defines with a layer norm (these decoder blocks pass none)');
  }
  const residualBeforeLn = fields.bool('residual_before_ln', true);
  const initWeights = fields.present('init_weights') ? fields.string('init_weights') : 'bert';
  if (!['mam_adapter', 'bert', 'houlsby'].includes(initWeights)) fields.fail('init_weights', `is ${quoteName(initWeights)} (known: mam_adapter, bert, houlsby)`);
  const scalingRaw = fields.raw('scaling');
  if (typeof scalingRaw === 'string') fields.fail('scaling', `is ${quoteName(scalingRaw)}: learned scaling is not supported, only a number`);
  const scaling = fields.present('scaling') ? fields.number('scaling') : 1;
  const dropout = fields.present('dropout') ? fields.number('dropout') : 0;
  if (!(dropout >= 0 && dropout < 1)) fields.fail('dropout', `must be in [0, 1), got ${dropout}`);
  const leaveOut = fields.present('leave_out') ? fields.layerList('leave_out') : [];
  try {
    return bottleneckConfig(BOTTLENECK_PRESETS.seq_bn, {
      mhAdapter,
      outputAdapter,
      reductionFactor,
      nonLinearity: nonLinearity as BottleneckNonLinearity,
      originalLnBefore,
      residualBeforeLn,
      initWeights: initWeights as BottleneckInit,
      scaling,
      dropout,
      leaveOut,
    });
  } catch (error) {
    throw new BottleneckFileError(fields.file, `field "config": ${error instanceof Error ? error.message : String(error)}`, { field: 'config' }, { cause: error });
  }
}

/** The adapter config's kinds of field: positive integers, reduction factors, layer lists. */
class Fields extends JsonFields {
  positiveInteger(name: string): number {
    const value = this.number(name);
    if (!Number.isSafeInteger(value) || value <= 0) this.fail(name, `must be a positive integer, got ${value}`);
    return value;
  }

  /** Absent, or exactly `expected` (null also when absent). */
  requireValue(name: string, expected: boolean | null, why: string): void {
    const value = this.json.get(name);
    if (value === undefined || value === expected) return;
    this.fail(name, `is ${describeJson(value)}: ${why}`);
  }

  /** A positive number, or an object of layer number / "default" → positive number. */
  reductionFactor(name: string): number | Record<string, number> {
    const value = this.required(name);
    if (value instanceof JsonNumber) {
      const rf = this.numberValue(name, value);
      if (!(rf > 0)) this.fail(name, `must be positive, got ${rf}`);
      return rf;
    }
    if (!(value instanceof Map)) this.fail(name, `must be a number or an object of layer numbers, got ${describeJson(value)}`);
    const out: Record<string, number> = {};
    for (const [key, item] of value) {
      if (key !== 'default' && !/^(0|[1-9][0-9]*)$/.test(key)) this.fail(`${name}.${key}`, 'is not a layer number or "default"');
      const rf = this.numberValue(`${name}.${key}`, item);
      if (!(rf > 0)) this.fail(`${name}.${key}`, `must be positive, got ${rf}`);
      out[key] = rf;
    }
    return out;
  }

  layerList(name: string): number[] {
    const value = this.required(name);
    if (!Array.isArray(value)) this.fail(name, `must be a list of layer numbers, got ${describeJson(value)}`);
    return value.map((item, i) => {
      const layer = this.numberValue(`${name}[${i}]`, item);
      if (!Number.isSafeInteger(layer) || layer < 0) this.fail(`${name}[${i}]`, `must be a non-negative layer number, got ${layer}`);
      return layer;
    });
  }

}

// ---------------------------------------------------------------------------------------------------------------
// Export

export interface ExportBottleneckOptions {
  /** The adapter to write (default: the active one). */
  name?: string;
  /** The base model's hub id, written as "model_name" (AdapterHub's config.name_or_path). */
  modelName?: string | null;
}

/**
 * The two files of one adapter, by file name. Reads the tensors back from the GPU; a tensor holding
 * NaN or ±Inf is refused (BottleneckFileError naming it), so no such value reaches a saved file.
 */
export async function exportBottleneckAdapter(adapted: BottleneckModel, options: ExportBottleneckOptions = {}): Promise<Map<string, Uint8Array>> {
  const name = options.name ?? adapted.activeAdapter;
  if (name === null) throw new BottleneckFileError(BOTTLENECK_WEIGHTS_FILE, 'no adapter is active and none was named', { field: 'name' });
  const config = adapted.config(name);
  const tensors = adapted.tensors(name);
  const entries = [];
  for (const [key, tensor] of tensors) {
    const data = (await tensor.read()) as Float32Array;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) {
        throw new BottleneckFileError(BOTTLENECK_WEIGHTS_FILE, `tensor ${quoteName(key)} holds ${data[i]} at index ${i}: not written`, { tensor: key });
      }
    }
    entries.push({ name: key, dtype: 'F32' as const, shape: [...tensor.shape], data });
  }
  const weights = writeSafetensors(entries, { format: 'pt' }, { fileName: BOTTLENECK_WEIGHTS_FILE });
  const configText = bottleneckConfigJson(adapted.modelConfig, name, config, options.modelName ?? null);
  return new Map([
    [BOTTLENECK_CONFIG_FILE, new TextEncoder().encode(configText)],
    [BOTTLENECK_WEIGHTS_FILE, weights],
  ]);
}

// ---------------------------------------------------------------------------------------------------------------
// Import

/** A folder of files: io/sources' ModelFiles and models/load's ModelFileProvider fit. */
export interface AdapterFileProvider {
  readonly name?: string;
  list(): Promise<readonly string[]> | readonly string[];
  open(name: string): Promise<ByteSource> | ByteSource;
}

export interface ImportBottleneckOptions {
  /** Add it under this name instead of the one in the file. */
  loadAs?: string;
  /** Make it the active adapter (default true). */
  setActive?: boolean;
}

export interface ImportedBottleneck {
  name: string;
  config: BottleneckConfig;
  file: BottleneckConfigFile;
  /** Things a user should hear about that did not stop the import. */
  warnings: string[];
}

/** AdapterHub's legacy module names (loading.py legacy_weights_mapping). */
const LEGACY_NAMES: [string, string][] = [
  ['attention_text_task_adapters', 'adapters'],
  ['attention_text_lang_adapters', 'adapters'],
  ['layer_text_task_adapters', 'adapters'],
  ['layer_text_lang_adapters', 'adapters'],
];

/**
 * Read an adapter folder (or a map of file name → bytes) and add it to the model. Everything is checked
 * before anything is allocated: the config against the model (model_type, hidden_size), every tensor key
 * and shape against what the config implies, no tensor missing, none extra, every value finite.
 */
export async function importBottleneckAdapter(
  adapted: BottleneckModel,
  files: AdapterFileProvider | ReadonlyMap<string, Uint8Array>,
  options: ImportBottleneckOptions = {},
): Promise<ImportedBottleneck> {
  const provider = files instanceof Map ? mapProvider(files as ReadonlyMap<string, Uint8Array>) : (files as AdapterFileProvider);
  const names = await provider.list();
  const folder = provider.name ?? 'the adapter folder';
  if (!names.includes(BOTTLENECK_CONFIG_FILE)) {
    throw new BottleneckFileError(folder, `has no ${BOTTLENECK_CONFIG_FILE}`, { field: BOTTLENECK_CONFIG_FILE });
  }
  if (!names.includes(BOTTLENECK_WEIGHTS_FILE)) {
    const why = names.includes(PICKLE_WEIGHTS_FILE)
      ? `has ${PICKLE_WEIGHTS_FILE} but no ${BOTTLENECK_WEIGHTS_FILE}: PyTorch pickle files are never loaded; save the adapter with save_adapter(..., use_safetensors=True)`
      : `has no ${BOTTLENECK_WEIGHTS_FILE}`;
    throw new BottleneckFileError(folder, why, { field: BOTTLENECK_WEIGHTS_FILE });
  }

  const configSource = await provider.open(BOTTLENECK_CONFIG_FILE);
  if (configSource.size > CONFIG_MAX_BYTES) {
    throw new BottleneckFileError(BOTTLENECK_CONFIG_FILE, `is larger than ${CONFIG_MAX_BYTES} bytes`, { field: 'file size' });
  }
  const parsed = parseBottleneckConfigFile(await configSource.read(0, configSource.size), BOTTLENECK_CONFIG_FILE);
  const modelConfig = adapted.modelConfig;
  const warnings: string[] = [];
  if (parsed.ignoredKeys.length > 0) warnings.push(`${BOTTLENECK_CONFIG_FILE}: ignored unknown config keys ${parsed.ignoredKeys.map(quoteName).join(', ')}`);
  if (parsed.modelType !== null && parsed.modelType !== modelConfig.modelType) {
    throw new BottleneckFileError(
      BOTTLENECK_CONFIG_FILE,
      `field "model_type" is ${quoteName(parsed.modelType)}, but the model is ${quoteName(modelConfig.modelType)}: the adapter was made for a different base`,
      { field: 'model_type' },
    );
  }
  if (parsed.hiddenSize !== null && parsed.hiddenSize !== modelConfig.hiddenSize) {
    throw new BottleneckFileError(
      BOTTLENECK_CONFIG_FILE,
      `field "hidden_size" is ${parsed.hiddenSize}, but the model's hidden size is ${modelConfig.hiddenSize}: the adapter was made for a different base`,
      { field: 'hidden_size' },
    );
  }
  const name = options.loadAs ?? parsed.name;
  checkAdapterName(name);
  if (adapted.hasAdapter(name)) {
    throw new BottleneckFileError(BOTTLENECK_CONFIG_FILE, `the model already has an adapter named ${quoteName(name)} (import it with loadAs)`, { field: 'name' });
  }

  let expected: Map<string, number[]>;
  try {
    expected = expectedBottleneckTensors(modelConfig, parsed.config, parsed.name);
  } catch (error) {
    throw new BottleneckFileError(BOTTLENECK_CONFIG_FILE, `field "config": ${error instanceof Error ? error.message : String(error)}`, { field: 'config' }, { cause: error });
  }
  const source = await provider.open(BOTTLENECK_WEIGHTS_FILE);
  const header = await readSafetensorsHeader(source, BOTTLENECK_WEIGHTS_FILE);
  const fileKeyOf = matchTensorKeys(header, expected, modelConfig);

  const values = new Map<string, Float32Array>();
  const renamed = (key: string) => key.replace(`.adapters.${parsed.name}.`, `.adapters.${name}.`);
  for (const [key, fileKey] of fileKeyOf) {
    const tensor = await readTensor(source, header, fileKey);
    if (tensor.dtype === 'U8') throw new Error('unreachable: U8 refused by matchTensorKeys');
    if (tensor.warning) {
      throw new BottleneckFileError(BOTTLENECK_WEIGHTS_FILE, `tensor ${quoteName(fileKey)} holds NaN or infinite values: ${tensor.warning.message}`, { tensor: fileKey });
    }
    values.set(renamed(key), tensor.data);
  }

  adapted.addAdapter(name, parsed.config, { setActive: options.setActive ?? true });
  try {
    adapted.setWeights(name, values);
  } catch (error) {
    adapted.deleteAdapter(name);
    throw error;
  }
  return { name, config: parsed.config, file: parsed, warnings };
}

/**
 * expected key → the key it has in the file, after AdapterHub's normalisations (legacy module names, a
 * missing base-model prefix). Missing, extra, duplicated or misshapen tensors and non-float dtypes are errors.
 */
function matchTensorKeys(header: SafetensorsHeader, expected: Map<string, number[]>, modelConfig: ModelConfig): Map<string, string> {
  const file = header.file;
  const prefix = layersPath(modelConfig); // model.layers | transformer.h
  const bare = prefix.slice(prefix.indexOf('.') + 1); // layers | h
  const found = new Map<string, string>();
  for (const entry of header.tensors) {
    let key = entry.name;
    for (const [old, replacement] of LEGACY_NAMES) key = key.split(old).join(replacement);
    if (key.startsWith(`${bare}.`)) key = `${prefix.slice(0, prefix.indexOf('.'))}.${key}`;
    const shape = expected.get(key);
    if (!shape) {
      throw new BottleneckFileError(file, `unexpected tensor ${quoteName(entry.name)}: the config and model imply no such adapter weight`, { tensor: entry.name });
    }
    const previous = found.get(key);
    if (previous !== undefined) {
      throw new BottleneckFileError(file, `tensors ${quoteName(previous)} and ${quoteName(entry.name)} are the same weight`, { tensor: entry.name });
    }
    if (entry.dtype === 'U8') {
      throw new BottleneckFileError(file, `tensor ${quoteName(entry.name)} is U8; adapter weights must be F32, F16 or BF16`, { tensor: entry.name, field: 'dtype' });
    }
    if (entry.shape.length !== shape.length || entry.shape.some((dim, i) => dim !== shape[i])) {
      throw new BottleneckFileError(file, `tensor ${quoteName(entry.name)} has shape [${entry.shape.join(', ')}], expected [${shape.join(', ')}]`, {
        tensor: entry.name,
        field: 'shape',
      });
    }
    found.set(key, entry.name);
  }
  for (const key of expected.keys()) {
    if (!found.has(key)) throw new BottleneckFileError(file, `tensor ${quoteName(key)} is missing`, { tensor: key });
  }
  // In the order the model uses them.
  return new Map([...expected.keys()].map((key) => [key, found.get(key)!]));
}

function mapProvider(files: ReadonlyMap<string, Uint8Array>): AdapterFileProvider {
  return {
    name: 'the adapter files',
    list: () => [...files.keys()].sort(),
    open: (name: string) => {
      const bytes = files.get(name);
      if (!bytes) throw new BottleneckFileError(name, 'is missing', { field: 'file' });
      return bytesSource(bytes);
    },
  };
}
