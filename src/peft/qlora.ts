// QLoRA's base: a causal LM whose block linears are frozen 4-bit (NF4 / FP4, optionally double-quantized)
// Linear4bitModules, in bitsandbytes' layout. Three ways in:
//   - loadModelQuantized: stream an f32/f16/bf16 checkpoint, quantizing each linear weight on the GPU as
//     it is read, so the whole f32 model is never held (at most one linear weight in f32 at a time);
//   - quantizeLinears: convert a loaded f32 model on the GPU, layer by layer, freeing each f32 weight
//     as soon as its 4-bit copy exists;
//   (both transpose GPT-2's Conv1D [IN, OUT] weights to [OUT, IN] first, as bitsandbytes stores them)
//   - loadQuantizedModel: load a pre-quantized bitsandbytes checkpoint (a hub one, or what
//     `tabtune quantize` writes) without re-quantizing: the codes and scales are uploaded as they are.
// The output head and every other tensor stay f32, as in bitsandbytes.

import type { Engine } from '../engine/engine.ts';
import type { Tensor } from '../engine/tensor.ts';
import { FormatError, quoteName } from '../io/errors.ts';
import { readTensor, readTensorBytes, type ByteSource, type NonFiniteWarning, type SafetensorsHeader } from '../io/safetensors.ts';
import { decodeUtf8Strict, describeJson, parseStrictJson, StrictJsonError, type JsonObject } from '../io/strictJson.ts';
import { configFromJson, type ModelConfig } from '../models/config.ts';
import { Gpt2Model } from '../models/gpt2.ts';
import { DenseLinear } from '../models/linear.ts';
import { LlamaModel } from '../models/llama.ts';
import { CONFIG_FILE, inspectModel, readWeightHeaders, type LoadOptions, type ModelFileProvider } from '../models/load.ts';
import type { CausalLM } from '../models/model.ts';
import { expectedTensors, planWeights, type WeightPlan } from '../models/weights.ts';
import { findBnbLayers, quantStateFromBnbTensors, type TensorRecord } from '../quant/bnbLayout.ts';
import type { QuantType } from '../quant/codebooks.ts';
import { quantizeOnGpu, uploadQuantState, type QuantizedWeight } from '../quant/gpuQuantize.ts';
import { isQuantizedLinearWeight } from '../quant/quantizeModel.ts';
import { expectShape } from '../quant/quantState.ts';
import { Linear4bitModule, transpose } from './linear4bitModule.ts';
import { LoraLinear } from './loraLinear.ts';

export interface QuantizeLinearsOptions {
  quantType?: QuantType;
  /** Default 64 (bitsandbytes' default). */
  blocksize?: number;
  doubleQuant?: boolean;
  /** The modules to convert; default every linear of the blocks. */
  paths?: readonly string[];
  onProgress?: (progress: { path: string; done: number; total: number }) => void;
}

/** A pre-quantized checkpoint that cannot be loaded; names the file and the field or tensor. */
export class QuantizedCheckpointError extends FormatError {}

/**
 * Replace the model's dense linears by 4-bit ones, quantized on the GPU one at a time; each f32 weight is
 * freed once its replacement exists, so the peak is one layer above the final size. Attach LoRA after.
 */
export async function quantizeLinears(model: CausalLM, options: QuantizeLinearsOptions = {}): Promise<string[]> {
  const engine = model.engine;
  const linears = model.linears();
  const paths = options.paths ?? linears.paths();
  for (const path of paths) {
    const module = linears.get(path);
    if (module instanceof LoraLinear) throw new Error(`quantizeLinears: ${path} is LoRA-adapted; quantize the base before attaching LoRA`);
    if (!(module instanceof DenseLinear) && !(module instanceof Linear4bitModule)) {
      throw new Error(`quantizeLinears: ${path} is a ${module.constructor.name}, not a dense linear`);
    }
  }
  const done: string[] = [];
  for (const path of paths) {
    const module = linears.get(path);
    if (module instanceof DenseLinear) {
      const quantized = await quantizeDense(engine, module, options);
      const old = linears.replace(path, () => new Linear4bitModule(path, quantized, module.bias)) as DenseLinear;
      old.weight.dispose(); // the bias moved into the 4-bit module
      done.push(path);
    }
    options.onProgress?.({ path, done: done.length, total: paths.length });
  }
  return done;
}

type QuantOptions = Pick<QuantizeLinearsOptions, 'quantType' | 'blocksize' | 'doubleQuant'>;

