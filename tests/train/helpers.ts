// Helpers for the GPU training tests: tiny fixture models with some of their own tensors made trainable, and
// synthetic token examples with a learnable pattern.

import type { Engine } from '../../src/engine/engine.ts';
import type { Tensor } from '../../src/engine/tensor.ts';
import { writeSafetensors } from '../../src/io/safetensorsWriter.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { loadModel } from '../../src/models/load.ts';
import { expectedTensors } from '../../src/models/weights.ts';
import type { CausalLM } from '../../src/models/model.ts';
import type { TokenizedExample } from '../../src/train/data.ts';
import type { TrainableModel, TrainingState } from '../../src/train/trainer.ts';
import { rng } from '../helpers/numeric.ts';
import { memoryProvider } from '../models/helpers.ts';

export interface TestModel extends TrainableModel {
  /** The states the trainer passed, in order. */
  readonly states: TrainingState[];
}

/** Make the named tensors (or all, or a predicate's choice) trainable and attach trainableParameters(). */
export function makeTrainable(model: CausalLM, which: 'all' | readonly string[] | ((name: string) => boolean)): TestModel {
  const chosen: Tensor[] = [];
  for (const [name, tensor] of model.parameters()) {
    const take = which === 'all' ? true : typeof which === 'function' ? which(name) : which.includes(name);
    if (take) {
      tensor.requiresGrad = true;
      chosen.push(tensor);
    }
  }
  if (chosen.length === 0) throw new Error('makeTrainable: nothing chosen');
  const states: TrainingState[] = [];
  return Object.assign(model, {
    states,
    trainableParameters: () => chosen,
    setTrainingState: (state: TrainingState) => void states.push(state),
  });
}

/**
 * Examples of arithmetic progressions modulo V (start and stride random, stride in {1, 2, 3}), 4 to maxLength
 * tokens. Every `maskedEvery`-th example has its first half masked (like a prompt), so rows differ in how many
 * labels count.
 */
export function progressions(count: number, V: number, maxLength: number, seed: number, maskedEvery = 3): TokenizedExample[] {
  const random = rng(seed);
  return Array.from({ length: count }, (_, i) => {
    const length = 4 + Math.floor(random() * (maxLength - 3));
    const start = Math.floor(random() * V);
    const stride = 1 + Math.floor(random() * 3);
    const ids = Int32Array.from({ length }, (_, k) => (start + k * stride) % V);
    const targets = Uint8Array.from({ length }, (_, k) => (k === 0 || (i % maskedEvery === 0 && k < length / 2) ? 0 : 1));
    return { line: i + 1, ids, targets };
  });
}

/**
 * A tiny Llama built in memory (1 layer, hidden 16, vocabulary 32 by default) with seeded random weights: fewer
 * kernels per step than the fixtures, so the training tests stay quick on a software GPU.
 */
export async function tinyLlama(
  engine: Engine,
  options: { vocab?: number; hidden?: number; layers?: number; seed?: number; maxPositions?: number; tie?: boolean } = {},
): Promise<CausalLM> {
  const { vocab = 32, hidden = 16, layers = 1, seed = 11, maxPositions = 64, tie = false } = options;
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: 2 * hidden,
    num_hidden_layers: layers,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    hidden_act: 'silu',
    max_position_embeddings: maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    tie_word_embeddings: tie,
    bos_token_id: 1,
    eos_token_id: 2,
  };
  const parsed = parseModelConfig(JSON.stringify(config));
  const random = rng(seed);
  const tensors = expectedTensors(parsed).map(({ name, shape }) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const isNorm = name.endsWith('norm.weight');
    const data = Float32Array.from({ length: size }, () => (isNorm ? 1 : (random() * 2 - 1) * 0.3));
    return { name, dtype: 'F32' as const, shape, data };
  });
  const files = new Map<string, Uint8Array>([
    ['config.json', new TextEncoder().encode(JSON.stringify(config))],
    ['model.safetensors', writeSafetensors(tensors)],
  ]);
  const { model } = await loadModel(engine, memoryProvider(files, 'tiny llama'));
  return model;
}
