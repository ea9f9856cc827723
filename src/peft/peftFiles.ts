// LoRA / QLoRA adapters in Hugging Face PEFT's on-disk format (../shared/docs/FORMATS.md §1):
//   adapter_config.json        json.dumps(config, indent=2, sort_keys=True), as PeftConfig.save_pretrained
//   adapter_model.safetensors  {"format": "pt"} metadata; tensors sorted by name (safetensors' order), F32:
//     base_model.model.<module path>.lora_A.weight  [r, IN]
//     base_model.model.<module path>.lora_B.weight  [OUT, r]
// (GPT-2 paths keep `transformer.` even when the base checkpoint stores its own weights without it.)
// Export refuses NaN / ±Inf. Import validates the files against the loaded model and refuses, with a
// typed error naming the file and the field or tensor, anything that would compute another function.

import { FormatError, quoteName } from '../io/errors.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { writeSafetensors } from '../io/safetensorsWriter.ts';
import type { ModelFileProvider } from '../models/load.ts';
import type { CausalLM } from '../models/model.ts';
import { parseAdapterConfig, type ParsedAdapterConfig } from './adapterConfig.ts';
import { checkAdapterConfig, LoraConfigError } from './loraLinear.ts';
import { attachLora, PEFT_PREFIX, PeftModel, type AttachedLoraConfig } from './peftModel.ts';
import { PyFloat, pythonJsonDumps } from './pythonJson.ts';
import { selectTargets, TargetSelectionError } from './targets.ts';
import { AdapterConfigError, AdapterFilesError, AdapterTensorError, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, NonFiniteAdapterError } from './adapterErrors.ts';

export interface ExportOptions {
  /** Default: the active adapter. */
  adapterName?: string;
  /** The base model's hub id or path, written as base_model_name_or_path (null when unknown). */
  baseModelNameOrPath?: string | null;
}

/** The on-disk tensor name of a module's lora_A / lora_B (the adapter name is not written). */
export function peftTensorName(path: string, which: 'A' | 'B'): string {
  return `${PEFT_PREFIX}${path}.lora_${which}.weight`;
}

/** adapter_config.json's text, as PEFT writes it: every key FORMATS.md lists, sorted, indented by 2. */
export function adapterConfigJson(config: AttachedLoraConfig, baseModelNameOrPath: string | null = null): string {
  const json: Record<string, Parameters<typeof pythonJsonDumps>[0]> = {
    alpha_pattern: {},
    base_model_name_or_path: baseModelNameOrPath,
    bias: config.bias,
    fan_in_fan_out: config.fanInFanOut,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: config.layersPattern,
    layers_to_transform: config.layersToTransform,
    lora_alpha: Number.isSafeInteger(config.alpha) ? config.alpha : new PyFloat(config.alpha),
    lora_dropout: new PyFloat(config.dropout),
    modules_to_save: null,
    peft_type: 'LORA',
    r: config.r,
    rank_pattern: {},
    target_modules: config.targetModules,
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: config.useRslora,
  };
  if (config.excludeModules !== null) json.exclude_modules = typeof config.excludeModules === 'string' ? config.excludeModules : [...config.excludeModules].sort();
  return pythonJsonDumps(json);
}

