// A merged model as a Hugging Face model directory: config.json, the tokenizer files, model.safetensors.
// The merge happens on the host, tensor by tensor, while the model and its adapter stay exactly as they are:
// merging in place and unmerging after would leave the f32 weights changed by rounding (W + sBA − sBA ≠ W), and
// training or generating after an export must compute what it computed before. This module gives:
//   - the tensors of the base checkpoint, under the checkpoint's own names (its WeightPlan: GPT-2 files without
//     `transformer.` keep their bare names), as F32, in the layout the checkpoint stores (GPT-2's Conv1D
//     [in, out] stays [in, out]); a LoRA-wrapped linear's weight is W + s · B A (A [r, IN], B [OUT, r], s the
//     adapter's scaling), accumulated in f64 and rounded once; a 4-bit (QLoRA) base contributes dequant(W),
//     exactly the function the adapter was trained against, and a 4-bit layer without an adapter is written
//     dequantized;
//   - config.json without `quantization_config` and with torch_dtype float32 (the weights are f32);
//   - the tokenizer and generation files copied unchanged when present.
// Bottleneck adapters have no merged form (their non-linearity cannot be folded into a weight).

import { FormatError, quoteName } from '../io/errors.ts';
import type { SafetensorsTensorInput } from '../io/safetensorsWriter.ts';
import { downloadQuantState } from '../quant/gpuQuantize.ts';
import { dequantize4bit } from '../quant/quantize.ts';
import type { ModelFileProvider } from '../models/load.ts';
import type { CausalLM } from '../models/model.ts';
import type { WeightPlan } from '../models/weights.ts';
import { DenseLinear, type Linear } from '../models/linear.ts';
import { Linear4bitModule, transpose } from './linear4bitModule.ts';
import { LoraLinear } from './loraLinear.ts';

export const MERGED_WEIGHTS_FILE = 'model.safetensors';

/** Files copied beside the weights when the base model has them. */
export const MERGED_COPIED_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'chat_template.jinja'] as const;

/** The model still holds adapters, or a planned tensor has no counterpart in it. */
export class MergedExportError extends FormatError {}

/** Progress of the read-back, one call per tensor. */
export type MergeProgress = (tensor: string, done: number, total: number) => void;

/**
 * The merged model's tensors by state-dict name, in plan order, in the checkpoint's layouts, f32. Reads the
 * model without changing anything in it.
 */
export async function mergedWeights(model: CausalLM, plan: WeightPlan, onProgress?: MergeProgress): Promise<Map<string, Float32Array>> {
  const parameters = model.parameters();
  const linearByWeight = new Map<string, Linear>();
  for (const [path, module] of model.linears().entries()) linearByWeight.set(`${path}.weight`, module);
  const storedInOut = model.config.family === 'gpt2'; // Conv1D checkpoints store [IN, OUT]
  const weights = new Map<string, Float32Array>();
  for (const [index, planned] of plan.tensors.entries()) {
    const linear = linearByWeight.get(planned.name);
    let data: Float32Array;
    if (linear !== undefined) {
      data = await mergedLinearWeight(linear, storedInOut);
    } else {
      const tensor = parameters.get(planned.name);
      if (!tensor) throw new MergedExportError(MERGED_WEIGHTS_FILE, `the model has no tensor ${quoteName(planned.name)} that the base checkpoint holds`, { tensor: planned.fileName });
      if (tensor.dtype !== 'f32') throw new MergedExportError(MERGED_WEIGHTS_FILE, `tensor ${quoteName(planned.name)} is ${tensor.dtype}, not f32`, { tensor: planned.fileName });
      data = (await tensor.read()) as Float32Array;
    }
    const elements = planned.shape.reduce((a, b) => a * b, 1);
    if (data.length !== elements) {
      throw new MergedExportError(MERGED_WEIGHTS_FILE, `tensor ${quoteName(planned.name)} has ${data.length} values, the checkpoint's [${planned.shape.join(', ')}] needs ${elements}`, { tensor: planned.fileName });
    }
    const bad = data.findIndex((value) => !Number.isFinite(value));
    if (bad >= 0) {
      throw new MergedExportError(MERGED_WEIGHTS_FILE, `tensor ${quoteName(planned.fileName)} holds ${data[bad]} at element ${bad}: refusing to write a non-finite model`, { tensor: planned.fileName });
    }
    weights.set(planned.name, data);
    onProgress?.(planned.name, index + 1, plan.tensors.length);
  }
  return weights;
}

