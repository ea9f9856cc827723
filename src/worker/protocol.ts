// The messages between the page and the engine worker: a versioned, typed union of requests (each with an id),
// results, errors and events. Everything here is plain structured-cloneable data (File objects excepted, which
// the browser clones by reference); no GPU object ever crosses. One table, `Calls`, ties each request type to its
// payload and its result, so the client and the worker cannot disagree about either without a compile error.
//
//   page → worker   { v, id, request }                       a call
//   worker → page   { v, kind: 'result', id, type, result }  its answer
//                   { v, kind: 'error',  id, error }         or its failure (EngineFailure)
//                   { v, kind: 'event',  id | null, event }  progress and tokens of call `id`, or news (device lost)

/** Bumped whenever a message changes shape; the worker refuses calls of another version. */
export const PROTOCOL_VERSION = 4;

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
  /** Bytes the weights occupy on the GPU (f32). */
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
}

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
}

export interface TrainRequest {
  method: MethodSettings;
  dataset: string;
  steps: number;
  seqLen: number;
  batchSize: number;
  lr: number;
  seed: number;
}

export interface TrainResult {
  stopReason: string;
  step: number;
  tokensPerSecond: number;
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
  /** A finished optimizer step of a training run (reported one step late by the Trainer). */
  | { type: 'trainStep'; step: number; steps: number; loss: number; skipped: boolean; tokensPerSecond: number; elapsedMs: number; etaMs: number };

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

// ---------------------------------------------------------------------------------------------------------------
// The call table

export interface Calls {
  /** The curated models, with estimates against the device (once init has found one). Needs no GPU. */
  catalog: { payload: Record<string, never>; result: CatalogEntry[] };
  /** Acquire the GPU (again, after a loss) and run the self-check. */
  init: { payload: Record<string, never>; result: DeviceSummary };
  /** Fetch, check and upload a model and its tokenizer; replaces the loaded one. Events: estimate, loadProgress. */
  loadModel: { payload: { source: ModelSource; ignoreBudget: boolean }; result: ModelSummary };
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
  /** Train the attached adapter (attaching `method` first when it differs). Events: trainStep. Cancel stops at a step boundary. */
  train: { payload: TrainRequest; result: TrainResult };
  /** The attached adapter as one safetensors file whose header metadata carries its config (adapterBundle.ts). */
  exportAdapter: { payload: Record<string, never>; result: { fileName: string; bytes: Uint8Array } };
  /** Abort call `target` (a load or a generation). Resolves at once; the target settles on its own. */
  cancel: { payload: { target: number }; result: { found: boolean } };
  /** Fault injection for tests: destroy the device as a driver reset would. */
  loseDevice: { payload: Record<string, never>; result: { lost: boolean } };
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
