// Pre-quantized bitsandbytes 4-bit checkpoints: a hub "-bnb-4bit" model (its config.json carries a
// `quantization_config`), or `tabtune quantize`'s output beside the original config.json. Their Linear4bit
// layers (weight codes, absmax, quant_map, nested_*, quant_state) are uploaded as they are, never
// re-quantized; linears stored as floats (modules bitsandbytes skipped) and every other tensor load as f32.
// inspectQuantizedModel checks everything before anything is allocated on the GPU — the config, the headers, and
// each layer's quant state (its JSON and small tensors, read; the packed codes only by length) — so a damaged
// checkpoint never replaces a loaded model; loadQuantizedModel then uploads.

import type { Engine } from '../engine/engine.ts';
import type { Tensor } from '../engine/tensor.ts';
import { FormatError, quoteName } from '../io/errors.ts';
import { readTensor, readTensorBytes, type ByteSource, type NonFiniteWarning, type SafetensorsEntry, type SafetensorsHeader } from '../io/safetensors.ts';
import type { JsonObject } from '../io/strictJson.ts';
import { configFromJson, type ModelConfig } from '../models/config.ts';
import { CONFIG_FILE, readConfigObject, readWeightHeaders, type LoadOptions, type ModelFileProvider } from '../models/load.ts';
import { expectedTensors, planWeights, type DeviceLimits, type PlannedTensor, type WeightPlan } from '../models/weights.ts';
import { findBnbLayers, quantStateFromBnbTensors, type TensorRecord } from '../quant/bnbLayout.ts';
import { isQuantType, type QuantType } from '../quant/codebooks.ts';
import { uploadQuantState, type QuantizedWeight } from '../quant/gpuQuantize.ts';
import { isQuantizedLinearWeight } from '../quant/quantizeModel.ts';
import { expectShape, QuantStateError, type QuantState } from '../quant/quantState.ts';
import { buildWithQuantizedLinears, type LoadedQuantizedModel } from './qlora.ts';

/** A pre-quantized checkpoint that cannot be loaded; names the file and the field or tensor. */
export class QuantizedCheckpointError extends FormatError {}

/** One 4-bit layer of the checkpoint. */
interface BnbLayerPlan {
  /** Its tensors' common prefix in the files ("model.layers.0.mlp.up_proj."). */
  prefix: string;
  /** The file holding its packed weight (the files, when it has none). */
  file: string;
  /** The state-dict name of its weight (GPT-2 with `transformer.`), and its module path. */
  name: string;
  path: string;
  /** [OUT, IN]: bitsandbytes stores every linear so, GPT-2's Conv1D included. */
  outIn: [number, number];
  quantType: QuantType;
  /** Its bitsandbytes tensors: name → the file and header holding it. */
  tensors: Map<string, { file: string; header: SafetensorsHeader }>;
  /** Bytes stored in the files. */
  bytes: number;
}

export interface InspectedQuantizedModel {
  config: ModelConfig;
  /** The float tensors, in streaming order (what is read as f32). */
  floats: WeightPlan;
  /** Every tensor, the 4-bit weights with their float shapes in the checkpoint's layout (what a merged export writes). */
  plan: WeightPlan;
  layers: BnbLayerPlan[];
  quantType: QuantType;
  headers: Map<string, SafetensorsHeader>;
  sources: Map<string, ByteSource>;
}

/** Whether a config.json object declares a quantized checkpoint (any `quantization_config` that is not null). */
export function declaresQuantization(json: JsonObject): boolean {
  const value = json.get('quantization_config');
  return value !== undefined && value !== null;
}

/**
 * The model config of a checkpoint's config.json object, a bitsandbytes 4-bit `quantization_config` checked
 * and set aside; any other quantization method is refused, naming the field.
 */
export function quantizedConfigFromJson(json: JsonObject): ModelConfig {
  if (!declaresQuantization(json)) return configFromJson(json, CONFIG_FILE);
  checkQuantizationConfig(json.get('quantization_config'));
  const rest = new Map(json);
  rest.delete('quantization_config');
  return configFromJson(rest as JsonObject, CONFIG_FILE);
}