async function quantizeDense(engine: Engine, module: DenseLinear, options: QuantOptions): Promise<QuantizedWeight> {
  const quantOptions = quantOptionsFor(`${module.path}.weight`, options);
  if (!module.fanInFanOut) return quantizeOnGpu(engine, module.weight, quantOptions);
  // [IN, OUT] → [OUT, IN] on the host (one layer at a time), then quantized on the GPU.
  const values = (await module.weight.read()) as Float32Array;
  return quantizeHostWeight(engine, transpose(values, module.inFeatures, module.outFeatures), [module.outFeatures, module.inFeatures], quantOptions);
}

function quantOptionsFor(name: string, options: QuantOptions) {
  return { quantType: options.quantType ?? 'nf4', blocksize: options.blocksize ?? 64, doubleQuant: options.doubleQuant ?? false, name };
}

/** Upload f32 `values` [OUT, IN] and quantize them on the GPU; the f32 copy is freed before this resolves. */
function quantizeHostWeight(engine: Engine, values: Float32Array, outIn: readonly [number, number], options: ReturnType<typeof quantOptionsFor>): Promise<QuantizedWeight> {
  return engine.scope(async () => {
    const weight = engine.tensor(values, outIn, { name: options.name, category: 'frozenWeights' });
    return quantizeOnGpu(engine, weight, options);
  });
}

export interface LoadQuantizedOptions extends LoadOptions, QuantOptions {}

/**
 * Load an f32/f16/bf16 checkpoint (what loadModel takes) as a QLoRA base, quantizing while it streams:
 * each block linear weight is read, uploaded as f32, quantized on the GPU (GPT-2's Conv1D transposed to
 * [OUT, IN] first) and its f32 copy freed before the next tensor is read; every other tensor loads as
 * f32. The codes equal those of loadModel + quantizeLinears. Progress counts f32 bytes read; an error or
 * an abort frees everything already uploaded.
 */
export async function loadModelQuantized(engine: Engine, files: ModelFileProvider, options: LoadQuantizedOptions = {}): Promise<LoadedQuantizedModel> {
  const { config, plan, headers, sources } = await inspectModel(files, engine.gpu.info.limits);
  const weights = new Map<string, Tensor>();
  const quantized = new Map<string, QuantizedWeight>();
  const allocated: { dispose(): void }[] = [];
  const warnings: NonFiniteWarning[] = [];
  try {
    let bytes = 0;
    for (const [index, planned] of plan.tensors.entries()) {
      options.signal?.throwIfAborted();
      const loaded = await readTensor(sources.get(planned.file)!, headers.get(planned.file)!, planned.fileName);
      if (loaded.dtype === 'U8') throw new Error(`unreachable: the plan admits float tensors only (${planned.fileName})`);
      if (loaded.warning) warnings.push(loaded.warning);
      if (isQuantizedLinearWeight(config, planned.name)) {
        const [rows, cols] = planned.shape;
        const values = loaded.data as Float32Array;
        const weight = config.family === 'gpt2'
          ? await quantizeHostWeight(engine, transpose(values, rows, cols), [cols, rows], quantOptionsFor(planned.name, options))
          : await quantizeHostWeight(engine, values, [rows, cols], quantOptionsFor(planned.name, options));
        allocated.push(weight);
        quantized.set(planned.name.slice(0, -'.weight'.length), weight);
      } else {
        const tensor = engine.keep(engine.tensor(loaded.data, planned.shape, { name: planned.name, category: 'frozenWeights' }));
        allocated.push(tensor);
        weights.set(planned.name, tensor);
      }
      bytes += planned.entry.elementCount * 4;
      options.onProgress?.({ tensor: planned.name, loaded: index + 1, total: plan.tensors.length, bytes, totalBytes: plan.f32Bytes });
    }
    options.signal?.throwIfAborted();
    const model = await buildWithQuantizedLinears(engine, config, weights, quantized, allocated);
    return { model, config, plan, quantized: [...quantized.keys()], warnings };
  } catch (error) {
    for (const item of allocated) item.dispose();
    throw error;
  }
}

/**
 * Build the architecture from f32 `weights` (state-dict name → tensor; the model takes them) and swap
 * in 4-bit modules for the `quantized` linears (module path → weight, taken too). The constructors build
 * dense linears from `${path}.weight`, so those get shape-only stand-ins: views of one 4-byte buffer,
 * never bound to a kernel, released by the swap. Everything it allocates is added to `allocated`.
 */
