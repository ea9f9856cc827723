// Memory a model needs on the GPU, computed from its config before anything is downloaded or allocated, and
// checked against what the device offers. The weights are exact (the tensors the config calls for, each rounded
// up to the buffer pool's bucket); the KV cache is exact for the context it is sized for; activations are an
// estimate of the largest temporaries of one prompt pass. Letters: C hidden size, I MLP width, V vocabulary,
// P prompt tokens, S cached positions.

import { bucketSize } from '../gpu/bufferPool.ts';
import type { ModelConfig } from '../models/config.ts';
import { expectedTensors } from '../models/weights.ts';
import { isQuantizedLinearWeight } from '../quant/quantizeModel.ts';
import { blockCount, NESTED_BLOCKSIZE } from '../quant/quantState.ts';
import { TABLE_LENGTH } from '../quant/gpuQuantize.ts';
import type { MemoryEstimate, WeightStorage } from './protocol.ts';

/** Positions the playground's KV cache holds at most (prompt + new tokens), and the longest prompt it plans for. */
export const GENERATION_CONTEXT = 1024;
export const PLANNED_PROMPT_TOKENS = 512;

/** QLoRA's storage: NF4 codes in blocks of 64 with double-quantized absmax (bitsandbytes' defaults for QLoRA). */
export const NF4_BLOCKSIZE = 64;

export interface DeviceCapacity {
  maxBindingBytes: number;
  maxBufferBytes: number;
  memoryBudgetBytes: number | null;
}

const MiB = 2 ** 20;

/** The buffers of one NF4 weight of n elements (logical sizes): packed codes, 8-bit absmax codes, f32 second-level absmax, tables. */
export function nf4WeightParts(elements: number, blocksize = NF4_BLOCKSIZE): { packed: number; absmaxCodes: number; absmax2: number; tables: number } {
  const blocks = blockCount(elements, blocksize);
  return {
    packed: Math.ceil(elements / 8) * 4,
    absmaxCodes: Math.max(1, Math.ceil(blocks / 4)) * 4,
    absmax2: Math.ceil(blocks / NESTED_BLOCKSIZE) * 4,
    tables: TABLE_LENGTH * 4,
  };
}

/** GPU bytes of one NF4 weight, each buffer rounded up to the pool's bucket. */
export function nf4WeightBytes(elements: number, blocksize = NF4_BLOCKSIZE): number {
  return Object.values(nf4WeightParts(elements, blocksize)).reduce((sum, bytes) => sum + bucketSize(bytes), 0);
}

export interface WeightBytes {
  parameterCount: number;
  /** GPU bytes in the given storage, with buffer-pool rounding. */
  gpuBytes: number;
  largest: { name: string; bytes: number };
}

export function weightBytes(config: ModelConfig, storage: WeightStorage): WeightBytes {
  let parameterCount = 0;
  let gpuBytes = 0;
  let largest = { name: '', bytes: 0 };
  for (const tensor of expectedTensors(config)) {
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    parameterCount += elements;
    const f32Bytes = elements * 4;
    gpuBytes += storage === 'nf4' && isQuantizedLinearWeight(config, tensor.name) ? nf4WeightBytes(elements) : bucketSize(f32Bytes);
    // The binding limit applies to the f32 tensor as read from the file (quantization happens after upload).
    if (f32Bytes > largest.bytes) largest = { name: tensor.name, bytes: f32Bytes };
  }
  return { parameterCount, gpuBytes, largest };
}

/** Bytes a checkpoint file of this config takes when stored in `dtype` (plus any extra stored tensors). */
export function storedBytes(config: ModelConfig, dtype: 'F32' | 'BF16' | 'F16', extraElementsF32 = 0): number {
  const perElement = dtype === 'F32' ? 4 : 2;
  const parameters = expectedTensors(config).reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
  return parameters * perElement + extraElementsF32 * 4;
}

function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/** Memory to run the model for generation (the playground): weights, a KV cache, the temporaries of one prompt pass. */
export function estimateInference(config: ModelConfig, storage: WeightStorage, device: DeviceCapacity | null): MemoryEstimate {
  const weights = weightBytes(config, storage);
  const S = Math.min(config.maxPositions, GENERATION_CONTEXT);
  const P = Math.min(S, PLANNED_PROMPT_TOKENS);
  const C = config.hiddenSize;
  const I = config.intermediateSize;
  const kvBytes = config.numLayers * 2 * S * config.numKvHeads * config.headDim * 4;
  // One block at a time: the residual and its norm, q/k/v and the attention output (≤ 4C), the MLP's
  // gate, up and their product (3I); then one row of logits (the head runs on the last position only).
  const activationBytes = P * (2 * C + 4 * C + 3 * I) * 4 + config.vocabSize * 4;
  const parts = [
    { label: storage === 'f32' ? 'weights (f32)' : 'weights (linear layers NF4, the rest f32)', bytes: weights.gpuBytes },
    { label: `KV cache (${S} positions)`, bytes: kvBytes },
    { label: `activations (a ${P}-token prompt, estimated)`, bytes: activationBytes },
  ];
  const totalBytes = parts.reduce((sum, part) => sum + part.bytes, 0);
  let refusal: string | null = null;
  let refusalOverridable = false;
  if (device) {
    if (weights.largest.bytes > device.maxBindingBytes) {
      refusal =
        `tensor ${weights.largest.name} needs ${formatBytes(weights.largest.bytes)} in one buffer, but this device allows at most ` +
        `${formatBytes(device.maxBindingBytes)} per buffer (maxStorageBufferBindingSize); no setting here can change that`;
    } else if (bucketSize(weights.largest.bytes) > device.maxBufferBytes) {
      refusal = `tensor ${weights.largest.name} needs a ${formatBytes(bucketSize(weights.largest.bytes))} buffer, over the device's maxBufferSize of ${formatBytes(device.maxBufferBytes)}`;
    } else if (device.memoryBudgetBytes !== null && totalBytes > device.memoryBudgetBytes) {
      refusal =
        `it needs about ${formatBytes(totalBytes)}, more than the ${formatBytes(device.memoryBudgetBytes)} this device is assumed to have ` +
        `(WebGPU does not report GPU memory; the browser reports ${formatBytes(device.memoryBudgetBytes)} of device memory)` +
        (storage === 'f32' ? '; a smaller model fits better' : '');
      refusalOverridable = true;
    }
  }
  return {
    purpose: `generation with ${storage === 'f32' ? 'f32 weights' : 'NF4 linear layers'}, a ${S}-position KV cache`,
    parts,
    totalBytes,
    largestTensor: weights.largest,
    maxBindingBytes: device?.maxBindingBytes ?? 0,
    memoryBudgetBytes: device?.memoryBudgetBytes ?? null,
    refusal,
    refusalOverridable,
  };
}
