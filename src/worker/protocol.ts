// The messages between the page and the engine worker: a versioned, typed union of requests (each with an id),
// results, errors and events. Everything here is plain structured-cloneable data (File objects excepted, which
// the browser clones by reference); no GPU object ever crosses. One table, `Calls`, ties each request type to its
// payload and its result, so the client and the worker cannot disagree about either without a compile error.
//
//   page → worker   { v, id, request }                       a call
//   worker → page   { v, kind: 'result', id, type, result }  its answer
//                   { v, kind: 'error',  id, error }         or its failure (EngineFailure)
//                   { v, kind: 'event',  id | null, event }  progress and tokens of call `id`, or news (device lost)

import type { LoadedWeights } from '../peft/baseModel.ts';
import type { MemoryCategory } from '../engine/memory.ts';
import type { ScheduleKind } from '../train/schedule.ts';

/** Bumped whenever a message changes shape; the worker refuses calls of another version. */
export const PROTOCOL_VERSION = 5;

// ---------------------------------------------------------------------------------------------------------------
// Payloads

/**
 * Where a model comes from. Picked files travel as File objects with their path relative to the picked folder.
 * A hub source may name the hub address (the app's "Hub address" setting; default https://huggingface.co).
 */
export type ModelSource =
  | { kind: 'demo'; baseUrl: string }
  | { kind: 'hub'; spec: string; endpoint?: string }
  | { kind: 'files'; files: { path: string; file: File }[] };

/** How a model's weights are held on the GPU: f32, or the block linears in 4-bit NF4 (double-quantized, as QLoRA's base). */
export type WeightStorage = 'f32' | 'nf4';

/** What the worker found on the device. */
export interface DeviceSummary {
  vendor: string;
  architecture: string;
  description: string;
  features: string[];
  /** Largest single tensor (maxStorageBufferBindingSize) and buffer (maxBufferSize), bytes. */
  maxBindingBytes: number;
  maxBufferBytes: number;
  /**
   * WebGPU does not tell how much memory a device has. The budget models are checked against: the
   * browser's navigator.deviceMemory (GiB of RAM, coarse, capped at 8 by Chrome) or null when not reported.
   */
  memoryBudgetBytes: number | null;
  /** [[1,2],[3,4]]·[[5,6],[7,8]] computed on the device at start, as a self-check. */
  selfCheck: number[];
}

/** The architecture of a loaded model, for the summary. */
export interface ModelSummary {
  /** How the user named it: "demo", a repo id, the picked folder. */
  name: string;
  sourceKind: ModelSource['kind'];
  modelType: string;
  family: 'gpt2' | 'llama';
  parameterCount: number;
  layers: number;
  hiddenSize: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositions: number;
  tiedEmbeddings: boolean;
  /** Storage dtype as config.json says (bfloat16, float32, ...), or null. */
  storedDtype: string | null;
  /** How the weights sit on the GPU: all f32, or the block linears in a 4-bit type (QLoRA's base) and the rest f32. */
  weights: LoadedWeights;
  /** The checkpoint itself is bitsandbytes 4-bit (its codes were uploaded as they are; it has no float weights). */
  prequantized: boolean;
  /** Bytes the weights occupy on the GPU, as stored. */
  gpuWeightBytes: number;
  tokenizer: { type: string; vocabSize: number; eos: string | null; bos: string | null };
  hasChatTemplate: boolean;
  /** Non-fatal findings: NaN/Inf tensors, tokenizer oddities. */
  warnings: string[];
}

/** Memory an action needs, by part, against what the device offers. */
export interface MemoryEstimate {
  /** What the parts are for, e.g. "inference in f32 with a 1024-position KV cache". */
  purpose: string;
  parts: { label: string; bytes: number }[];
  totalBytes: number;
  /** The largest single tensor and the device's binding limit. */
  largestTensor: { name: string; bytes: number };
  maxBindingBytes: number;
  memoryBudgetBytes: number | null;
  /** Null when it fits; otherwise why not, in words. */
  refusal: string | null;
  /** Whether the refusal is certain (a device limit) or a judgement against the assumed budget, which the user may override. */
  refusalOverridable: boolean;
}

