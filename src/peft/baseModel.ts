// Any checkpoint a user points at, loaded the way its files say it is stored:
//   - floats (f32/f16/bf16): loaded as f32, or with the block linears quantized to 4-bit while they stream
//     when the caller asks for QLoRA's base (`quantize`);
//   - bitsandbytes 4-bit (config.json's `quantization_config`, or Linear4bit tensors in the files): uploaded
//     as they are, whatever was asked (a 4-bit checkpoint has no float weights to load).
// The worker and the CLI load through here; inspectBaseModel lets them check the files before they let go of
// a model already loaded.

import type { Engine } from '../engine/engine.ts';
import type { NonFiniteWarning } from '../io/safetensors.ts';
import type { ModelConfig } from '../models/config.ts';
import { inspectModel, loadModel, readConfigObject, readWeightHeaders, type LoadOptions, type ModelFileProvider } from '../models/load.ts';
import type { CausalLM } from '../models/model.ts';
import type { DeviceLimits, WeightPlan } from '../models/weights.ts';
import { findBnbLayers } from '../quant/bnbLayout.ts';
import type { QuantType } from '../quant/codebooks.ts';
import { declaresQuantization, inspectQuantizedModel, loadQuantizedModel, quantizedConfigFromJson } from './bnbCheckpoint.ts';
import { loadModelQuantized, type QuantizeLinearsOptions } from './qlora.ts';

/** How the weights are held once loaded: all f32, or the block linears in a 4-bit data type. */
export type LoadedWeights = 'f32' | QuantType;

export interface BaseModelConfig {
  config: ModelConfig;
  /** config.json declares a bitsandbytes 4-bit checkpoint (files may still turn out 4-bit without it). */
  declaresQuantization: boolean;
}

export interface InspectedBaseModel {
  config: ModelConfig;
  /** The 4-bit data type of a pre-quantized checkpoint, else null. */
  prequantized: QuantType | null;
  /** Every tensor of the checkpoint (a 4-bit weight under its float shape): what a merged export writes. */
  plan: WeightPlan;
}

export interface LoadedBaseModel extends InspectedBaseModel {
  model: CausalLM;
  weights: LoadedWeights;
  warnings: NonFiniteWarning[];
}

export interface LoadBaseModelOptions extends LoadOptions {
  /** Quantize a float checkpoint's block linears while they load (QLoRA's base); a 4-bit checkpoint ignores it. */
  quantize?: Pick<QuantizeLinearsOptions, 'quantType' | 'blocksize' | 'doubleQuant'>;
}

/** config.json alone (before any weights are fetched): the model config, a bitsandbytes 4-bit declaration accepted. */
export async function readBaseModelConfig(files: ModelFileProvider): Promise<BaseModelConfig> {
  const json = await readConfigObject(files);
  return { config: quantizedConfigFromJson(json), declaresQuantization: declaresQuantization(json) };
}

async function isPrequantized(files: ModelFileProvider): Promise<boolean> {
  if (declaresQuantization(await readConfigObject(files))) return true;
  const { headers } = await readWeightHeaders(files);
  return [...headers.values()].some((header) => findBnbLayers(header.tensors.map((entry) => entry.name)).length > 0);
}

/** Check config.json and every safetensors header against each other and `limits`; reads headers only, allocates nothing. */
export async function inspectBaseModel(files: ModelFileProvider, limits?: DeviceLimits): Promise<InspectedBaseModel> {
  if (await isPrequantized(files)) {
    const { config, plan, quantType } = await inspectQuantizedModel(files, limits);
    return { config, plan, prequantized: quantType };
  }
  const { config, plan } = await inspectModel(files, limits);
  return { config, plan, prequantized: null };
}

/** Validate, then load the checkpoint onto the GPU as its files say (see the top of this file). */
export async function loadBaseModel(engine: Engine, files: ModelFileProvider, options: LoadBaseModelOptions = {}): Promise<LoadedBaseModel> {
  if (await isPrequantized(files)) {
    const { model, config, plan, quantType, warnings } = await loadQuantizedModel(engine, files, options);
    return { model, config, plan, prequantized: quantType, weights: quantType, warnings };
  }
  if (options.quantize) {
    const { model, config, plan, quantType, warnings } = await loadModelQuantized(engine, files, { ...options, ...options.quantize });
    return { model, config, plan, prequantized: null, weights: quantType, warnings };
  }
  const { model, config, plan, warnings } = await loadModel(engine, files, options);
  return { model, config, plan, prequantized: null, weights: 'f32', warnings };
}
