import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { quoteName } from '../../src/io/errors.ts';
import { ConfigError, parseModelConfig, type LlamaConfig } from '../../src/models/config.ts';
import { rotaryInverseFrequencies } from '../../src/models/llama.ts';
import { expectClose } from '../helpers/numeric.ts';
import { FIXTURES } from './helpers.ts';

const fixtureConfig = (name: string) => readFileSync(new URL(`${name}/config.json`, FIXTURES), 'utf8');

// Shapes of real hub configs (the fields that matter; values as published).
const GPT2_HUB = {
  activation_function: 'gelu_new', architectures: ['GPT2LMHeadModel'], attn_pdrop: 0.1, bos_token_id: 50256, embd_pdrop: 0.1,
  eos_token_id: 50256, initializer_range: 0.02, layer_norm_epsilon: 1e-5, model_type: 'gpt2', n_ctx: 1024, n_embd: 768,
  n_head: 12, n_layer: 12, n_positions: 1024, resid_pdrop: 0.1, summary_type: 'cls_index', vocab_size: 50257,
};
const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, bos_token_id: 0, eos_token_id: 0, hidden_act: 'silu', hidden_size: 576,
  initializer_range: 0.041666666666666664, intermediate_size: 1536, max_position_embeddings: 8192, mlp_bias: false, model_type: 'llama',
  num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_scaling: null,
  rope_theta: 100000, tie_word_embeddings: true, torch_dtype: 'bfloat16', vocab_size: 49152,
};
const TINYLLAMA = {
  architectures: ['LlamaForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02,
  intermediate_size: 5632, max_position_embeddings: 2048, model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 22,
  num_key_value_heads: 4, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_scaling: null, tie_word_embeddings: false, torch_dtype: 'bfloat16',
  vocab_size: 32000,
};
const QWEN25_05B = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643, hidden_act: 'silu', hidden_size: 896,
  intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 24, model_type: 'qwen2', num_attention_heads: 14,
  num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true,
  torch_dtype: 'bfloat16', use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const LLAMA32_1B = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], head_dim: 64,
  hidden_act: 'silu', hidden_size: 2048, intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false, model_type: 'llama',
  num_attention_heads: 32, num_hidden_layers: 16, num_key_value_heads: 8, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', vocab_size: 128256,
};
const MISTRAL_7B = {
  architectures: ['MistralForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096, intermediate_size: 14336,
  max_position_embeddings: 32768, model_type: 'mistral', num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8,
  rms_norm_eps: 1e-5, rope_theta: 10000.0, sliding_window: 4096, tie_word_embeddings: false, torch_dtype: 'bfloat16', vocab_size: 32000,
};

const parse = (config: object) => parseModelConfig(JSON.stringify(config));

function expectConfigError(config: object | string, field: string, says: RegExp): ConfigError {
  let caught: unknown;
  try {
    parseModelConfig(typeof config === 'string' ? config : JSON.stringify(config));
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a ConfigError for ${field}`).toBeInstanceOf(ConfigError);
  const error = caught as ConfigError;
  expect(error.file).toBe('config.json');
  expect(error.field).toBe(field);
  expect(error.message.startsWith(`${quoteName('config.json')}: `)).toBe(true);
  expect(error.message).toMatch(says);
  return error;
}

describe('config.json of the tiny fixtures', () => {
  it('GPT-2: sizes, n_inner, tied head by default', () => {
    const config = parseModelConfig(fixtureConfig('gpt2'));
    expect(config).toMatchObject({
      family: 'gpt2', modelType: 'gpt2', vocabSize: 97, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 4, headDim: 8,
      intermediateSize: 48, maxPositions: 64, tieWordEmbeddings: true, layerNormEps: 1e-5, eosTokenIds: [96], dtype: 'float16',
    });
    // n_inner null → 4 · n_embd
    expect(parseModelConfig(fixtureConfig('gpt2-noprefix-sharded')).intermediateSize).toBe(128);
  });

  it('Llama, Qwen2 and llama3 variants', () => {
    const llama = parseModelConfig(fixtureConfig('llama')) as LlamaConfig;
    expect(llama).toMatchObject({ family: 'llama', numKvHeads: 2, headDim: 8, tieWordEmbeddings: false, qkvBias: false, oBias: false, mlpBias: false });
    expect(llama.rope).toEqual({ theta: 10000, scaling: { type: 'default' } });
    const qwen = parseModelConfig(fixtureConfig('qwen2')) as LlamaConfig;
    expect(qwen).toMatchObject({ modelType: 'qwen2', qkvBias: true, oBias: false, tieWordEmbeddings: true, eosTokenIds: [2, 3], slidingWindow: null });
    expect(qwen.rope.theta).toBe(1e6);
    const llama3 = parseModelConfig(fixtureConfig('llama3')) as LlamaConfig;
    expect(llama3).toMatchObject({ headDim: 16, numKvHeads: 1, mlpBias: true });
    expect(llama3.rope.scaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 });
  });
});

describe('config.json of real hub models', () => {
  it('parses GPT-2, SmolLM2, TinyLlama, Qwen2.5, Llama 3.2 and Mistral', () => {
    expect(parse(GPT2_HUB)).toMatchObject({ headDim: 64, intermediateSize: 3072, tieWordEmbeddings: true, bosTokenId: 50256 });
    expect(parse(SMOLLM2_135M)).toMatchObject({ headDim: 64, numKvHeads: 3, tieWordEmbeddings: true, bosTokenId: 0 });
    expect(parse(TINYLLAMA)).toMatchObject({ headDim: 64, numKvHeads: 4, tieWordEmbeddings: false });
    expect(parse(QWEN25_05B)).toMatchObject({ headDim: 64, qkvBias: true, slidingWindow: null, tieWordEmbeddings: true });
    expect(parse(LLAMA32_1B)).toMatchObject({ headDim: 64, eosTokenIds: [128001, 128008, 128009], maxPositions: 131072 });
    expect(parse(MISTRAL_7B)).toMatchObject({ modelType: 'mistral', slidingWindow: 4096, qkvBias: false, headDim: 128 });
  });

  it('reads rope_parameters (newer files) like rope_theta + rope_scaling (legacy)', () => {
    const { rope_scaling, rope_theta, ...rest } = LLAMA32_1B;
    const newer = parse({ ...rest, rope_parameters: { ...rope_scaling, rope_theta } }) as LlamaConfig;
    const legacy = parse(LLAMA32_1B) as LlamaConfig;
    expect(newer.rope).toEqual(legacy.rope);
    expect(legacy.rope).toEqual({ theta: 500000, scaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } });
    // legacy `type` spelling and linear scaling
    const linear = parse({ ...TINYLLAMA, rope_scaling: { type: 'linear', factor: 4.0 } }) as LlamaConfig;
    expect(linear.rope.scaling).toEqual({ type: 'linear', factor: 4 });
    const defaultType = parse({ ...rest, rope_parameters: { rope_type: 'default', rope_theta: 1e4 } }) as LlamaConfig;
    expect(defaultType.rope).toEqual({ theta: 10000, scaling: { type: 'default' } });
  });

  it('rotary frequencies: llama3 and linear scaling match the Python reference (make_tiny_models.py)', () => {
    // rope_inverse_frequencies() of the fixture script for Llama 3.2's rope (D = 64) and linear factor 4 (D = 8).
    const llama3 = [
      1.0, 0.6636012377, 0.4403666027, 0.2922278226, 0.1939227447, 0.1286873734, 0.08539710029, 0.05666962145, 0.03760603093, 0.02495540867,
      0.01656044008, 0.01098952853, 0.007292664737, 0.004839421346, 0.003211445995, 0.001290547928, 0.0004295567966, 9.708287803e-5,
      1.946163818e-5, 1.291476719e-5, 8.57025549e-6, 5.68723215e-6, 3.774054294e-6, 2.504467101e-6, 1.661967468e-6, 1.102883669e-6,
      7.318749675e-7, 4.856731343e-7, 3.22293293e-7, 2.138742282e-7, 1.419272025e-7, 9.418306725e-8,
    ];
    const actual = rotaryInverseFrequencies((parse(LLAMA32_1B) as LlamaConfig).rope, 64);
    // Element by element (the values span eight decades).
    for (let i = 0; i < 32; i++) expect(Math.abs(actual[i] - llama3[i]) / llama3[i]).toBeLessThan(2e-7);
    const linear = rotaryInverseFrequencies({ theta: 10000, scaling: { type: 'linear', factor: 4 } }, 8);
    expectClose(linear, [0.25, 0.025, 0.0025, 0.00025], 1e-7, 'linear');
  });
});

describe('bad config.json: ConfigError naming the file and the field', () => {
  const cases: [string, object | string, string, RegExp][] = [
    ['a size given as a string', { ...TINYLLAMA, hidden_size: '2048' }, 'hidden_size', /must be a number, got a string \("2048"\)/],
    ['a missing size', (({ num_hidden_layers: _, ...rest }) => rest)(TINYLLAMA), 'num_hidden_layers', /is missing/],
    ['a null size', { ...TINYLLAMA, vocab_size: null }, 'vocab_size', /is null/],
    ['zero', { ...TINYLLAMA, vocab_size: 0 }, 'vocab_size', /must be positive/],
    ['negative', { ...GPT2_HUB, n_layer: -2 }, 'n_layer', /must be positive/],
    ['fractional', { ...GPT2_HUB, n_layer: 2.5 }, 'n_layer', /must be an integer/],
    ['huge', { ...TINYLLAMA, hidden_size: 1e12 }, 'hidden_size', /larger than/],
    ['heads not dividing the hidden size', { ...TINYLLAMA, num_attention_heads: 28 }, 'num_attention_heads', /does not divide hidden_size/],
    ['kv heads not dividing heads', { ...TINYLLAMA, num_key_value_heads: 5 }, 'num_key_value_heads', /does not divide num_attention_heads/],
    ['GPT-2 heads not dividing n_embd', { ...GPT2_HUB, n_head: 7 }, 'n_head', /does not divide n_embd/],
    ['an unknown model_type', { ...TINYLLAMA, model_type: 'bert' }, 'model_type', /"bert", which tabtune does not support/],
    ['no model_type', (({ model_type: _, ...rest }) => rest)(TINYLLAMA), 'model_type', /is missing/],
    ['yarn', { ...TINYLLAMA, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'rope_scaling.rope_type', /"yarn", which tabtune does not support/],
    ['dynamic (legacy key)', { ...TINYLLAMA, rope_scaling: { type: 'dynamic', factor: 2 } }, 'rope_scaling.type', /"dynamic"/],
    ['an unknown rope type', { ...TINYLLAMA, rope_parameters: { rope_type: 'wobbly', rope_theta: 1e4 } }, 'rope_parameters.rope_type', /unknown rope type/],
    ['llama3 without low_freq_factor', { ...LLAMA32_1B, rope_scaling: { rope_type: 'llama3', factor: 32, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, 'rope_scaling.low_freq_factor', /is missing/],
    ['llama3 with high ≤ low', { ...LLAMA32_1B, rope_scaling: { ...LLAMA32_1B.rope_scaling, high_freq_factor: 1 } }, 'rope_scaling.high_freq_factor', /must be larger/],
    ['a negative rope_theta', { ...TINYLLAMA, rope_theta: -1 }, 'rope_theta', /must be positive/],
    ['partial rotary', { ...TINYLLAMA, partial_rotary_factor: 0.5 }, 'partial_rotary_factor', /not supported/],
    ['a head dim above the kernel limit', { ...TINYLLAMA, head_dim: 256 }, 'head_dim', /at most 128/],
    ['an odd head dim', { ...TINYLLAMA, head_dim: 15 }, 'head_dim', /odd head dim/],
    ['a non-silu Llama', { ...TINYLLAMA, hidden_act: 'gelu' }, 'hidden_act', /"gelu"/],
    ['a GPT-2 activation other than tanh GELU', { ...GPT2_HUB, activation_function: 'relu' }, 'activation_function', /"relu"/],
    ['a token id that is not a number', { ...LLAMA32_1B, eos_token_id: [128001, 'x'] }, 'eos_token_id[1]', /must be a number/],
    ['a negative token id', { ...TINYLLAMA, bos_token_id: -1 }, 'bos_token_id', /non-negative/],
    ['a boolean given as a string', { ...TINYLLAMA, tie_word_embeddings: 'true' }, 'tie_word_embeddings', /true or false/],
    ['an epsilon of 2', { ...TINYLLAMA, rms_norm_eps: 2 }, 'rms_norm_eps', /below 1/],
    ['a pre-quantized checkpoint', { ...TINYLLAMA, quantization_config: { quant_method: 'bitsandbytes' } }, 'quantization_config', /pre-quantized/],
    ['rope_scaling that is not an object', { ...TINYLLAMA, rope_scaling: 4 }, 'rope_scaling', /must be an object/],
    ['not JSON', '{"model_type": "llama",', 'file', /not valid JSON/],
    ['a duplicate key', '{"model_type": "llama", "model_type": "gpt2"}', 'model_type', /not valid JSON/],
    ['a JSON array', '[1, 2]', 'file', /must hold a JSON object/],
  ];
  for (const [what, config, field, says] of cases) {
    it(what, () => {
      const error = expectConfigError(config, field, says);
      if (field !== 'file') expect(error.message).toContain(quoteName(field));
    });
  }

  it('refuses bytes that are not UTF-8', () => {
    expect(() => parseModelConfig(new Uint8Array([0x7b, 0xff, 0x7d]))).toThrow(ConfigError);
  });

  it('treats __proto__ as data', () => {
    const config = parseModelConfig(`{"__proto__": {"polluted": 1}, ${JSON.stringify(TINYLLAMA).slice(1)}`);
    expect(config.hiddenSize).toBe(2048);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