/** A curated hub model with its download size and memory needs, computed from its config. */
export interface CatalogEntry {
  /** Hub repo id. */
  id: string;
  label: string;
  note: string;
  modelType: string;
  parameterCount: number;
  /** Bytes of the repository's model.safetensors. */
  downloadBytes: number;
  /** Generation with f32 weights, and with NF4 linear layers (as QLoRA stores them). */
  f32: MemoryEstimate;
  nf4: MemoryEstimate;
}

export interface SamplingSettings {
  maxNewTokens: number;
  /** 0: greedy (argmax). */
  temperature: number;
  /** 0: off. */
  topK: number;
  /** 1: off. */
  topP: number;
  /** 1: off; > 1 discourages repeating tokens already present. */
  repetitionPenalty: number;
  seed: number;
}

export interface GenerateRequest {
  prompt: string;
  sampling: SamplingSettings;
  /** Wrap the prompt as a user message with the model's chat template. */
  useChatTemplate: boolean;
  /** Generate with the attached adapter switched off (the base model), for a side-by-side comparison. */
  adapterOff?: boolean;
}

/** An .onnx file to run: one the user picked, or the last ONNX export the worker keeps. */
export type OnnxSource = { kind: 'file'; file: File } | { kind: 'lastExport' };

/** Generation from an ONNX model (input ids int64 [batch, sequence] → logits) with the loaded model's tokenizer. */
export interface OnnxGenerateRequest {
  source: OnnxSource;
  prompt: string;
  sampling: SamplingSettings;
  useChatTemplate: boolean;
}

/** Which ONNX Runtime Web session runs a file: the execution provider and the GPU behind it. */
export interface OnnxSessionInfo {
  fileName: string;
  executionProvider: 'webgpu';
  /** The GPU adapter, in words. */
  adapter: string;
  /** Time to load the runtime and create the session; 0 when the session of an earlier run was reused. */
  sessionMs: number;
}

export interface OnnxGenerateResult extends GenerateResult, OnnxSessionInfo {}

export type StopReason = 'eos' | 'maxNewTokens' | 'context' | 'aborted';

export interface GenerateResult {
  text: string;
  tokenIds: number[];
  promptTokens: number;
  stopReason: StopReason;
  /** Wall time of the whole call, and of the decoding steps after the prompt. */
  totalMs: number;
  decodeMs: number;
}

export type LoadPhase = 'fetch' | 'check' | 'upload' | 'tokenizer';

/** The fine-tuning methods: LoRA on f32 weights, LoRA on NF4 linears (QLoRA), or bottleneck adapters. */
export type MethodKind = 'lora' | 'qlora' | 'adapter';

export interface MethodSettings {
  method: MethodKind;
  /** LoRA/QLoRA: rank, scale numerator, dropout, rsLoRA, target module names (null: the architecture's default). */
  r: number;
  alpha: number;
  dropout: number;
  useRslora: boolean;
  targetModules: string[] | null;
  /** Adapter: hidden // reductionFactor is the bottleneck width; pfeiffer (after the FFN) or houlsby (after both). */
  reductionFactor: number;
  placement: 'pfeiffer' | 'houlsby';
}

export interface AttachedMethod {
  settings: MethodSettings;
  /** Elements of the trained tensors, and of the model with them. */
  trainableParameters: number;
  totalParameters: number;
  /** LoRA: the wrapped module paths; adapter: the layer sites. */
  targets: string[];
  /** The targetModules the default (null) resolved to, for the UI. */
  defaultTargets: string[];
}

export interface DatasetSummary {
  format: string;
  /** Examples after tokenization (long texts split into windows count each window). */
  examples: number;
  tokens: number;
  targetTokens: number;
  issueCount: number;
  /** The first few bad lines, 1-based. */
  issues: { line: number; message: string }[];
  /** Why the dataset cannot be trained on as it is, or null. */
  problem: string | null;
  /** The first examples as the model sees them, token by token (worker/datasetPreview.ts). */
  preview: DatasetPreviewExample[];
}

/** One token of a previewed example: its text in context, and whether its label is kept (trained) or ignored (masked). */
export interface DatasetPreviewToken {
  id: number;
  /** What the token adds to the decoded text; '' when it holds the first bytes of a character a later token completes. */
  text: string;
  trained: boolean;
  special: boolean;
}