async function buildWithQuantizedLinears(
  engine: Engine,
  config: ModelConfig,
  weights: Map<string, Tensor>,
  quantized: ReadonlyMap<string, QuantizedWeight>,
  allocated: { dispose(): void }[],
): Promise<CausalLM> {
  const shapes = new Map(expectedTensors(config).map((t) => [t.name, t.shape]));
  const standIn = engine.keep(engine.empty([1]));
  allocated.push(standIn);
  for (const path of quantized.keys()) {
    const view = standIn.view(shapes.get(`${path}.weight`)!);
    allocated.push(view); // released by the swap below; disposing it again is a no-op
    weights.set(`${path}.weight`, view);
  }
  await engine.gpu.sync();
  const model = config.family === 'gpt2' ? new Gpt2Model(engine, config, weights) : new LlamaModel(engine, config, weights);
  for (const [path, weight] of quantized) {
    const old = model.linears().replace(path, (current) => new Linear4bitModule(path, weight, (current as DenseLinear).bias)) as DenseLinear;
    old.weight.dispose();
  }
  standIn.dispose();
  return model;
}

export interface LoadedQuantizedModel {
  model: CausalLM;
  config: ModelConfig;
  /** The tensors read: for loadQuantizedModel everything but the 4-bit layers; for loadModelQuantized all (linears quantized on the way). */
  plan: WeightPlan;
  /** Module paths of the 4-bit linears. */
  quantized: string[];
  warnings: NonFiniteWarning[];
}

/**
 * Load a bitsandbytes 4-bit checkpoint: config.json (with or without `quantization_config`) and
 * safetensors holding Linear4bit layers (weight, absmax, quant_map, nested_*, quant_state). Linears
 * stored as floats (modules bitsandbytes skipped) load as dense layers. The config, names and shapes are
 * checked before anything is allocated; each layer's quant state is parsed as it is uploaded (one layer's
 * bytes on the host at a time), and an error then frees everything already uploaded.
 */
export async function loadQuantizedModel(engine: Engine, files: ModelFileProvider, options: LoadOptions = {}): Promise<LoadedQuantizedModel> {
  const config = await readQuantizedConfig(files);
  const { headers, sources } = await readWeightHeaders(files);
  const located = new Map<string, { file: string; header: SafetensorsHeader }>();
  for (const [file, header] of headers) for (const entry of header.tensors) located.set(entry.name, { file, header });

  // File prefix of each 4-bit layer → the state-dict name of its weight and the [OUT, IN] it must have.
  const gpt2Bare = config.family === 'gpt2' && ![...located.keys()].some((name) => name.startsWith('transformer.'));
  const stateName = (fileName: string) => (gpt2Bare ? `transformer.${fileName}` : fileName);
  const linearShapes = new Map(expectedTensors(config).filter((t) => isQuantizedLinearWeight(config, t.name)).map((t) => [t.name, t.shape]));
  const layers = findBnbLayers(located.keys()).map(({ prefix }) => {
    const name = stateName(`${prefix}weight`);
    const shape = linearShapes.get(name);
    if (!shape) throw new QuantizedCheckpointError(located.get(`${prefix}weight`)?.file ?? 'the weights', `4-bit layer ${quoteName(`${prefix}weight`)} is not a linear weight of this ${config.modelType} model`, { tensor: `${prefix}weight` });
    // GPT-2's Conv1D is stored [IN, OUT]; bitsandbytes quantized it as a Linear, [OUT, IN].
    const outIn = config.family === 'gpt2' ? [shape[1], shape[0]] : [...shape];
    return { prefix, name, path: name.slice(0, -'.weight'.length), outIn };
  });
  if (layers.length === 0) {
    throw new QuantizedCheckpointError([...headers.keys()].join(', '), 'holds no bitsandbytes 4-bit layer (no weight.quant_state.bitsandbytes__* tensor); load it with loadModel', { field: 'tensors' });
  }
  const isLayerTensor = (name: string) => layers.some(({ prefix }) => name.startsWith(`${prefix}weight`));
  const filtered = new Map([...headers].map(([file, header]) => [file, withoutTensors(header, isLayerTensor)]));
  const plan = planWeights(config, filtered, engine.gpu.info.limits, { external: new Set(layers.map((l) => l.name)) });

  const weights = new Map<string, Tensor>();
  const allocated: { dispose(): void }[] = [];
  const warnings: NonFiniteWarning[] = [];
  // Progress in bytes uploaded: f32 for float tensors, the stored bytes for 4-bit layers.
  const layerBytes = (prefix: string) => [...located].filter(([name]) => name.startsWith(`${prefix}weight`)).reduce((sum, [name, { header }]) => sum + header.byName.get(name)!.byteLength, 0);
  const total = plan.tensors.length + layers.length;
  const totalBytes = plan.f32Bytes + layers.reduce((sum, layer) => sum + layerBytes(layer.prefix), 0);
  let bytes = 0;
  let done = 0;
  const progress = (tensor: string, added: number) => options.onProgress?.({ tensor, loaded: ++done, total, bytes: (bytes += added), totalBytes });
  try {
    for (const planned of plan.tensors) {
      options.signal?.throwIfAborted();
      const loaded = await readTensor(sources.get(planned.file)!, headers.get(planned.file)!, planned.fileName);
      if (loaded.dtype === 'U8') throw new QuantizedCheckpointError(planned.file, `tensor ${quoteName(planned.fileName)} is U8 but not part of a 4-bit layer`, { tensor: planned.fileName });
      if (loaded.warning) warnings.push(loaded.warning);
      const tensor = engine.keep(engine.tensor(loaded.data, planned.shape, { name: planned.name, category: 'frozenWeights' }));
      allocated.push(tensor);
      weights.set(planned.name, tensor);
      progress(planned.name, planned.entry.elementCount * 4);
    }
    // One layer's bitsandbytes tensors at a time: read, parsed (typed errors name the layer), uploaded.
    const quantized = new Map<string, QuantizedWeight>();
    for (const layer of layers) {
      options.signal?.throwIfAborted();
      const records = new Map<string, TensorRecord>();
      for (const [name, { header, file }] of located) {
        if (!name.startsWith(`${layer.prefix}weight`)) continue;
        const entry = header.byName.get(name)!;
        records.set(name, { dtype: entry.dtype, shape: [...entry.shape], bytes: await readTensorBytes(sources.get(file)!, header, name) });
      }
      const state = quantStateFromBnbTensors(layer.prefix, records);
      expectShape(`${layer.prefix}weight`, state, layer.outIn);
      const weight = uploadQuantState(engine, layer.name, state);
      allocated.push(weight);
      quantized.set(layer.path, weight);
      progress(layer.name, layerBytes(layer.prefix));
    }
    const model = await buildWithQuantizedLinears(engine, config, weights, quantized, allocated);
    return { model, config, plan, quantized: [...quantized.keys()], warnings };
  } catch (error) {
    for (const item of allocated) item.dispose();
    throw error;
  }
}

