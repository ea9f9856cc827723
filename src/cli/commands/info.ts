// `tabtune info --model SRC [--json]`: what a checkpoint is and what it would take, from config.json and the
// safetensors headers alone (no weights read, no GPU). bytesNf4 counts the weights as QLoRA holds them on the
// GPU: each block linear weight in NF4 (packed four-bit codes, one f32 absmax per block of 64, the code table),
// everything else (embeddings, norms, biases, the output head) in f32.

import { inspectModel } from '../../models/load.ts';
import type { PlannedTensor } from '../../models/weights.ts';
import { isQuantizedLinearWeight } from '../../quant/quantizeModel.ts';
import { TABLE_LENGTH } from '../../quant/gpuQuantize.ts';
import { blockCount } from '../../quant/quantState.ts';
import { resolveModelSource } from '../modelSource.ts';
import { parseOptions, requireOption } from '../usage.ts';

/** QLoRA's block size for the absmax scales. */
const NF4_BLOCKSIZE = 64;

/** Torch's names for the safetensors float dtypes (as config.json's torch_dtype writes them). */
const DTYPE_NAMES: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', U8: 'uint8' };

/** GPU bytes of one weight in NF4 as quantizeOnGpu holds it: packed u32 words, f32 absmax per block, the code table. */
export function nf4WeightBytes(elements: number): number {
  return Math.ceil(elements / 8) * 4 + blockCount(elements, NF4_BLOCKSIZE) * 4 + TABLE_LENGTH * 4;
}

export async function infoCommand(args: string[]) {
  const options = parseOptions('info', args, { model: { type: 'string' } });
  const spec = requireOption('info', 'model', options.model);
  const files = await resolveModelSource('info', spec);
  const { config, plan } = await inspectModel(files);

  let bytesNf4 = 0;
  const parametersByDtype = new Map<string, number>();
  for (const tensor of plan.tensors) {
    const elements = tensor.entry.elementCount;
    bytesNf4 += isQuantizedLinearWeight(config, tensor.fileName) ? nf4WeightBytes(elements) : elements * 4;
    parametersByDtype.set(tensor.entry.dtype, (parametersByDtype.get(tensor.entry.dtype) ?? 0) + elements);
  }
  const json = {
    architecture: config.modelType,
    parameterCount: plan.parameterCount,
    layers: config.numLayers,
    hiddenSize: config.hiddenSize,
    heads: config.numHeads,
    kvHeads: config.numKvHeads,
    vocabSize: config.vocabSize,
    dtype: checkpointDtype(plan.tensors, parametersByDtype),
    bytesF32: plan.f32Bytes,
    bytesNf4,
  };
  const text = [
    `${files.name}: ${json.architecture}, ${json.parameterCount.toLocaleString('en-US')} parameters (${json.dtype})`,
    `  ${json.layers} layers, hidden size ${json.hiddenSize}, ${json.heads} heads (${json.kvHeads} key/value), vocabulary ${json.vocabSize}`,
    `  weights: ${mib(json.bytesF32)} in f32, ${mib(json.bytesNf4)} with NF4 linear layers`,
  ].join('\n');
  return { json, text };
}

/** The storage dtype of the weights; with several, the one holding the most parameters. */
function checkpointDtype(tensors: readonly PlannedTensor[], byDtype: Map<string, number>): string {
  if (tensors.length === 0) return 'none';
  const [dtype] = [...byDtype].sort((a, b) => b[1] - a[1])[0];
  return DTYPE_NAMES[dtype] ?? dtype.toLowerCase();
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
