// config.json (transformers) → a typed, validated ModelConfig for the architectures tabtune runs:
// GPT-2 (`gpt2`) and the Llama family (`llama`, also SmolLM/SmolLM2/TinyLlama; `mistral`; `qwen2`).
// Every problem is a ConfigError naming the file and the field; nothing here touches the GPU.
// RoPE comes from the legacy `rope_theta` + `rope_scaling` fields or the newer `rope_parameters`.

import { JsonFields, parseJsonObjectFile } from '../io/jsonFields.ts';
import { FormatError, quoteName } from '../io/errors.ts';
import type { JsonObject, JsonValue } from '../io/strictJson.ts';
import { MAX_ATTENTION_HEAD_DIM } from '../engine/ops/attention.ts';

/** A config.json that is malformed, inconsistent, or describes a model tabtune does not run. */
export class ConfigError extends FormatError {}

export type ModelType = 'gpt2' | 'llama' | 'mistral' | 'qwen2';
export const SUPPORTED_MODEL_TYPES: readonly ModelType[] = ['gpt2', 'llama', 'mistral', 'qwen2'];

/** Rotary frequency scaling: none, linear (positions / factor), or Llama 3.1's smooth low-frequency scaling. */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface RopeConfig {
  theta: number;
  scaling: RopeScaling;
}

interface BaseConfig {
  /** The file the config came from, for messages. */
  readonly file: string;
  readonly modelType: ModelType;
  /** V */
  readonly vocabSize: number;
  /** C */
  readonly hiddenSize: number;
  readonly numLayers: number;
  /** H */
  readonly numHeads: number;
  /** KVH (= H for GPT-2) */
  readonly numKvHeads: number;
  /** D */
  readonly headDim: number;
  /** Width of the MLP's hidden layer. */
  readonly intermediateSize: number;
  readonly maxPositions: number;
  readonly tieWordEmbeddings: boolean;
  readonly bosTokenId: number | null;
  /** eos_token_id may be one id or a list. */
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | null;
  /** torch_dtype / dtype as written (the checkpoint's storage dtype), or null. */
  readonly dtype: string | null;
}

export interface Gpt2Config extends BaseConfig {
  readonly family: 'gpt2';
  readonly layerNormEps: number;
  /** Divide scores by sqrt(D) (scale_attn_weights, default true). */
  readonly scaleAttnWeights: boolean;
  /** Also divide scores of layer i by i + 1 (scale_attn_by_inverse_layer_idx). */
  readonly scaleAttnByInverseLayerIdx: boolean;
}

export interface LlamaConfig extends BaseConfig {
  readonly family: 'llama';
  readonly rmsNormEps: number;
  readonly rope: RopeConfig;
  /** Biases on q/k/v (Qwen2 always; Llama with attention_bias). */
  readonly qkvBias: boolean;
  /** Bias on o_proj (Llama with attention_bias). */
  readonly oBias: boolean;
  /** Biases on gate/up/down (Llama with mlp_bias). */
  readonly mlpBias: boolean;
  /** Keys further back than this are masked (Mistral's sliding_window, Qwen2 with use_sliding_window); null: none. */
  readonly slidingWindow: number | null;
}

export type ModelConfig = Gpt2Config | LlamaConfig;

/** Sizes beyond these are refused as implausible (a typo or a hostile file), long before any allocation. */
export const CONFIG_LIMITS = {
  vocabSize: 1 << 22,
  hiddenSize: 1 << 16,
  intermediateSize: 1 << 18,
  numLayers: 1024,
  numHeads: 1024,
  maxPositions: 1 << 24,
} as const;

const CONFIG_MAX_BYTES = 4 * 1024 * 1024;

/** Parse config.json bytes or text. */
export function parseModelConfig(input: string | Uint8Array, file = 'config.json'): ModelConfig {
  return configFromJson(parseConfigObject(input, file), file);
}

/** config.json bytes or text as a JSON object, before its fields are read. */
export function parseConfigObject(input: string | Uint8Array, file = 'config.json'): JsonObject {
  return parseJsonObjectFile(input, file, CONFIG_MAX_BYTES, ConfigError);
}

