// What the engine worker holds between calls: the GPU device with its engine, the loaded model with its
// tokenizer, and the adapter attached to it. One mutable record, shared by the call modules in calls/; only the
// worker's calls change it, one GPU call at a time (engineWorker.ts queues them).

import type { Engine } from '../engine/engine.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { Gpu } from '../gpu/runtime.ts';
import type { ChatTemplate } from '../io/chatTemplate.ts';
import type { ModelFiles } from '../io/sources/types.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { CausalLM } from '../models/model.ts';
import type { WeightPlan } from '../models/weights.ts';
import type { BottleneckModel } from '../peft/bottleneckModel.ts';
import type { PeftModel } from '../peft/peftModel.ts';
import type { TrainingSession } from './calls/trainingSession.ts';
import { NoModelError } from './failures.ts';
import type { AttachedMethod, DeviceSummary, EngineEvent, ModelSummary } from './protocol.ts';

export interface Device {
  gpu: Gpu;
  engine: Engine;
  summary: DeviceSummary;
}

export interface LoadedModel {
  model: CausalLM;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate | null;
  summary: ModelSummary;
  /** Its linear layers were converted to NF4 in place (QLoRA); only a reload gives the f32 ones back. */
  quantized: boolean;
  /** The files it was loaded from (a merged export copies config.json and the tokenizer files from them). */
  files: ModelFiles;
  /** Its checkpoint's tensors: state-dict name, name in the file, stored shape (a merged export writes the same). */
  plan: WeightPlan;
}

/**
 * Why only QLoRA can go on a model whose linears are 4-bit, and how to get float weights back: a checkpoint stored
 * 4-bit has none to reload.
 */
export function quantizedBase(loaded: LoadedModel): { why: string; remedy: string } {
  const { prequantized, weights } = loaded.summary;
  return prequantized
    ? { why: `the checkpoint is stored in 4-bit ${weights.toUpperCase()} (bitsandbytes), so only QLoRA trains on it`, remedy: 'load its unquantized version' }
    : { why: "the model's linear layers are in NF4 (QLoRA's base)", remedy: 'load the model again with f32 weights' };
}

/** The adapter attached to the loaded model (its modules live inside the model: LoRA wrappers or residual hooks). */
export interface Adapted {
  /** JSON of the settings, to tell whether a train call may keep this adapter. */
  key: string;
  peft: PeftModel | null;
  bottleneck: BottleneckModel | null;
  params: Tensor[];
  summary: AttachedMethod;
}

/** An exported file the worker keeps for the page to use again (the playground runs the last ONNX export). */
export interface KeptFile {
  fileName: string;
  bytes: Uint8Array;
}

export const engineState: {
  device: Device | null;
  loaded: LoadedModel | null;
  adapted: Adapted | null;
  lastOnnx: KeptFile | null;
  /** The training run kept between calls (paused): its trainer holds the adapter's AdamW state. */
  training: TrainingSession | null;
} = {
  device: null,
  loaded: null,
  adapted: null,
  lastOnnx: null,
  training: null,
};

/** What a running call may use: its id, its cancellation, and its event channel. */
export interface CallContext {
  id: number;
  signal: AbortSignal;
  emit(event: EngineEvent): void;
}

export function requireDevice(): Device {
  const { device } = engineState;
  if (!device || device.gpu.isLost) throw new NoModelError('the GPU is not ready: start the engine first (init)');
  return device;
}

export function requireLoaded(): LoadedModel {
  requireDevice();
  if (!engineState.loaded) throw new NoModelError('no model is loaded: load one first');
  return engineState.loaded;
}

/** Forget the loaded model (and the adapter inside it, and a kept training run), freeing their GPU memory. */
export function disposeLoaded(): void {
  engineState.training?.dispose();
  engineState.training = null;
  engineState.loaded?.model.dispose();
  engineState.loaded = null;
  engineState.adapted = null;
}