export interface DatasetPreviewExample {
  /** The 1-based line the example starts on. */
  line: number;
  /** The first tokens (capped); `totalTokens - tokens.length` more follow. */
  tokens: DatasetPreviewToken[];
  totalTokens: number;
  trainedTokens: number;
}

/** A model source the page can load again by itself (picked files cannot be: the page holds them). */
export type ReloadableModelSource = { kind: 'demo' } | { kind: 'hub'; spec: string; endpoint?: string };

/** The largest batch the app trains with: packed rows per optimizer step. */
export const MAX_BATCH_SIZE = 64;

/** The settings a training run's numbers depend on (a resumed run must use the same). */
export interface RunSettings {
  method: MethodSettings;
  steps: number;
  seqLen: number;
  batchSize: number;
  lr: number;
  /** How the learning rate changes over the run (train/schedule.ts): constant, or linear / cosine decay to 0. */
  schedule: ScheduleKind;
  /** Steps over which the learning rate rises to lr first, in [0, steps). */
  warmupSteps: number;
  /** Orders the examples and rows and seeds dropout; an integer in [0, 2^32). */
  seed: number;
  /** Save a checkpoint in browser storage every this many steps (and when the run pauses); 0: never. */
  checkpointEvery: number;
  /** Share of the examples held out for validation, in [0, 0.5] (calls/trainingSplit.ts sizes it). */
  validationShare: number;
  /** Evaluate the validation loss every this many steps and at the end; 0: only at the end. */
  evalEvery: number;
}

export interface TrainRequest extends RunSettings {
  dataset: string;
  /** The model, for the saved run: how the page loads it again (null: picked files) and its name. */
  model: { source: ReloadableModelSource | null; label: string };
  /** Continue the run saved in browser storage from its checkpoint (settings and dataset must match it). */
  fromCheckpoint: boolean;
}

export interface TrainResult {
  /**
   * completed, or diverged (the run is over); paused (the worker keeps it: resumeTraining continues it, endTraining
   * ends it), or checkpointFailed (kept as when paused; `checkpointError` says why the checkpoint was not written).
   */
  stopReason: 'completed' | 'diverged' | 'paused' | 'checkpointFailed';
  step: number;
  tokensPerSecond: number;
  /** Steps done at the run's last checkpoint in browser storage, or null when none was saved. */
  checkpointStep: number | null;
  checkpointError: string | null;
}

/** A loss at a step of a run (training or validation). */
export interface LossPoint {
  step: number;
  loss: number;
}

/** The engine's accounted GPU bytes by category (engine/memory.ts) after a step, and the run's peak total. */
export interface TrainMemory {
  total: number;
  byCategory: Record<MemoryCategory, number>;
  peakTotal: number;
}

/** What browser storage keeps about a run besides its checkpoint and dataset (calls/savedRun.ts, run.json). */
export interface SavedRunDescription {
  runId: string;
  /** ms since the epoch. */
  createdAt: number;
  model: { source: ReloadableModelSource | null; label: string; modelType: string };
  settings: RunSettings;
  dataset: { characters: number; fingerprint: string };
}

/** A run saved in browser storage, as a reloaded page finds it. */
export interface SavedRun {
  description: SavedRunDescription;
  /** Steps done at its checkpoint; 0 when it stopped before its first checkpoint. */
  checkpointStep: number;
  /** When the checkpoint (or, before one, the run) was saved, ms since the epoch. */
  savedAt: number;
  dataset: string;
}

