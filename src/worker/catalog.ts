// The curated hub models known to load here: their config.json fields (the ones that decide the tensors) and how
// their model.safetensors is stored. Download sizes and memory needs are computed from these by the same code
// that checks a load (memoryEstimate.ts), not written by hand.

import { parseModelConfig, type ModelConfig } from '../models/config.ts';
import { estimateInference, storedBytes, weightBytes, type DeviceCapacity } from './memoryEstimate.ts';
import type { CatalogEntry } from './protocol.ts';

export interface CatalogModel {
  /** Hub repo id. */
  id: string;
  label: string;
  note: string;
  /** dtype of the tensors in the repository's model.safetensors. */
  storedDtype: 'F32' | 'BF16';
  /** Elements of f32 tensors the file holds besides the weights (GPT-2's causal-mask buffers). */
  extraStoredElements: (config: ModelConfig) => number;
  config: Record<string, unknown>;
}

const none = () => 0;

export const CATALOG: readonly CatalogModel[] = [
  {
    id: 'HuggingFaceTB/SmolLM2-135M-Instruct',
    label: 'SmolLM2 135M Instruct',
    note: 'Llama architecture, chat template; the quickest real model to fine-tune.',
    storedDtype: 'BF16',
    extraStoredElements: none,
    config: {
      model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3,
      vocab_size: 49152, max_position_embeddings: 8192, rope_theta: 100000, rms_norm_eps: 1e-5, tie_word_embeddings: true, torch_dtype: 'bfloat16',
    },
  },
  {
    id: 'HuggingFaceTB/SmolLM2-360M-Instruct',
    label: 'SmolLM2 360M Instruct',
    note: 'Same family, larger: better text, slower steps.',
    storedDtype: 'BF16',
    extraStoredElements: none,
    config: {
      model_type: 'llama', hidden_size: 960, intermediate_size: 2560, num_hidden_layers: 32, num_attention_heads: 15, num_key_value_heads: 5,
      vocab_size: 49152, max_position_embeddings: 8192, rope_theta: 100000, rms_norm_eps: 1e-5, tie_word_embeddings: true, torch_dtype: 'bfloat16',
    },
  },
  {
    id: 'Qwen/Qwen2.5-0.5B-Instruct',
    label: 'Qwen2.5 0.5B Instruct',
    note: 'Qwen2 architecture (q/k/v biases), multilingual, a 152k-token vocabulary.',
    storedDtype: 'BF16',
    extraStoredElements: none,
    config: {
      model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2,
      vocab_size: 151936, max_position_embeddings: 32768, rope_theta: 1000000, rms_norm_eps: 1e-6, tie_word_embeddings: true,
      use_sliding_window: false, torch_dtype: 'bfloat16',
    },
  },
  {
    id: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0',
    label: 'TinyLlama 1.1B Chat',
    note: 'Llama 2 architecture at 1.1B parameters: QLoRA territory on most GPUs.',
    storedDtype: 'BF16',
    extraStoredElements: none,
    config: {
      model_type: 'llama', hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4,
      vocab_size: 32000, max_position_embeddings: 2048, rope_theta: 10000, rms_norm_eps: 1e-5, tie_word_embeddings: false, torch_dtype: 'bfloat16',
    },
  },
  {
    id: 'openai-community/gpt2',
    label: 'GPT-2 (124M)',
    note: 'The original GPT-2 small; no chat template.',
    storedDtype: 'F32',
    // The file also stores each layer's causal mask, attn.bias [1, 1, 1024, 1024] (not parameters; not loaded).
    extraStoredElements: (config) => config.numLayers * config.maxPositions * config.maxPositions,
    config: { model_type: 'gpt2', n_embd: 768, n_head: 12, n_layer: 12, n_positions: 1024, vocab_size: 50257, activation_function: 'gelu_new' },
  },
];

/** The catalog with sizes and memory needs computed, checked against `device` when one is known. */
export function describeCatalog(device: DeviceCapacity | null): CatalogEntry[] {
  return CATALOG.map((model) => {
    const config = parseModelConfig(JSON.stringify(model.config), `${model.id}/config.json`);
    return {
      id: model.id,
      label: model.label,
      note: model.note,
      modelType: config.modelType,
      parameterCount: weightBytes(config, 'f32').parameterCount,
      downloadBytes: storedBytes(config, model.storedDtype === 'F32' ? 'F32' : 'BF16', model.extraStoredElements(config)),
      f32: estimateInference(config, 'f32', device),
      nf4: estimateInference(config, 'nf4', device),
    };
  });
}