export function configFromJson(json: JsonObject, file = 'config.json'): ModelConfig {
  const fields = new Fields(file, json, '', ConfigError);
  const modelType = fields.string('model_type');
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    fields.fail('model_type', `is ${quoteName(modelType)}, which tabtune does not support (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  if (json.has('quantization_config') && json.get('quantization_config') !== null) {
    fields.fail('quantization_config', 'is present: a pre-quantized checkpoint loads as a 4-bit base (peft/baseModel.ts), not as a float model');
  }
  return modelType === 'gpt2' ? gpt2Config(fields) : llamaConfig(fields, modelType as Exclude<ModelType, 'gpt2'>);
}

function commonIds(fields: Fields) {
  const eos = fields.raw('eos_token_id');
  let eosTokenIds: number[] = [];
  if (Array.isArray(eos)) eosTokenIds = eos.map((_, i) => fields.tokenIdAt('eos_token_id', eos, i));
  else if (eos !== undefined && eos !== null) eosTokenIds = [fields.tokenId('eos_token_id')!];
  return {
    bosTokenId: fields.tokenId('bos_token_id'),
    eosTokenIds,
    padTokenId: fields.tokenId('pad_token_id'),
    dtype: fields.optionalString('torch_dtype') ?? fields.optionalString('dtype'),
  };
}

function gpt2Config(fields: Fields): Gpt2Config {
  const hiddenSize = fields.size('n_embd', CONFIG_LIMITS.hiddenSize);
  const numHeads = fields.size('n_head', CONFIG_LIMITS.numHeads);
  if (hiddenSize % numHeads !== 0) fields.fail('n_head', `(${numHeads}) does not divide n_embd (${hiddenSize})`);
  const headDim = hiddenSize / numHeads;
  checkHeadDim(fields, 'n_head', headDim, false);
  const activation = fields.optionalString('activation_function') ?? 'gelu_new';
  if (activation !== 'gelu_new' && activation !== 'gelu_pytorch_tanh') {
    fields.fail('activation_function', `is ${quoteName(activation)}; tabtune's GPT-2 supports the tanh GELU (gelu_new, gelu_pytorch_tanh)`);
  }
  if (fields.bool('add_cross_attention', false)) fields.fail('add_cross_attention', 'is true: cross-attention (encoder-decoder GPT-2) is not supported');
  return {
    family: 'gpt2',
    file: fields.file,
    modelType: 'gpt2',
    vocabSize: fields.size('vocab_size', CONFIG_LIMITS.vocabSize),
    hiddenSize,
    numLayers: fields.size('n_layer', CONFIG_LIMITS.numLayers),
    numHeads,
    numKvHeads: numHeads,
    headDim,
    intermediateSize: fields.size('n_inner', CONFIG_LIMITS.intermediateSize, 4 * hiddenSize),
    maxPositions: fields.size('n_positions', CONFIG_LIMITS.maxPositions),
    tieWordEmbeddings: fields.bool('tie_word_embeddings', true),
    layerNormEps: fields.epsilon('layer_norm_epsilon', 1e-5),
    scaleAttnWeights: fields.bool('scale_attn_weights', true),
    scaleAttnByInverseLayerIdx: fields.bool('scale_attn_by_inverse_layer_idx', false),
    ...commonIds(fields),
  };
}

function llamaConfig(fields: Fields, modelType: Exclude<ModelType, 'gpt2'>): LlamaConfig {
  const hiddenSize = fields.size('hidden_size', CONFIG_LIMITS.hiddenSize);
  const numHeads = fields.size('num_attention_heads', CONFIG_LIMITS.numHeads);
  const numKvHeads = fields.size('num_key_value_heads', CONFIG_LIMITS.numHeads, numHeads);
  if (numHeads % numKvHeads !== 0) fields.fail('num_key_value_heads', `(${numKvHeads}) does not divide num_attention_heads (${numHeads})`);
  let headDim: number;
  if (fields.present('head_dim')) headDim = fields.size('head_dim', MAX_ATTENTION_HEAD_DIM * 64);
  else {
    if (hiddenSize % numHeads !== 0) fields.fail('num_attention_heads', `(${numHeads}) does not divide hidden_size (${hiddenSize}) and head_dim is not given`);
    headDim = hiddenSize / numHeads;
  }
  checkHeadDim(fields, fields.present('head_dim') ? 'head_dim' : 'num_attention_heads', headDim, true);
  const activation = fields.optionalString('hidden_act') ?? 'silu';
  if (activation !== 'silu' && activation !== 'swish') fields.fail('hidden_act', `is ${quoteName(activation)}; the Llama family here uses silu (SwiGLU)`);

  const attentionBias = modelType === 'llama' && fields.bool('attention_bias', false);
  const slidingWindow = modelType === 'mistral' || (modelType === 'qwen2' && fields.bool('use_sliding_window', false))
    ? fields.optionalSize('sliding_window', CONFIG_LIMITS.maxPositions)
    : null;
  return {
    family: 'llama',
    file: fields.file,
    modelType,
    vocabSize: fields.size('vocab_size', CONFIG_LIMITS.vocabSize),
    hiddenSize,
    numLayers: fields.size('num_hidden_layers', CONFIG_LIMITS.numLayers),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: fields.size('intermediate_size', CONFIG_LIMITS.intermediateSize),
    maxPositions: fields.size('max_position_embeddings', CONFIG_LIMITS.maxPositions, 2048),
    tieWordEmbeddings: fields.bool('tie_word_embeddings', false),
    rmsNormEps: fields.epsilon('rms_norm_eps', 1e-6),
    rope: ropeConfig(fields),
    qkvBias: modelType === 'qwen2' || attentionBias,
    oBias: attentionBias,
    mlpBias: modelType === 'llama' && fields.bool('mlp_bias', false),
    slidingWindow,
    ...commonIds(fields),
  };
}

