// ONNX export of a (merged) model for ONNX Runtime Web or transformers.js: the weights of a loaded model,
// read back from the GPU, become one self-contained .onnx file (opset 17, no KV cache) computing
// input_ids int64 [batch, sequence] → logits float [batch, sequence, vocab]. The tensors must be exactly
// those of the architecture: an adapter must be merged first, a 4-bit base dequantized.

import { quoteName } from '../io/errors.ts';
import type { ModelConfig } from '../models/config.ts';
import type { CausalLM } from '../models/model.ts';
import { expectedTensors } from '../models/weights.ts';
import { buildDecoderGraph, ONNX_OPSET, type GraphOptions } from './onnxGraph.ts';
import { encodeModel } from './onnxProto.ts';

/** IR version 8 (ONNX 1.10+), the one that goes with opset 17. */
export const ONNX_IR_VERSION = 8;

/** The weights do not form a plain model of the architecture (an unmerged adapter, a 4-bit layer, a wrong shape). */
export class OnnxExportError extends Error {
  override name = 'OnnxExportError';
}

export interface ExportOnnxOptions extends GraphOptions {
  /** Written as producer_version. */
  producerVersion?: string;
  /** Stored as metadata_props (for example the base model's name). */
  metadata?: ReadonlyMap<string, string>;
}

const SHOWN = 10;
const list = (names: readonly string[]) =>
  names.slice(0, SHOWN).map(quoteName).join(', ') + (names.length > SHOWN ? `, … (${names.length - SHOWN} more)` : '');

/** Check weights (name → element count) against the architecture: every tensor present with its size, nothing else. */
function checkWeights(config: ModelConfig, weights: ReadonlyMap<string, number>): void {
  const expected = expectedTensors(config);
  const wanted = new Set(expected.map((t) => t.name));
  const missing = expected.filter((t) => !weights.has(t.name)).map((t) => t.name);
  const unexpected = [...weights.keys()].filter((name) => !wanted.has(name));
  const problems: string[] = [];
  if (unexpected.some((name) => /\.lora_[AB]\./.test(name))) {
    problems.push(`the model carries LoRA adapter weights (${list(unexpected.filter((n) => /\.lora_[AB]\./.test(n)))}): merge the adapter before exporting`);
  } else if (unexpected.length) {
    problems.push(`${unexpected.length} unexpected tensors: ${list(unexpected)}`);
  }
  if (missing.length) {
    const quantized = missing.every((name) => name.endsWith('.weight')) && missing.some((name) => /(proj|c_attn|c_fc)\.weight$/.test(name));
    problems.push(`${missing.length} missing tensors: ${list(missing)}${quantized ? ' (a 4-bit base must be dequantized before exporting)' : ''}`);
  }
  for (const tensor of expected) {
    const actual = weights.get(tensor.name);
    const count = tensor.shape.reduce((a, b) => a * b, 1);
    if (actual !== undefined && actual !== count) problems.push(`${quoteName(tensor.name)} has ${actual} values, [${tensor.shape.join(', ')}] needs ${count}`);
  }
  if (problems.length) throw new OnnxExportError(`ONNX export of the ${config.modelType} model: ${problems.join('; ')}`);
}

/** Export host f32 weights (by state-dict name, in their stored layouts) to the bytes of a .onnx file. */
export function exportOnnxFromWeights(config: ModelConfig, weights: ReadonlyMap<string, Float32Array>, options: ExportOnnxOptions = {}): Uint8Array {
  checkWeights(config, new Map([...weights].map(([name, values]) => [name, values.length])));
  const graph = buildDecoderGraph(config, weights, options);
  const metadata = new Map(options.metadata ?? []);
  metadata.set('model_type', config.modelType);
  return encodeModel({
    irVersion: ONNX_IR_VERSION,
    opsetImports: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'tabtune',
    producerVersion: options.producerVersion ?? '0.1.0',
    docString: `${config.modelType} decoder: input_ids int64 [batch, sequence] → logits float [batch, sequence, ${config.vocabSize}]; no KV cache`,
    graph,
    metadata,
  });
}

/**
 * Read a loaded model's weights back from the GPU (model.parameters(): Hugging Face names, f32) and export
 * them. The model must be plain: merge adapters into it first.
 */
export async function exportOnnx(model: CausalLM, options: ExportOnnxOptions = {}): Promise<Uint8Array> {
  const weights = new Map<string, Float32Array>();
  const notFloat: string[] = [];
  const parameters = model.parameters();
  for (const [name, tensor] of parameters) {
    if (tensor.dtype !== 'f32') notFloat.push(`${quoteName(name)} (${tensor.dtype})`);
  }
  if (notFloat.length) {
    throw new OnnxExportError(`ONNX export: tensors that are not f32: ${notFloat.slice(0, SHOWN).join(', ')}; dequantize the model before exporting`);
  }
  checkWeights(model.config, new Map([...parameters].map(([name, tensor]) => [name, tensor.size])));
  for (const [name, tensor] of parameters) weights.set(name, (await tensor.read()) as Float32Array);
  return exportOnnxFromWeights(model.config, weights, options);
}
