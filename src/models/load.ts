// Loading a checkpoint in the hub layout (config.json + model.safetensors, or a sharded
// model.safetensors.index.json) onto the GPU. Everything is validated first — config, safetensors
// headers, shard index, tensor names, shapes, dtypes, device limits — so a bad checkpoint allocates
// nothing. Then tensors stream one at a time: read, widened to f32 (F16/BF16), uploaded, dropped;
// the host never holds more than one tensor.

import type { Engine } from '../engine/engine.ts';
import { FileReadError, quoteName, ShardIndexError } from '../io/errors.ts';
import { readSafetensorsHeader, readTensor, type ByteSource, type NonFiniteWarning, type SafetensorsHeader } from '../io/safetensors.ts';
import { checkShardHeaders, parseShardIndex, SHARD_INDEX_FILE, shardNameProblem } from '../io/shardIndex.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { JsonObject } from '../io/strictJson.ts';
import { configFromJson, parseConfigObject, type ModelConfig } from './config.ts';
import { Gpt2Model } from './gpt2.ts';
import { LlamaModel } from './llama.ts';
import type { CausalLM } from './model.ts';
import { planWeights, type DeviceLimits, type WeightPlan } from './weights.ts';

/** A model's folder: io/sources' ModelFiles (a directory, picked files, a hub repository) fits this. */
export interface ModelFileProvider {
  readonly name?: string;
  list(): Promise<readonly string[]> | readonly string[];
  open(name: string): Promise<ByteSource> | ByteSource;
}

/** No usable weights or config in the folder. */
export class ModelFilesError extends FileReadError {}

export const CONFIG_FILE = 'config.json';
export const SINGLE_FILE = 'model.safetensors';

export interface LoadProgress {
  /** State-dict name of the tensor just uploaded. */
  tensor: string;
  /** 1-based count of tensors uploaded so far, and how many there are. */
  loaded: number;
  total: number;
  /** f32 bytes uploaded so far, and in all. */
  bytes: number;
  totalBytes: number;
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

export interface LoadedModel {
  model: CausalLM;
  config: ModelConfig;
  plan: WeightPlan;
  /** Tensors holding NaN or ±Inf (they load; the caller reports them). */
  warnings: NonFiniteWarning[];
}

/** What a folder holds, validated without touching the GPU (the CLI's `info`, and the first half of a load). */
export interface InspectedModel {
  config: ModelConfig;
  plan: WeightPlan;
  /** weight file name → header, in streaming order. */
  headers: Map<string, SafetensorsHeader>;
  sources: Map<string, ByteSource>;
}

export async function readModelConfig(files: ModelFileProvider): Promise<ModelConfig> {
  return configFromJson(await readConfigObject(files), CONFIG_FILE);
}

/** config.json as a JSON object (valid UTF-8 and JSON, within the size limit), its fields not yet read. */
export async function readConfigObject(files: ModelFileProvider): Promise<JsonObject> {
  const names = await files.list();
  if (!names.includes(CONFIG_FILE)) throw new ModelFilesError(folderName(files), `has no ${CONFIG_FILE}`, { field: CONFIG_FILE });
  const source = await files.open(CONFIG_FILE);
  const bytes = await source.read(0, source.size);
  if (bytes.byteLength !== source.size) throw new FileReadError(CONFIG_FILE, 'was cut short while reading', { field: 'file' });
  return parseConfigObject(bytes, CONFIG_FILE);
}

/**
 * Read and check config.json and every safetensors header (and the shard index), and match the tensors
 * against the config and `limits`. Reads headers only.
 */
export async function inspectModel(files: ModelFileProvider, limits?: DeviceLimits): Promise<InspectedModel> {
  const config = await readModelConfig(files);
  const { headers, sources } = await readWeightHeaders(files);
  const plan = planWeights(config, headers, limits);
  return { config, plan, headers, sources };
}

/**
 * The safetensors headers of a folder's weights (model.safetensors, or the shards of
 * model.safetensors.index.json, checked against the index), in streaming order. Reads headers only;
 * a folder with only pickle files is refused without opening them.
 */
export async function readWeightHeaders(files: ModelFileProvider): Promise<Pick<InspectedModel, 'headers' | 'sources'>> {
  const names = await files.list();
  const folder = folderName(files);
  const headers = new Map<string, SafetensorsHeader>();
  const sources = new Map<string, ByteSource>();
  const addFile = async (name: string) => {
    const source = await files.open(name);
    sources.set(name, source);
    headers.set(name, await readSafetensorsHeader(source, name));
  };

  if (names.includes(SINGLE_FILE)) {
    await addFile(SINGLE_FILE);
  } else if (names.includes(SHARD_INDEX_FILE)) {
    const indexSource = await files.open(SHARD_INDEX_FILE);
    const index = parseShardIndex(await indexSource.read(0, indexSource.size), SHARD_INDEX_FILE);
    for (const shard of index.shards) {
      const problem = shardNameProblem(shard);
      if (problem !== null) throw new ShardIndexError(SHARD_INDEX_FILE, `shard name ${quoteName(shard)} ${problem}`, { field: 'weight_map' });
      if (!names.includes(shard)) throw new ShardIndexError(SHARD_INDEX_FILE, `shard ${quoteName(shard)} named in weight_map is missing`, { field: 'weight_map' });
    }
    for (const shard of index.shards) await addFile(shard);
    checkShardHeaders(index, headers);
  } else {
    const pickle = names.find((name) => name.endsWith('.bin') || name.endsWith('.pt') || name.endsWith('.pth'));
    const why = pickle
      ? `has ${quoteName(pickle)} but no ${SINGLE_FILE} or ${SHARD_INDEX_FILE}: PyTorch pickle files are never loaded; use the safetensors version of the model`
      : `has no ${SINGLE_FILE} or ${SHARD_INDEX_FILE}`;
    throw new ModelFilesError(folder, why, { field: 'weights' });
  }
  return { headers, sources };
}

/** Validate, then stream the weights to the GPU and build the model. */
export async function loadModel(engine: Engine, files: ModelFileProvider, options: LoadOptions = {}): Promise<LoadedModel> {
  const { config, plan, headers, sources } = await inspectModel(files, engine.gpu.info.limits);
  const weights = new Map<string, Tensor>();
  const allocated: Tensor[] = []; // the model's constructor moves tensors out of `weights`
  const warnings: NonFiniteWarning[] = [];
  try {
    let bytes = 0;
    for (const [index, planned] of plan.tensors.entries()) {
      options.signal?.throwIfAborted();
      const loaded = await readTensor(sources.get(planned.file)!, headers.get(planned.file)!, planned.fileName);
      if (loaded.dtype === 'U8') throw new Error(`unreachable: the plan admits float tensors only (${planned.fileName})`);
      if (loaded.warning) warnings.push(loaded.warning);
      const tensor = engine.keep(engine.tensor(loaded.data, planned.shape, { name: planned.name, category: 'frozenWeights' }));
      allocated.push(tensor);
      weights.set(planned.name, tensor);
      bytes += planned.entry.elementCount * 4;
      options.onProgress?.({ tensor: planned.name, loaded: index + 1, total: plan.tensors.length, bytes, totalBytes: plan.f32Bytes });
    }
    await engine.gpu.sync();
    const model = config.family === 'gpt2' ? new Gpt2Model(engine, config, weights) : new LlamaModel(engine, config, weights);
    return { model, config, plan, warnings };
  } catch (error) {
    for (const tensor of allocated) tensor.dispose();
    throw error;
  }
}

function folderName(files: ModelFileProvider): string {
  return files.name ?? 'the model folder';
}