function checkQuantizationConfig(value: unknown): void {
  const fail = (field: string, detail: string): never => {
    throw new QuantizedCheckpointError(CONFIG_FILE, `quantization_config${field ? `.${field}` : ''} ${detail}`, { field: `quantization_config${field ? `.${field}` : ''}` });
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

/**
 * Read config.json and the safetensors headers, find the 4-bit layers, match every tensor against the config and
 * `limits`, and check each layer's quant state (readLayerState without the codes). Allocates nothing on the GPU.
 */
export async function inspectQuantizedModel(files: ModelFileProvider, limits?: DeviceLimits): Promise<InspectedQuantizedModel> {
  const json = await readConfigObject(files);
  const config = quantizedConfigFromJson(json);
  const { headers, sources } = await readWeightHeaders(files);
  const located = new Map<string, { file: string; header: SafetensorsHeader }>();
  for (const [file, header] of headers) for (const entry of header.tensors) located.set(entry.name, { file, header });

  // GPT-2 files may lack the `transformer.` prefix the state dict binds.
  const gpt2Bare = config.family === 'gpt2' && ![...located.keys()].some((name) => name.startsWith('transformer.'));
  const stateName = (fileName: string) => (gpt2Bare ? `transformer.${fileName}` : fileName);
  const linearShapes = new Map(expectedTensors(config).filter((t) => isQuantizedLinearWeight(config, t.name)).map((t) => [t.name, t.shape]));
  const layers = findBnbLayers(located.keys()).map(({ prefix, quantType }): BnbLayerPlan => {
    const weightName = `${prefix}weight`;
    const file = located.get(weightName)?.file ?? [...headers.keys()].join(', ');
    const name = stateName(weightName);
    const shape = linearShapes.get(name);
    if (!shape) throw new QuantizedCheckpointError(file, `4-bit layer ${quoteName(weightName)} is not a linear weight of this ${config.modelType} model`, { tensor: weightName });
    if (!isQuantType(quantType)) throw new QuantizedCheckpointError(file, `4-bit layer ${quoteName(weightName)} is quantized as ${quoteName(quantType)}, not nf4 or fp4`, { tensor: weightName });
    const tensors = new Map([...located].filter(([tensor]) => tensor.startsWith(weightName)));
    const bytes = [...tensors].reduce((sum, [tensor, { header }]) => sum + header.byName.get(tensor)!.byteLength, 0);
    // GPT-2's Conv1D is stored [IN, OUT]; bitsandbytes quantized it as a Linear, [OUT, IN].
    const outIn: [number, number] = config.family === 'gpt2' ? [shape[1], shape[0]] : [shape[0], shape[1]];
    return { prefix, file, name, path: name.slice(0, -'.weight'.length), outIn, quantType, tensors, bytes };
  });
  if (layers.length === 0) {
    throw new QuantizedCheckpointError([...headers.keys()].join(', '), `holds no bitsandbytes 4-bit layer (no weight.quant_state.bitsandbytes__* tensor)${declaresQuantization(json) ? ', yet config.json declares a quantization_config' : '; load it as a float model'}`, { field: 'tensors' });
  }
  const quantTypes = new Set(layers.map((layer) => layer.quantType));
  if (quantTypes.size > 1) throw new QuantizedCheckpointError([...headers.keys()].join(', '), `mixes 4-bit data types (${[...quantTypes].join(', ')}); tabtune loads one per checkpoint`, { field: 'tensors' });

  const isLayerTensor = (name: string) => layers.some(({ prefix }) => name.startsWith(`${prefix}weight`));
  const filtered = new Map([...headers].map(([file, header]) => [file, withoutTensors(header, isLayerTensor)]));
  const floats = planWeights(config, filtered, limits, { external: new Set(layers.map((layer) => layer.name)) });
  for (const layer of layers) await readLayerState(layer, sources, false);
  return { config, floats, plan: wholePlan(config, floats, layers), layers, quantType: layers[0].quantType, headers, sources };
}

/** The float plan with each 4-bit weight added under its float shape (the checkpoint's layout: GPT-2 [IN, OUT]). */
function wholePlan(config: ModelConfig, floats: WeightPlan, layers: readonly BnbLayerPlan[]): WeightPlan {
  const quantized: PlannedTensor[] = layers.map((layer) => {
    const fileName = `${layer.prefix}weight`;
    const { file, header } = layer.tensors.get(fileName)!;
    const shape = config.family === 'gpt2' ? [layer.outIn[1], layer.outIn[0]] : [...layer.outIn];
    const entry: SafetensorsEntry = header.byName.get(fileName)!;
    return { name: layer.name, fileName, file, entry, shape };
  });
  const elements = layers.reduce((sum, layer) => sum + layer.outIn[0] * layer.outIn[1], 0);
  return {
    tensors: [...floats.tensors, ...quantized],
    ignored: floats.ignored,
    f32Bytes: floats.f32Bytes + 4 * elements,
    parameterCount: floats.parameterCount + elements,
  };
}

/**
 * Load a bitsandbytes 4-bit checkpoint: everything is checked first (inspectQuantizedModel), then the float
 * tensors stream as f32 and the layers are read and uploaded one at a time (one layer's bytes on the host at a
 * time); an error (a file changed meanwhile) or an abort frees everything already uploaded.
 */
export async function loadQuantizedModel(engine: Engine, files: ModelFileProvider, options: LoadOptions = {}): Promise<LoadedQuantizedModel> {
  const { config, floats, plan, layers, quantType, headers, sources } = await inspectQuantizedModel(files, engine.gpu.info.limits);
  const weights = new Map<string, Tensor>();
  const allocated: { dispose(): void }[] = [];
  const warnings: NonFiniteWarning[] = [];
  // Progress in bytes uploaded: f32 for float tensors, the stored bytes for 4-bit layers.
  const total = floats.tensors.length + layers.length;
  const totalBytes = floats.f32Bytes + layers.reduce((sum, layer) => sum + layer.bytes, 0);
  let bytes = 0;
  let done = 0;
  const progress = (tensor: string, added: number) => options.onProgress?.({ tensor, loaded: ++done, total, bytes: (bytes += added), totalBytes });
  try {
    for (const planned of floats.tensors) {
      options.signal?.throwIfAborted();
      const loaded = await readTensor(sources.get(planned.file)!, headers.get(planned.file)!, planned.fileName);
      if (loaded.dtype === 'U8') throw new QuantizedCheckpointError(planned.file, `tensor ${quoteName(planned.fileName)} is U8 but not part of a 4-bit layer`, { tensor: planned.fileName });
      if (loaded.warning) warnings.push(loaded.warning);
      const tensor = engine.keep(engine.tensor(loaded.data, planned.shape, { name: planned.name, category: 'frozenWeights' }));
      allocated.push(tensor);
      weights.set(planned.name, tensor);
      progress(planned.name, planned.entry.elementCount * 4);
    }
    const quantized = new Map<string, QuantizedWeight>();
    for (const layer of layers) {
      options.signal?.throwIfAborted();
      const weight = uploadQuantState(engine, layer.name, await readLayerState(layer, sources, true));
      allocated.push(weight);
      quantized.set(layer.path, weight);
      progress(layer.name, layer.bytes);
    }
    options.signal?.throwIfAborted();
    const model = await buildWithQuantizedLinears(engine, config, weights, quantized, allocated);
    return { model, config, plan, quantized: [...quantized.keys()], quantType, warnings };
  } catch (error) {
    for (const item of allocated) item.dispose();
    throw error;
  }
}

/**
 * One layer's quant state from its bitsandbytes tensors, checked against the [OUT, IN] the model needs. Checking
 * (`withCodes` false) reads everything but the packed codes, which stand in by their length (the header vouches
 * for it); loading reads them too. A bad state is a typed error naming the file and the layer.
 */
async function readLayerState(layer: BnbLayerPlan, sources: ReadonlyMap<string, ByteSource>, withCodes: boolean): Promise<QuantState> {
  const packedName = `${layer.prefix}weight`;
  const records = new Map<string, TensorRecord>();
  for (const [name, { header, file }] of layer.tensors) {
    const entry = header.byName.get(name)!;
    const bytes = name === packedName && !withCodes ? new Uint8Array(entry.byteLength) : await readTensorBytes(sources.get(file)!, header, name);
    records.set(name, { dtype: entry.dtype, shape: [...entry.shape], bytes });
  }
  try {
    const state = quantStateFromBnbTensors(layer.prefix, records);
    expectShape(packedName, state, layer.outIn);
    return state;
  } catch (error) {
    if (!(error instanceof QuantStateError)) throw error;
    throw new QuantizedCheckpointError(layer.file, error.message, { tensor: packedName }, { cause: error });
  }
}

function withoutTensors(header: SafetensorsHeader, drop: (name: string) => boolean): SafetensorsHeader {
  const tensors = header.tensors.filter((entry) => !drop(entry.name));
  return { ...header, tensors, byName: new Map(tensors.map((entry) => [entry.name, entry])) };
}