export type EngineEvent =
  | {
      type: 'loadProgress';
      phase: LoadPhase;
      /** For fetch: the file being downloaded; for upload: the tensor. */
      item: string;
      done: number;
      /** Null while unknown (a server that does not say the size). */
      total: number | null;
      unit: 'bytes' | 'tensors';
    }
  | { type: 'estimate'; estimate: MemoryEstimate }
  /** A generated token and the text it adds (empty while a multi-byte character is incomplete). */
  | { type: 'token'; delta: string; tokenId: number; index: number }
  | { type: 'deviceLost'; reason: string; message: string }
  /** An export in progress: tensors read back and merged ('read', unit tensors), then the file built ('write'). */
  | { type: 'exportProgress'; phase: 'read' | 'write'; item: string; done: number; total: number }
  /** The ONNX session of an onnxGenerate call is ready; tokens follow. */
  | ({ type: 'onnxSession' } & OnnxSessionInfo)
  /** A finished optimizer step of a training run (reported one step late by the Trainer). */
  | { type: 'trainStep'; step: number; steps: number; loss: number; skipped: boolean; tokensPerSecond: number; elapsedMs: number; etaMs: number; memory: TrainMemory }
  /** The validation loss after `step` steps. */
  | { type: 'trainEval'; step: number; loss: number; perplexity: number }
  /** A checkpoint of `step` steps was written to browser storage. */
  | { type: 'trainCheckpoint'; step: number; bytes: number }
  /** A run resumed from its checkpoint: the steps done and the losses so far. */
  | { type: 'trainRestored'; step: number; steps: number; losses: LossPoint[]; evals: LossPoint[] };

/** Every failure, as data. `kind` says what the UI can do about it. */
export type FailureKind =
  | 'gpuUnavailable'
  | 'deviceLost'
  | 'outOfMemory'
  | 'doesNotFit'
  | 'badInput'
  | 'network'
  | 'access'
  | 'notFound'
  | 'cancelled'
  | 'noModel'
  | 'protocol'
  | 'internal';

export interface EngineFailure {
  kind: FailureKind;
  message: string;
  /** The error's class name (ConfigError, HubAccessError, ...). */
  name: string;
  file?: string;
  field?: string;
  /** Trying the same thing again later may work (network trouble). */
  retryable: boolean;
  /** For doesNotFit: the estimate that refused. */
  estimate?: MemoryEstimate;
}

/** The adapter download: one safetensors file carrying its config (adapterBundle.ts), or a zip of the library's own files. */
export type AdapterDownloadFormat = 'safetensors' | 'zip';

/** The merged-model download: a zip of a Hugging Face model folder, or one .onnx file. */
export type MergedDownloadFormat = 'zip' | 'onnx';

export interface ImportAdapterRequest {
  /** One tabtune .safetensors bundle, one .zip, or adapter_config.json with its weights file. */
  files: File[];
  /**
   * The page's method settings: `method` says whether a LoRA file goes onto the f32 weights ('lora') or onto NF4
   * layers ('qlora'); the fields the file does not set (e.g. the other method's) are kept in the result.
   */
  settings: MethodSettings;
}

export interface ImportedAdapterSummary {
  /** The adapter now attached; a train call whose method equals attached.settings continues training it. */
  attached: AttachedMethod;
  /** 'peft': LoRA files of Hugging Face PEFT; 'adapterhub': bottleneck files of AdapterHub. */
  layout: 'peft' | 'adapterhub';
  /** The picked file(s), for messages. */
  source: string;
  /** Findings that did not stop the import (another base model name, ignored keys). */
  warnings: string[];
}

// ---------------------------------------------------------------------------------------------------------------
// The call table

