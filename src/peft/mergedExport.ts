// A merged model as a Hugging Face model directory: config.json, the tokenizer files, model.safetensors.
// The model given here is a plain CausalLM whose LoRA update is already folded into its weights
// (PeftModel.mergeAndUnload()); this module turns it into the tensors and files to write:
//   - the tensors of the base checkpoint, under the checkpoint's own names (its WeightPlan: GPT-2 files without
//     `transformer.` keep their bare names), as F32, in the layout the checkpoint stores (GPT-2's Conv1D
//     [in, out] stays [in, out]); a layer still in 4 bits (a QLoRA base layer the adapter did not target) is
//     written dequantized, exactly the function the adapter was trained against;
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
import { Linear4bitModule, transpose } from './linear4bitModule.ts';
import { LoraLinear } from './loraLinear.ts';

export const MERGED_WEIGHTS_FILE = 'model.safetensors';

/** Files copied beside the weights when the base model has them. */
export const MERGED_COPIED_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'chat_template.jinja'] as const;

/** The model still holds adapters, or a planned tensor has no counterpart in it. */
export class MergedExportError extends FormatError {}

/**
 * The tensors of model.safetensors: every tensor of `plan` (the base checkpoint's, in its order) under its file
 * name, read back from the GPU as F32. Refuses a model that still has LoRA modules (merge and unload first).
 */
export async function mergedModelTensors(model: CausalLM, plan: WeightPlan): Promise<SafetensorsTensorInput[]> {
  const parameters = model.parameters();
  const quantized = new Map<string, Linear4bitModule>();
  for (const [path, module] of model.linears().entries()) {
    if (module instanceof LoraLinear) {
      throw new MergedExportError(MERGED_WEIGHTS_FILE, `linear ${quoteName(path)} still carries LoRA adapters: merge and unload them first`, { tensor: `${path}.weight` });
    }
    if (module instanceof Linear4bitModule) quantized.set(`${path}.weight`, module);
  }
  const gpt2 = model.config.family === 'gpt2';
  const tensors: SafetensorsTensorInput[] = [];
  for (const planned of plan.tensors) {
    let data: Float32Array;
    const tensor = parameters.get(planned.name);
    const fourBit = quantized.get(planned.name);
    if (tensor) {
      if (tensor.dtype !== 'f32') throw new MergedExportError(MERGED_WEIGHTS_FILE, `tensor ${quoteName(planned.name)} is ${tensor.dtype}, not f32`, { tensor: planned.fileName });
      data = Float32Array.from((await tensor.read()) as Float32Array);
    } else if (fourBit) {
      // dequant(W) is [OUT, IN]; GPT-2's Conv1D checkpoint stores [IN, OUT].
      const values = dequantize4bit(await downloadQuantState(fourBit.weight));
      data = gpt2 ? transpose(values, fourBit.outFeatures, fourBit.inFeatures) : values;
    } else {
      throw new MergedExportError(MERGED_WEIGHTS_FILE, `the model has no tensor ${quoteName(planned.name)} that the base checkpoint holds`, { tensor: planned.fileName });
    }
    const elements = planned.shape.reduce((a, b) => a * b, 1);
    if (data.length !== elements) {
      throw new MergedExportError(MERGED_WEIGHTS_FILE, `tensor ${quoteName(planned.name)} has ${data.length} values, the checkpoint's [${planned.shape.join(', ')}] needs ${elements}`, { tensor: planned.fileName });
    }
    const bad = data.findIndex((value) => !Number.isFinite(value));
    if (bad >= 0) {
      throw new MergedExportError(MERGED_WEIGHTS_FILE, `tensor ${quoteName(planned.fileName)} holds ${data[bad]} at element ${bad}: refusing to write a non-finite model`, { tensor: planned.fileName });
    }
    tensors.push({ name: planned.fileName, dtype: 'F32', shape: [...planned.shape], data });
  }
  return tensors;
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