/** The two files of an adapter, by file name. Throws NonFiniteAdapterError before writing anything non-finite. */
export async function exportLoraAdapter(peft: PeftModel, options: ExportOptions = {}): Promise<Map<string, Uint8Array>> {
  const name = options.adapterName ?? peft.activeAdapter;
  if (name === null) throw new LoraConfigError('adapter_name', 'no adapter is active; name the one to export');
  const config = peft.adapterConfig(name);
  const tensors = [];
  for (const module of peft.loraModules()) {
    const adapter = module.adapters.get(name);
    if (!adapter) continue;
    for (const [which, tensor] of [['A', adapter.A], ['B', adapter.B]] as const) {
      const data = Float32Array.from((await tensor.read()) as Float32Array);
      const tensorName = peftTensorName(module.path, which);
      const bad = data.findIndex((value) => !Number.isFinite(value));
      if (bad >= 0) {
        throw new NonFiniteAdapterError(ADAPTER_WEIGHTS_FILE, `tensor ${quoteName(tensorName)} holds ${data[bad]} at element ${bad}: refusing to write a non-finite adapter`, { tensor: tensorName });
      }
      tensors.push({ name: tensorName, dtype: 'F32' as const, shape: [...tensor.shape], data });
    }
  }
  tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const text = adapterConfigJson(config, options.baseModelNameOrPath ?? null);
  return new Map([
    [ADAPTER_CONFIG_FILE, new TextEncoder().encode(text)],
    [ADAPTER_WEIGHTS_FILE, writeSafetensors(tensors, { format: 'pt' }, { fileName: ADAPTER_WEIGHTS_FILE })],
  ]);
}

export interface ImportOptions {
  /** The name the adapter gets on the model (default "default"). */
  adapterName?: string;
  /** The loaded base model's hub id or path, compared with base_model_name_or_path. */
  baseModelName?: string | null;
}

export interface ImportedAdapter {
  /** `model` itself when it was a PeftModel, else a new PeftModel around it. */
  peft: PeftModel;
  adapterName: string;
  config: ParsedAdapterConfig;
  /** Things worth telling the user that do not change the computed function (another base name, ignored keys). */
  warnings: string[];
}

/**
 * Read a PEFT LoRA adapter directory and attach it to `model` (as a new named adapter when `model` is
 * already a PeftModel). Everything is validated before any tensor is allocated.
 */
export async function importLoraAdapter(model: CausalLM, files: ModelFileProvider, options: ImportOptions = {}): Promise<ImportedAdapter> {
  const folder = files.name ?? 'the adapter folder';
  const names = await files.list();
  if (!names.includes(ADAPTER_WEIGHTS_FILE)) {
    const pickle = names.find((name) => /\.(bin|pt|pth|ckpt|pkl)$/.test(name));
    const why = pickle
      ? `has ${quoteName(pickle)} but no ${ADAPTER_WEIGHTS_FILE}: pickle files are never opened (they can run code); save the adapter with safe_serialization=True`
      : `has no ${ADAPTER_WEIGHTS_FILE}`;
    throw new AdapterFilesError(folder, why, { field: ADAPTER_WEIGHTS_FILE });
  }
  if (!names.includes(ADAPTER_CONFIG_FILE)) throw new AdapterFilesError(folder, `has no ${ADAPTER_CONFIG_FILE}`, { field: ADAPTER_CONFIG_FILE });
  const configSource = await files.open(ADAPTER_CONFIG_FILE);
  const parsed = parseAdapterConfig(await configSource.read(0, configSource.size), ADAPTER_CONFIG_FILE);
  const warnings = [...parsed.warnings];
  if (options.baseModelName && parsed.baseModelNameOrPath && options.baseModelName !== parsed.baseModelNameOrPath) {
    warnings.push(`the adapter was trained on ${quoteName(parsed.baseModelNameOrPath)}, but the loaded model is ${quoteName(options.baseModelName)}`);
  }
  const fanInFanOut = model.config.family === 'gpt2';
  if (parsed.fanInFanOut !== fanInFanOut) {
    warnings.push(`fan_in_fan_out is ${parsed.fanInFanOut} but this ${model.config.modelType} model's layers are ${fanInFanOut ? 'Conv1D' : 'nn.Linear'}; the forward pass is the same, tabtune merges by the real layout`);
  }

  // Targets and the rank against every target layer.
  const linears = model.linears();
  let paths: string[];
  try {
    paths = selectTargets(linears.paths(), model.config.modelType, parsed.lora).paths;
  } catch (error) {
    if (error instanceof TargetSelectionError) throw new AdapterConfigError(ADAPTER_CONFIG_FILE, error.message, { field: 'target_modules' });
    throw error;
  }
  for (const path of paths) {
    const module = linears.get(path);
    try {
      checkAdapterConfig(parsed.lora, path, module.inFeatures, module.outFeatures);
    } catch (error) {
      if (error instanceof LoraConfigError) throw new AdapterConfigError(ADAPTER_CONFIG_FILE, error.message, { field: error.field });
      throw error;
    }
  }

  const weights = await readAdapterTensors(files, model, new Set(paths), parsed.lora.r);
  for (const path of paths) {
    if (!weights.has(path)) {
      throw new AdapterTensorError(ADAPTER_WEIGHTS_FILE, `has no lora_A / lora_B for ${quoteName(path)}, which target_modules selects: is the adapter for another base model?`, { tensor: peftTensorName(path, 'A') });
    }
  }
  const adapterName = options.adapterName ?? 'default';
  const lora = { ...parsed.lora, bias: 'none' as const };
  let peft: PeftModel;
  if (model instanceof PeftModel) {
    model.addAdapter(adapterName, lora, { weights });
    peft = model;
  } else {
    peft = attachLora(model, lora, { adapterName, weights });
  }
  return { peft, adapterName, config: parsed, warnings };
}