function checkHeadDim(fields: Fields, field: string, headDim: number, rotary: boolean): void {
  if (headDim > MAX_ATTENTION_HEAD_DIM) fields.fail(field, `gives a head dim of ${headDim}; the attention kernel supports at most ${MAX_ATTENTION_HEAD_DIM}`);
  if (rotary && headDim % 2 !== 0) fields.fail(field, `gives an odd head dim (${headDim}); rotary embeddings need an even one`);
}

const ROPE_TYPES_REFUSED = ['dynamic', 'yarn', 'longrope', 'su', 'mrope', 'proportional'];

/** rope_parameters (newer files) or rope_theta + rope_scaling (legacy); both spell the type rope_type or type. */
function ropeConfig(fields: Fields): RopeConfig {
  let scalingFields: Fields | null = null;
  let theta: number;
  if (fields.present('rope_parameters')) {
    const parameters = fields.object('rope_parameters');
    theta = parameters.present('rope_theta') ? parameters.positive('rope_theta') : fields.positive('rope_theta', 10000);
    scalingFields = parameters;
  } else {
    theta = fields.positive('rope_theta', 10000);
    if (fields.present('rope_scaling')) scalingFields = fields.object('rope_scaling');
  }
  const partial = scalingFields?.present('partial_rotary_factor') ? scalingFields : fields.present('partial_rotary_factor') ? fields : null;
  if (partial && partial.positive('partial_rotary_factor') !== 1) {
    partial.fail('partial_rotary_factor', 'is not 1: partial rotary embeddings are not supported for this architecture');
  }
  if (!scalingFields) return { theta, scaling: { type: 'default' } };

  const typeField = scalingFields.present('rope_type') ? 'rope_type' : scalingFields.present('type') ? 'type' : null;
  const type = typeField ? scalingFields.string(typeField) : 'default';
  if (type === 'default') return { theta, scaling: { type: 'default' } };
  if (type === 'linear') return { theta, scaling: { type: 'linear', factor: scalingFields.positive('factor') } };
  if (type === 'llama3') {
    const lowFreqFactor = scalingFields.positive('low_freq_factor');
    const highFreqFactor = scalingFields.positive('high_freq_factor');
    if (!(highFreqFactor > lowFreqFactor)) {
      scalingFields.fail('high_freq_factor', `(${highFreqFactor}) must be larger than low_freq_factor (${lowFreqFactor})`);
    }
    return {
      theta,
      scaling: {
        type: 'llama3',
        factor: scalingFields.positive('factor'),
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositions: scalingFields.size('original_max_position_embeddings', CONFIG_LIMITS.maxPositions),
      },
    };
  }
  const field = typeField ?? 'rope_type';
  if (ROPE_TYPES_REFUSED.includes(type)) scalingFields.fail(field, `is ${quoteName(type)}, which tabtune does not support (supported: default, linear, llama3)`);
  return scalingFields.fail(field, `is ${quoteName(type)}, an unknown rope type (supported: default, linear, llama3)`);
}

/** config.json's kinds of field: sizes, positive numbers, epsilons, token ids. */
class Fields extends JsonFields {
  /** A positive integer no larger than `max`; `fallback` when absent (required when no fallback). */
  size(name: string, max: number, fallback?: number): number {
    if (fallback !== undefined && !this.present(name)) return fallback;
    const value = this.numberValue(name, this.required(name));
    if (!Number.isInteger(value)) this.fail(name, `must be an integer, got ${value}`);
    if (value <= 0) this.fail(name, `must be positive, got ${value}`);
    if (value > max) this.fail(name, `is ${value}, larger than the ${max} tabtune accepts`);
    return value;
  }

  optionalSize(name: string, max: number): number | null {
    return this.present(name) ? this.size(name, max) : null;
  }

  positive(name: string, fallback?: number): number {
    if (fallback !== undefined && !this.present(name)) return fallback;
    const value = this.numberValue(name, this.required(name));
    if (!(value > 0)) this.fail(name, `must be positive, got ${value}`);
    return value;
  }

  /** A normalization epsilon: positive and small. */
  epsilon(name: string, fallback: number): number {
    const value = this.positive(name, fallback);
    if (value >= 1) this.fail(name, `is ${value}; a normalization epsilon must be below 1`);
    return value;
  }

  /** A token id (non-negative integer) or null when absent. */
  tokenId(name: string): number | null {
    if (!this.present(name)) return null;
    return this.checkTokenId(name, this.json.get(name)!);
  }

  tokenIdAt(name: string, list: JsonValue[], index: number): number {
    return this.checkTokenId(`${name}[${index}]`, list[index]);
  }

  private checkTokenId(name: string, value: JsonValue): number {
    const id = this.numberValue(name, value);
    if (!Number.isSafeInteger(id) || id < 0) this.fail(name, `must be a non-negative integer token id, got ${id}`);
    return id;
  }

}
