// A model of a given config.json with seeded random weights, built in memory: the benchmarks train at the
// shapes of real checkpoints (SmolLM2-135M) without downloading one. Weights are uniform in ±0.035 (standard
// deviation ≈ 0.02, the Hugging Face initializer's), norms are 1.

import { bytesSource } from '../io/byteSource.ts';
import { writeSafetensors } from '../io/safetensorsWriter.ts';
import { MissingFileError, readText, type ModelFiles } from '../io/sources/types.ts';
import { parseModelConfig } from '../models/config.ts';
import { expectedTensors } from '../models/weights.ts';

const HALF_WIDTH = 0.035;

/** SmolLM2-135M's config.json fields that decide the shapes (hub id HuggingFaceTB/SmolLM2-135M). */
export const SMOLLM2_135M_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  hidden_act: 'silu',
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  tie_word_embeddings: true,
  bos_token_id: 0,
  eos_token_id: 0,
};

/** A small Llama for software adapters (SwiftShader runs ~1 GFLOP/s). */
export const TINY_LLAMA_CONFIG = {
  ...SMOLLM2_135M_CONFIG,
  vocab_size: 1024,
  hidden_size: 64,
  intermediate_size: 172,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 512,
};

/** xorshift32: fast and seeded; the statistics of a benchmark's weights do not need more. */
function uniformFill(data: Float32Array, seed: number): void {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    data[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * HALF_WIDTH;
  }
}

export function syntheticModelFiles(config: Record<string, unknown>, name: string, seed = 1): ModelFiles {
  const configText = JSON.stringify(config);
  const tensors = expectedTensors(parseModelConfig(configText)).map(({ name: tensorName, shape }, index) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (tensorName.endsWith('norm.weight')) data.fill(1);
    else uniformFill(data, seed * 7919 + index);
    return { name: tensorName, dtype: 'F32' as const, shape, data };
  });
  const files = new Map<string, Uint8Array>([
    ['config.json', new TextEncoder().encode(configText)],
    ['model.safetensors', writeSafetensors(tensors)],
  ]);
  const open = async (file: string) => {
    const bytes = files.get(file);
    if (!bytes) throw new MissingFileError(file, `not in ${name}`);
    return bytesSource(bytes);
  };
  return { name, list: async () => [...files.keys()].sort(), open, text: async (file) => readText(await open(file), file) };
}