/** lora_A / lora_B by module path, validated: names, modules, dtypes, shapes, pairs, finiteness. */
async function readAdapterTensors(files: ModelFileProvider, model: CausalLM, targets: ReadonlySet<string>, r: number) {
  const file = ADAPTER_WEIGHTS_FILE;
  const { tensors } = await readSafetensors(await files.open(file), file);
  const linears = model.linears();
  const halves = new Map<string, { A?: Float32Array; B?: Float32Array }>();
  for (const [name, tensor] of tensors) {
    const fail = (detail: string, ErrorClass: typeof FormatError = AdapterTensorError): never => {
      throw new ErrorClass(file, `tensor ${quoteName(name)} ${detail}`, { tensor: name });
    };
    if (name.includes('lora_magnitude_vector')) fail('is a DoRA magnitude vector: DoRA (use_dora) is not supported', AdapterConfigError);
    if (/\.lora_embedding_[AB]$/.test(name)) fail('adapts an embedding layer, which tabtune does not support');
    const match = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(name);
    if (!match) fail('is not a LoRA weight (expected base_model.model.<module>.lora_A.weight or .lora_B.weight)');
    const [, path, which] = match!;
    if (!linears.has(path)) fail(`names module ${quoteName(path)}, which this ${model.config.modelType} model has no LoRA-capable linear at`);
    if (!targets.has(path)) fail(`names module ${quoteName(path)}, which the config's target_modules / layers_to_transform do not select`);
    if (tensor.dtype === 'U8') fail('is U8; LoRA weights are F32, F16 or BF16');
    const module = linears.get(path);
    const expected = which === 'A' ? [r, module.inFeatures] : [module.outFeatures, r];
    if (tensor.shape.length !== 2 || tensor.shape[0] !== expected[0] || tensor.shape[1] !== expected[1]) {
      fail(`is [${tensor.shape.join(', ')}], expected lora_${which} [${expected.join(', ')}] (${which === 'A' ? '[r, in]' : '[out, r]'} with r = ${r})`);
    }
    const data = tensor.data as Float32Array;
    const bad = data.findIndex((value) => !Number.isFinite(value));
    if (bad >= 0) fail(`holds ${data[bad]} at element ${bad}`, NonFiniteAdapterError);
    const pair = halves.get(path) ?? {};
    pair[which as 'A' | 'B'] = data;
    halves.set(path, pair);
  }
  const weights = new Map<string, { A: Float32Array; B: Float32Array }>();
  for (const [path, { A, B }] of halves) {
    if (!A || !B) {
      const present = peftTensorName(path, A ? 'A' : 'B');
      throw new AdapterTensorError(file, `tensor ${quoteName(present)} has no ${A ? 'lora_B' : 'lora_A'} partner`, { tensor: present });
    }
    weights.set(path, { A, B });
  }
  return weights;
}