/** A linear's weight in the checkpoint's layout ([IN, OUT] when `storedInOut`, else [OUT, IN]), its LoRA update added. */
async function mergedLinearWeight(linear: Linear, storedInOut: boolean): Promise<Float32Array> {
  const lora = linear instanceof LoraLinear ? linear : null;
  const base = lora ? lora.base : linear;
  let values: Float32Array;
  if (base instanceof DenseLinear) {
    if (base.fanInFanOut !== storedInOut) throw new MergedExportError(MERGED_WEIGHTS_FILE, `linear ${quoteName(base.path)} is not in its checkpoint's layout`, { tensor: `${base.path}.weight` });
    values = (await base.weight.read()) as Float32Array;
  } else if (base instanceof Linear4bitModule) {
    const outIn = dequantize4bit(await downloadQuantState(base.weight)); // [OUT, IN]
    values = storedInOut ? transpose(outIn, base.outFeatures, base.inFeatures) : outIn;
  } else {
    throw new MergedExportError(MERGED_WEIGHTS_FILE, `linear ${quoteName(linear.path)} is a ${base.constructor.name}, which has no weight to export`, { tensor: `${linear.path}.weight` });
  }
  // An adapter merged in place already sits in the base weight.
  const name = lora && lora.mergedAdapter === null ? lora.activeAdapter : null;
  const adapter = name === null ? undefined : lora!.adapters.get(name);
  if (adapter) {
    const A = (await adapter.A.read()) as Float32Array;
    const B = (await adapter.B.read()) as Float32Array;
    addLoraUpdate(values, A, B, adapter.scaling, adapter.r, linear.inFeatures, linear.outFeatures, storedInOut);
  }
  return values;
}

/**
 * W += s · B A in place, W [OUT, IN] (or [IN, OUT] when `inOut`), A [r, IN], B [OUT, r]; each output row's
 * update is accumulated in f64 and added with one rounding.
 */
export function addLoraUpdate(W: Float32Array, A: Float32Array, B: Float32Array, scaling: number, r: number, inFeatures: number, outFeatures: number, inOut: boolean): void {
  if (W.length !== inFeatures * outFeatures || A.length !== r * inFeatures || B.length !== outFeatures * r) {
    throw new RangeError(`LoRA update: W has ${W.length} values, A ${A.length}, B ${B.length}; expected ${inFeatures * outFeatures}, ${r * inFeatures}, ${outFeatures * r}`);
  }
  const row = new Float64Array(inFeatures);
  for (let o = 0; o < outFeatures; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const b = B[o * r + k];
      if (b === 0) continue;
      const a = k * inFeatures;
      for (let i = 0; i < inFeatures; i++) row[i] += b * A[a + i];
    }
    if (inOut) for (let i = 0; i < inFeatures; i++) W[i * outFeatures + o] += scaling * row[i];
    else for (let i = 0, w = o * inFeatures; i < inFeatures; i++) W[w + i] += scaling * row[i];
  }
}

/** The merged weights as model.safetensors' tensors: the checkpoint's file names and shapes, in plan order, F32. */
export function mergedTensors(weights: ReadonlyMap<string, Float32Array>, plan: WeightPlan): SafetensorsTensorInput[] {
  return plan.tensors.map((planned) => ({ name: planned.fileName, dtype: 'F32' as const, shape: [...planned.shape], data: weights.get(planned.name)! }));
}

/** config.json for the merged f32 model: the base's, without quantization_config, torch_dtype float32. */
export function mergedConfigJson(baseConfig: Uint8Array | string): string {
  const text = typeof baseConfig === 'string' ? baseConfig : new TextDecoder().decode(baseConfig);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new MergedExportError('config.json', `is not valid JSON (${(error as Error).message})`, { field: 'file' });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new MergedExportError('config.json', 'is not a JSON object', { field: 'file' });
  const config = { ...(json as Record<string, unknown>) };
  delete config.quantization_config;
  config.torch_dtype = 'float32';
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** The files beside the weights: config.json rewritten, the tokenizer and generation files copied when present. */
export async function mergedSideFiles(base: ModelFileProvider): Promise<Map<string, Uint8Array>> {
  const names = await base.list();
  const read = async (name: string) => {
    const source = await base.open(name);
    return source.read(0, source.size);
  };
  const files = new Map<string, Uint8Array>();
  files.set('config.json', new TextEncoder().encode(mergedConfigJson(await read('config.json'))));
  for (const name of MERGED_COPIED_FILES) if (names.includes(name)) files.set(name, await read(name));
  return files;
}
