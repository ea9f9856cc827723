// `tabtune info --model SRC [--json]`: what a checkpoint is and what it would take, from config.json and the
// safetensors headers alone (no weights read, no GPU). bytesNf4 counts the weights as QLoRA holds them on the
// GPU: each block linear weight in NF4 (packed four-bit codes, one f32 absmax per block of 64, the code table),
// everything else (embeddings, norms, biases, the output head) in f32. A pre-quantized bitsandbytes 4-bit
// checkpoint is reported as such (`quantized`: its 4-bit type): its parameters are counted at their float
// shapes, bytesF32 is what it takes dequantized, and bytesNf4 counts its 4-bit layers as above and every tensor
// stored as floats (a linear bitsandbytes skipped included) in f32, as it loads.

import { inspectBaseModel } from '../../peft/baseModel.ts';
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
  const { config, plan, prequantized } = await inspectBaseModel(files);

  let bytesNf4 = 0;
  const parametersByDtype = new Map<string, number>();
  for (const tensor of plan.tensors) {
    // A 4-bit weight's entry is its packed U8 codes; its shape is the float one.
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    const in4bit = prequantized === null ? isQuantizedLinearWeight(config, tensor.fileName) : isStored4bit(tensor);
    bytesNf4 += in4bit ? nf4WeightBytes(elements) : elements * 4;
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
    dtype: prequantized === null ? checkpointDtype(plan.tensors, parametersByDtype) : `bitsandbytes ${prequantized}`,
    bytesF32: plan.f32Bytes,
    bytesNf4,
    // Only for a pre-quantized checkpoint: a float one's summary is as it always was.
    ...(prequantized === null ? {} : { quantized: prequantized }),
  };
  const weights =
    prequantized === null
      ? `  weights: ${mib(json.bytesF32)} in f32, ${mib(json.bytesNf4)} with NF4 linear layers`
      : [
          `  weights: ${mib(json.bytesF32)} dequantized to f32, ${mib(json.bytesNf4)} as loaded with its 4-bit linear layers`,
          `  pre-quantized: linear layers stored in bitsandbytes 4-bit ${prequantized}, loaded as they are; fine-tune with QLoRA only`,
        ].join('\n');
  const text = [
    `${files.name}: ${json.architecture}, ${json.parameterCount.toLocaleString('en-US')} parameters (${json.dtype})`,
    `  ${json.layers} layers, hidden size ${json.hiddenSize}, ${json.heads} heads (${json.kvHeads} key/value), vocabulary ${json.vocabSize}`,
    weights,
  ].join('\n');
  return { json, text };
}

/** A weight of a pre-quantized checkpoint held as 4-bit codes (the plan admits no other U8 tensor). */
function isStored4bit(tensor: PlannedTensor): boolean {
  return tensor.entry.dtype === 'U8';
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
