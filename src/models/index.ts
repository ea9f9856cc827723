// The model layer's public surface: config parsing, weight planning, loading, and the architectures.

export { ConfigError, parseModelConfig, configFromJson, SUPPORTED_MODEL_TYPES } from './config.ts';
export type { Gpt2Config, LlamaConfig, ModelConfig, ModelType, RopeConfig, RopeScaling } from './config.ts';
export { expectedTensors, planWeights, WeightMismatchError, WeightTooLargeError } from './weights.ts';
export type { DeviceLimits, ExpectedTensor, PlannedTensor, WeightPlan } from './weights.ts';
export { DenseLinear, LinearSet, type Linear } from './linear.ts';
export { KVCache, type KVCacheShape } from './kvCache.ts';
export { tokenTensor, type CausalLM, type ForwardOptions } from './model.ts';
export { Gpt2Model } from './gpt2.ts';
export { LlamaModel, rotaryInverseFrequencies } from './llama.ts';
export { inspectModel, loadModel, readModelConfig, ModelFilesError, type LoadedModel, type LoadOptions, type LoadProgress, type ModelFileProvider } from './load.ts';