/** config.json, accepting a bitsandbytes 4-bit `quantization_config` (checked, then set aside). */
export async function readQuantizedConfig(files: ModelFileProvider): Promise<ModelConfig> {
  const folder = files.name ?? 'the model folder';
  if (!(await files.list()).includes(CONFIG_FILE)) throw new QuantizedCheckpointError(folder, `has no ${CONFIG_FILE}`, { field: CONFIG_FILE });
  const source: ByteSource = await files.open(CONFIG_FILE);
  let text = decodeUtf8Strict(await source.read(0, source.size));
  if (text === null) throw new QuantizedCheckpointError(CONFIG_FILE, 'is not valid UTF-8', { field: 'file' });
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let json;
  try {
    json = parseStrictJson(text);
  } catch (error) {
    if (!(error instanceof StrictJsonError)) throw error;
    throw new QuantizedCheckpointError(CONFIG_FILE, `is not valid JSON: ${error.message}`, { field: 'file' });
  }
  if (!(json instanceof Map)) throw new QuantizedCheckpointError(CONFIG_FILE, `must hold a JSON object, not ${describeJson(json)}`, { field: 'file' });
  const quantization = json.get('quantization_config');
  if (quantization !== undefined && quantization !== null) {
    checkQuantizationConfig(quantization);
    json = new Map(json);
    json.delete('quantization_config');
  }
  return configFromJson(json as JsonObject, CONFIG_FILE);
}

function checkQuantizationConfig(value: unknown): void {
  const fail = (field: string, detail: string): never => {
    throw new QuantizedCheckpointError(CONFIG_FILE, `quantization_config.${field} ${detail}`, { field: `quantization_config.${field}` });
  };
  if (!(value instanceof Map)) fail('', 'must be an object');
  const q = value as JsonObject;
  const method = q.get('quant_method');
  if (method !== undefined && method !== 'bitsandbytes') fail('quant_method', `is ${JSON.stringify(method)}; only bitsandbytes 4-bit checkpoints load`);
  if (q.get('load_in_8bit') === true) fail('load_in_8bit', 'is true: 8-bit bitsandbytes checkpoints are not supported (only 4-bit)');
  if (q.get('load_in_4bit') !== true) fail('load_in_4bit', 'must be true');
  const quantType = q.get('bnb_4bit_quant_type');
  if (quantType !== undefined && quantType !== 'nf4' && quantType !== 'fp4') fail('bnb_4bit_quant_type', `is ${JSON.stringify(quantType)}, not "nf4" or "fp4"`);
}

function withoutTensors(header: SafetensorsHeader, drop: (name: string) => boolean): SafetensorsHeader {
  const tensors = header.tensors.filter((entry) => !drop(entry.name));
  return { ...header, tensors, byName: new Map(tensors.map((entry) => [entry.name, entry])) };
}