export interface Calls {
  /** The curated models, with estimates against the device (once init has found one). Needs no GPU. */
  catalog: { payload: Record<string, never>; result: CatalogEntry[] };
  /** Acquire the GPU (again, after a loss) and run the self-check. */
  init: { payload: Record<string, never>; result: DeviceSummary };
  /**
   * Fetch, check and upload a model and its tokenizer; replaces the loaded one. `weights` 'nf4' quantizes the block
   * linears while they stream in (QLoRA's base, about 7× less memory for them; default 'f32'); a pre-quantized
   * bitsandbytes checkpoint loads 4-bit whatever `weights` says. Events: estimate, loadProgress.
   */
  loadModel: { payload: { source: ModelSource; ignoreBudget: boolean; weights?: WeightStorage }; result: ModelSummary };
  unloadModel: { payload: Record<string, never>; result: { unloaded: boolean } };
  /** The model on the GPU now, or null. */
  loadedModel: { payload: Record<string, never>; result: ModelSummary | null };
  /** Events: token. Resolves when generation stops (a cancelled generation resolves with stopReason 'aborted'). */
  generate: { payload: GenerateRequest; result: GenerateResult };
  /** Attach (or re-attach with new settings) a method's adapter to the loaded model. */
  attachMethod: { payload: { settings: MethodSettings }; result: AttachedMethod };
  /** The adapter attached now, or null. */
  attachedMethod: { payload: Record<string, never>; result: AttachedMethod | null };
  /** Parse and tokenize a dataset with the loaded model's tokenizer; nothing is kept. */
  inspectDataset: { payload: { text: string; seqLen: number }; result: DatasetSummary };
  /**
   * Train the attached adapter (attaching `method` first when it differs), or continue the saved run (fromCheckpoint).
   * Events: trainStep, trainEval, trainCheckpoint, trainRestored. Cancel pauses at a step boundary: the result says
   * 'paused' and the worker keeps the run for resumeTraining or endTraining.
   */
  train: { payload: TrainRequest; result: TrainResult };
  /** Continue the paused run the worker keeps. Events and cancel as train. */
  resumeTraining: { payload: Record<string, never>; result: TrainResult };
  /** End the kept run (free its optimizer state) and remove its saved run; the trained adapter stays attached. */
  endTraining: { payload: Record<string, never>; result: { ended: boolean } };
  /** The run saved in browser storage (after a reload or a crash), or null. SavedRunError when it is unreadable. */
  savedRun: { payload: Record<string, never>; result: SavedRun | null };
  /** Remove the saved run from browser storage. */
  discardSavedRun: { payload: Record<string, never>; result: { discarded: boolean } };
  /** The attached adapter as one safetensors file with its config in the metadata (default), or a zip of the library's files. */
  exportAdapter: { payload: { format?: AdapterDownloadFormat }; result: { fileName: string; bytes: Uint8Array } };
  /** The model with the attached LoRA/QLoRA adapter merged in (nothing attached changes), as a Hugging Face folder zip or an .onnx file (kept for the playground). Events: exportProgress. */
  exportMerged: { payload: { format: MergedDownloadFormat }; result: { fileName: string; bytes: Uint8Array } };
  /** Replace the attached adapter by one read from picked files (a tabtune bundle, a zip, or PEFT's two files), checked against the loaded model. */
  importAdapter: { payload: ImportAdapterRequest; result: ImportedAdapterSummary };
  /** Abort call `target` (a load or a generation). Resolves at once; the target settles on its own. */
  cancel: { payload: { target: number }; result: { found: boolean } };
  /** Fault injection for tests: destroy the device as a driver reset would. */
  loseDevice: { payload: Record<string, never>; result: { lost: boolean } };
  /** Generate with ONNX Runtime Web's WebGPU EP from an .onnx file. Events: onnxSession, token. Cancel as generate. */
  onnxGenerate: { payload: OnnxGenerateRequest; result: OnnxGenerateResult };
  /** The ONNX export the worker keeps for the playground, or null. */
  keptOnnx: { payload: Record<string, never>; result: { fileName: string; bytes: number } | null };
}

export type CallType = keyof Calls;
export type Payload<T extends CallType> = Calls[T]['payload'];
export type Result<T extends CallType> = Calls[T]['result'];

export type Request = { [T in CallType]: { type: T } & Payload<T> }[CallType];

export interface RequestMessage {
  v: number;
  id: number;
  request: Request;
}

export type ResponseMessage =
  | { [T in CallType]: { v: number; kind: 'result'; id: number; type: T; result: Result<T> } }[CallType]
  | { v: number; kind: 'error'; id: number; error: EngineFailure }
  | { v: number; kind: 'event'; id: number | null; event: EngineEvent };

/** Shape check for a message from the other side (the worker trusts nothing it receives either). */
export function isRequestMessage(value: unknown): value is RequestMessage {
  if (typeof value !== 'object' || value === null) return false;
  const message = value as Partial<RequestMessage>;
  return typeof message.id === 'number' && typeof message.v === 'number' && typeof message.request === 'object' && message.request !== null;
}

export function isResponseMessage(value: unknown): value is ResponseMessage {
  if (typeof value !== 'object' || value === null) return false;
  const message = value as { v?: unknown; kind?: unknown };
  return typeof message.v === 'number' && (message.kind === 'result' || message.kind === 'error' || message.kind === 'event');
}
