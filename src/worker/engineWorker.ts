// The engine's home in the browser: a dedicated Web Worker that owns the GPU device, the engine, the loaded model
// and its tokenizer, and answers the calls of protocol.ts. Calls that use the GPU run one after another (engine
// scopes must not interleave); `cancel`, `catalog` and `loseDevice` are answered at once. Failures travel as
// EngineFailure data; a lost device is reported as an event whether or not a call was running.

/// <reference lib="webworker" />

import { Engine } from '../engine/engine.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { acquireBrowserGpu } from '../gpu/browser.ts';
import type { Gpu } from '../gpu/runtime.ts';
import { loadChatTemplate, type ChatTemplate } from '../io/chatTemplate.ts';
import { browserFiles } from '../io/sources/browserFiles.ts';
import { defaultCache } from '../io/sources/cache.ts';
import { hubFiles } from '../io/sources/hub.ts';
import type { ModelFiles } from '../io/sources/types.ts';
import { loadTokenizer, type Tokenizer } from '../io/tokenizer.ts';
import { inspectModel, loadModel, readModelConfig } from '../models/load.ts';
import type { CausalLM } from '../models/model.ts';
import { checkTokenizerFitsModel, generate } from '../train/generate.ts';
import { describeCatalog } from './catalog.ts';
import { toFailure, DoesNotFitError, NoModelError, BadRequestError } from './failures.ts';
import { estimateInference, type DeviceCapacity } from './memoryEstimate.ts';
import {
  isRequestMessage,
  PROTOCOL_VERSION,
  type CallType,
  type DeviceSummary,
  type EngineEvent,
  type GenerateRequest,
  type LoadPhase,
  type ModelSource,
  type ModelSummary,
  type AttachedMethod,
  type DatasetSummary,
  type MethodSettings,
  type TrainRequest,
  type Payload,
  type Request,
  type ResponseMessage,
  type Result,
} from './protocol.ts';
import { staticFolder } from './staticFolder.ts';
import { bundleAdapter } from './adapterBundle.ts';
import type { Tensor } from '../engine/tensor.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../peft/adapterErrors.ts';
import { BOTTLENECK_CONFIG_FILE, BOTTLENECK_WEIGHTS_FILE, exportBottleneckAdapter } from '../peft/bottleneckFiles.ts';
import { BottleneckModel, bottleneckConfig } from '../peft/bottleneckModel.ts';
import { exportLoraAdapter } from '../peft/peftFiles.ts';
import { attachLora, type PeftModel } from '../peft/peftModel.ts';
import { quantizeLinears } from '../peft/qlora.ts';
import { defaultTargetModules } from '../peft/targets.ts';
import { DatasetError, parseDataset, requireUsable, tokenizeDataset, type TokenizedDataset } from '../train/data.ts';
import { packDataset } from '../train/packing.ts';
import { Trainer, type TrainingState } from '../train/trainer.ts';
import { AdapterTrainingView } from '../train/trainingView.ts';

const worker = self as unknown as DedicatedWorkerGlobalScope;

/** The files of the demo folder (public/demo/). */
const DEMO_FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
/** Progress events per second, at most (the last one of a phase is always sent). */
const PROGRESS_INTERVAL_MS = 100;

interface Device {
  gpu: Gpu;
  engine: Engine;
  summary: DeviceSummary;
}

interface LoadedModel {
  model: CausalLM;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate | null;
  summary: ModelSummary;
  /** Its linear layers were converted to NF4 in place (QLoRA); only a reload gives the f32 ones back. */
  quantized: boolean;
}

let device: Device | null = null;
let loaded: LoadedModel | null = null;
/** The adapter attached to the loaded model (its modules live inside the model: LoRA wrappers or residual hooks). */
let adapted: Adapted | null = null;
/** Abort controllers of the calls that can be cancelled, by call id. */
const cancellable = new Map<number, AbortController>();
/** The tail of the queue of GPU calls. */
let gpuQueue: Promise<unknown> = Promise.resolve();

interface CallContext {
  id: number;
  signal: AbortSignal;
  emit(event: EngineEvent): void;
}

function post(message: ResponseMessage): void {
  worker.postMessage(message);
}

function emitter(id: number | null): (event: EngineEvent) => void {
  return (event) => post({ v: PROTOCOL_VERSION, kind: 'event', id, event });
}

// ---------------------------------------------------------------------------------------------------------------
// Device

function memoryBudget(): number | null {
  const gib = (worker.navigator as Navigator & { deviceMemory?: number }).deviceMemory;
  return typeof gib === 'number' && Number.isFinite(gib) && gib > 0 ? gib * 2 ** 30 : null;
}

function capacity(): DeviceCapacity | null {
  if (!device) return null;
  const { maxBindingBytes, maxBufferBytes, memoryBudgetBytes } = device.summary;
  return { maxBindingBytes, maxBufferBytes, memoryBudgetBytes };
}

async function init(): Promise<DeviceSummary> {
  if (device && !device.gpu.isLost) return device.summary;
  dropDevice();
  const gpu = await acquireBrowserGpu();
  const engine = new Engine(gpu);
  const selfCheck = await engine.scope(async () => {
    const a = engine.tensor([1, 2, 3, 4], [2, 2]);
    const b = engine.tensor([5, 6, 7, 8], [2, 2]);
    return Array.from(await matmul(a, b).read());
  });
  const { info } = gpu;
  const summary: DeviceSummary = {
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description,
    features: Object.entries(info.features)
      .filter(([, has]) => has)
      .map(([name]) => name),
    maxBindingBytes: info.limits.maxStorageBufferBindingSize,
    maxBufferBytes: info.limits.maxBufferSize,
    memoryBudgetBytes: memoryBudget(),
    selfCheck,
  };
  const current: Device = { gpu, engine, summary };
  device = current;
  void gpu.device.lost.then((info) => {
    if (device !== current) return; // replaced on purpose
    device = null;
    loaded = null; // its buffers went with the device
    adapted = null;
    emitter(null)({ type: 'deviceLost', reason: info.reason ?? 'unknown', message: info.message });
  });
  return summary;
}

function dropDevice(): void {
  const old = device;
  device = null;
  loaded?.model.dispose();
  loaded = null;
  adapted = null;
  if (old && !old.gpu.isLost) old.gpu.destroy();
}

function requireDevice(): Device {
  if (!device || device.gpu.isLost) throw new NoModelError('the GPU is not ready: start the engine first (init)');
  return device;
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

/** Rate-limited progress for one phase. */
function progressReporter(ctx: CallContext, phase: LoadPhase, unit: 'bytes' | 'tensors') {
  let last = 0;
  return (item: string, done: number, total: number | null) => {
    const now = performance.now();
    if (now - last < PROGRESS_INTERVAL_MS && done !== total) return;
    last = now;
    ctx.emit({ type: 'loadProgress', phase, item, done, total, unit });
  };
}

/** The files of a source, and how to download what a load needs (hub and demo fetch; picked files are local). */
async function openSource(source: ModelSource, ctx: CallContext): Promise<{ files: ModelFiles; name: string; fetchAll: () => Promise<void> }> {
  const fetchProgress = progressReporter(ctx, 'fetch', 'bytes');
  switch (source.kind) {
    case 'demo': {
      const files = staticFolder(source.baseUrl, DEMO_FILES, { name: 'the demo model', signal: ctx.signal, onProgress: fetchProgress });
      return { files, name: 'Demo model', fetchAll: async () => void (await files.open('model.safetensors')) };
    }
    case 'hub': {
      const files = await hubFiles(source.spec, { endpoint: source.endpoint, cache: await defaultCache(), signal: ctx.signal });
      return {
        files,
        name: files.name,
        fetchAll: async () => {
          await files.downloadModel((p) => fetchProgress(p.file, p.doneBytes, p.totalBytes));
        },
      };
    }
    case 'files': {
      if (!Array.isArray(source.files) || source.files.length === 0) throw new BadRequestError('no files were picked');
      const files = browserFiles(source.files);
      return { files, name: files.name, fetchAll: async () => {} };
    }
  }
}

async function loadModelCall(payload: Payload<'loadModel'>, ctx: CallContext): Promise<ModelSummary> {
  const { engine } = requireDevice();
  const { files, name, fetchAll } = await openSource(payload.source, ctx);

  // The config alone decides whether the model can fit: check before downloading the weights.
  ctx.emit({ type: 'loadProgress', phase: 'check', item: 'config.json', done: 0, total: null, unit: 'bytes' });
  const config = await readModelConfig(files);
  const estimate = estimateInference(config, 'f32', capacity());
  ctx.emit({ type: 'estimate', estimate });
  if (estimate.refusal !== null && !(payload.ignoreBudget && estimate.refusalOverridable)) throw new DoesNotFitError(estimate);

  await fetchAll();
  ctx.signal.throwIfAborted();
  ctx.emit({ type: 'loadProgress', phase: 'tokenizer', item: 'tokenizer.json', done: 0, total: null, unit: 'bytes' });
  const tokenizer = await loadTokenizer(files);
  checkTokenizerFitsModel(tokenizer, config.vocabSize);
  const chatTemplate = await loadChatTemplate(files, tokenizer);

  // Every header is checked against the config and the device before the old model goes: a load that fails
  // on bad files leaves the loaded one in place.
  await inspectModel(files, engine.gpu.info.limits);
  ctx.signal.throwIfAborted();
  loaded?.model.dispose();
  loaded = null;
  adapted = null;
  const uploadProgress = progressReporter(ctx, 'upload', 'tensors');
  const result = await loadModel(engine, files, {
    signal: ctx.signal,
    onProgress: (p) => uploadProgress(p.tensor, p.loaded, p.total),
  });
  const { model, plan, warnings } = result;
  const summary: ModelSummary = {
    name,
    sourceKind: payload.source.kind,
    modelType: config.modelType,
    family: config.family,
    parameterCount: plan.parameterCount,
    layers: config.numLayers,
    hiddenSize: config.hiddenSize,
    heads: config.numHeads,
    kvHeads: config.numKvHeads,
    headDim: config.headDim,
    intermediateSize: config.intermediateSize,
    vocabSize: config.vocabSize,
    maxPositions: config.maxPositions,
    tiedEmbeddings: config.tieWordEmbeddings,
    storedDtype: config.dtype,
    gpuWeightBytes: plan.f32Bytes,
    tokenizer: {
      type: tokenizer.modelType,
      vocabSize: tokenizer.vocabSize,
      eos: tokenizer.special.eos?.text ?? null,
      bos: tokenizer.special.bos?.text ?? null,
    },
    hasChatTemplate: chatTemplate !== null,
    warnings: [...warnings.map((w) => w.message), ...tokenizer.warnings],
  };
  loaded = { model, tokenizer, chatTemplate, summary, quantized: false };
  return summary;
}

// ---------------------------------------------------------------------------------------------------------------
// Generation

async function generateCall(payload: GenerateRequest, ctx: CallContext): Promise<Result<'generate'>> {
  requireDevice();
  if (!loaded) throw new NoModelError('no model is loaded: load one first');
  const { model, tokenizer, chatTemplate } = loaded;
  const started = performance.now();
  if (typeof payload.prompt !== 'string') throw new BadRequestError('the prompt must be text');
  let promptIds: number[];
  if (payload.useChatTemplate) {
    if (!chatTemplate) throw new BadRequestError('this model has no chat template');
    const rendered = chatTemplate.render([{ role: 'user', content: payload.prompt }], { addGenerationPrompt: true });
    promptIds = tokenizer.encode(rendered, { addSpecialTokens: false });
  } else {
    promptIds = tokenizer.encode(payload.prompt);
  }
  if (promptIds.length === 0) {
    const bos = tokenizer.special.bos ?? tokenizer.special.eos;
    if (!bos) throw new BadRequestError('the prompt is empty and the tokenizer has no start token to begin from');
    promptIds = [bos.id];
  }
  if (promptIds.length >= model.config.maxPositions) {
    throw new BadRequestError(`the prompt is ${promptIds.length} tokens; this model's context holds ${model.config.maxPositions}, with room needed for new tokens`);
  }
  const stopTokens = [...new Set([...tokenizer.special.eosIds, ...model.config.eosTokenIds])];
  const { sampling } = payload;
  let firstTokenAt: number | null = null;
  const result = await generate(model, promptIds, {
    maxNewTokens: sampling.maxNewTokens,
    temperature: sampling.temperature,
    topK: sampling.topK,
    topP: sampling.topP,
    repetitionPenalty: sampling.repetitionPenalty,
    seed: sampling.seed,
    stopTokens,
    signal: ctx.signal,
    decoder: tokenizer,
    skipSpecialTokens: true,
    vocabLimit: Math.min(tokenizer.vocabSize, model.config.vocabSize),
    onStep: (step) => {
      firstTokenAt ??= performance.now();
      ctx.emit({ type: 'token', delta: step.text, tokenId: step.token, index: step.index });
    },
  });
  if (result.finalText) ctx.emit({ type: 'token', delta: result.finalText, tokenId: -1, index: result.tokens.length });
  const finished = performance.now();
  return {
    text: result.text,
    tokenIds: result.tokens,
    promptTokens: result.promptTokens,
    stopReason: result.stopReason,
    totalMs: finished - started,
    decodeMs: firstTokenAt === null ? 0 : finished - firstTokenAt,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Methods, data, training, export

const ADAPTER_NAME = 'default';

interface Adapted {
  /** JSON of the settings, to tell whether a train call may keep this adapter. */
  key: string;
  peft: PeftModel | null;
  bottleneck: BottleneckModel | null;
  params: Tensor[];
  summary: AttachedMethod;
}

function requireLoaded(): LoadedModel {
  requireDevice();
  if (!loaded) throw new NoModelError('no model is loaded: load one first');
  return loaded;
}

function checkSettings(s: MethodSettings): void {
  if (typeof s !== 'object' || s === null || !['lora', 'qlora', 'adapter'].includes(s.method)) throw new BadRequestError('the method must be lora, qlora or adapter');
  if (s.method === 'adapter') {
    if (!Number.isSafeInteger(s.reductionFactor) || s.reductionFactor < 1) throw new BadRequestError(`the reduction factor must be an integer ≥ 1, got ${s.reductionFactor}`);
    if (s.placement !== 'pfeiffer' && s.placement !== 'houlsby') throw new BadRequestError('the placement must be pfeiffer or houlsby');
  } else {
    if (!Number.isSafeInteger(s.r) || s.r < 1) throw new BadRequestError(`the rank must be an integer ≥ 1, got ${s.r}`);
    if (!Number.isFinite(s.alpha) || s.alpha === 0) throw new BadRequestError(`alpha must be a number other than 0, got ${s.alpha}`);
    if (s.targetModules !== null && (!Array.isArray(s.targetModules) || s.targetModules.length === 0 || s.targetModules.some((t) => typeof t !== 'string' || t === ''))) {
      throw new BadRequestError('the target modules must be a non-empty list of module names');
    }
  }
  if (!(s.dropout >= 0 && s.dropout < 1)) throw new BadRequestError(`the dropout must be in [0, 1), got ${s.dropout}`);
}

function detachAdapter(): void {
  if (!adapted) return;
  if (adapted.peft) adapted.peft.unload();
  adapted.bottleneck?.detach();
  adapted = null;
}

async function attachMethod(settings: MethodSettings): Promise<AttachedMethod> {
  const current = requireLoaded();
  checkSettings(settings);
  if (current.quantized && settings.method !== 'qlora') {
    throw new BadRequestError('the model\'s linear layers are in NF4 since QLoRA was attached: load the model again to use LoRA or adapters');
  }
  detachAdapter();
  const model = current.model;
  const seed = 0;
  const defaultTargets = defaultTargetModules(model.config.modelType);
  let totalBase = 0;
  for (const tensor of model.parameters().values()) totalBase += tensor.size;
  if (settings.method === 'adapter') {
    const bottleneck = BottleneckModel.attach(model);
    try {
      bottleneck.addAdapter(ADAPTER_NAME, bottleneckConfig(settings.placement, { reductionFactor: settings.reductionFactor, dropout: settings.dropout }), { seed });
    } catch (error) {
      bottleneck.detach();
      throw new BadRequestError((error as Error).message);
    }
    const trainable = bottleneck.trainableParameterCount();
    const summary: AttachedMethod = {
      settings,
      trainableParameters: trainable,
      totalParameters: totalBase + trainable,
      targets: bottleneck.placements().map((p) => `layer ${p.layer} ${p.slot} (${p.downSize})`),
      defaultTargets,
    };
    adapted = { key: JSON.stringify(settings), peft: null, bottleneck, params: [...bottleneck.trainableParameters().values()], summary };
    return summary;
  }
  if (settings.method === 'qlora' && !current.quantized) {
    await quantizeLinears(model, { quantType: 'nf4', doubleQuant: true });
    current.quantized = true;
  }
  let peft: PeftModel;
  try {
    peft = attachLora(model, { r: settings.r, alpha: settings.alpha, dropout: settings.dropout, useRslora: settings.useRslora, targetModules: settings.targetModules ?? undefined }, { seed });
  } catch (error) {
    if (error instanceof Error && !(error instanceof RangeError)) throw new BadRequestError(error.message);
    throw error;
  }
  const counts = peft.parameterCounts();
  const summary: AttachedMethod = { settings, trainableParameters: counts.trainable, totalParameters: counts.total, targets: [...peft.adapterConfig().paths], defaultTargets };
  adapted = { key: JSON.stringify(settings), peft, bottleneck: null, params: [...peft.trainableParameters().values()], summary };
  return summary;
}

function checkSeqLen(seqLen: number, maxPositions: number): void {
  if (!Number.isSafeInteger(seqLen) || seqLen < 1 || seqLen > maxPositions) throw new BadRequestError(`the sequence length must be an integer in [1, ${maxPositions}], got ${seqLen}`);
}

function tokenize(current: LoadedModel, text: string, seqLen: number): TokenizedDataset {
  if (typeof text !== 'string') throw new BadRequestError('the dataset must be text');
  checkSeqLen(seqLen, current.model.config.maxPositions);
  const parsed = parseDataset(text, { fileName: 'the dataset' });
  return tokenizeDataset(parsed, { tokenizer: current.tokenizer, chatTemplate: current.chatTemplate, maxTokens: seqLen + 1, modelVocabSize: current.model.config.vocabSize });
}

async function inspectDataset({ text, seqLen }: Payload<'inspectDataset'>): Promise<DatasetSummary> {
  const current = requireLoaded();
  try {
    const dataset = tokenize(current, text, seqLen);
    let problem: string | null = null;
    try {
      requireUsable(dataset);
    } catch (error) {
      problem = (error as Error).message;
    }
    const { stats } = dataset;
    return {
      format: dataset.format,
      examples: stats.examples,
      tokens: stats.tokens,
      targetTokens: stats.targetTokens,
      issueCount: dataset.issueCount,
      issues: dataset.issues.map((i) => ({ line: i.line, message: i.message })),
      problem,
    };
  } catch (error) {
    if (!(error instanceof DatasetError)) throw error;
    return { format: '—', examples: 0, tokens: 0, targetTokens: 0, issueCount: error.issues.length, issues: error.issues.map((i) => ({ line: i.line, message: i.message })), problem: error.message };
  }
}

async function trainCall(payload: TrainRequest, ctx: CallContext): Promise<Result<'train'>> {
  const current = requireLoaded();
  if (!Number.isSafeInteger(payload.steps) || payload.steps < 1 || payload.steps > 100_000) throw new BadRequestError(`steps must be an integer in [1, 100000], got ${payload.steps}`);
  const dataset = tokenize(current, payload.dataset, payload.seqLen);
  requireUsable(dataset);
  if (!adapted || adapted.key !== JSON.stringify(payload.method)) await attachMethod(payload.method);
  const attached = adapted!;
  const padId = current.tokenizer.special.pad?.id ?? current.tokenizer.special.eos?.id ?? 0;
  // Every example trains: a validation split of a pasted handful of lines would leave little to learn from.
  const packed = packDataset(dataset, { seqLen: payload.seqLen, padId, seed: payload.seed, validationExamples: 0 });
  const setState = (state: TrainingState) => {
    if (attached.peft) {
      attached.peft.train(state.training);
      attached.peft.runtime.seed = state.seed;
      attached.peft.runtime.offset = 0;
    } else if (attached.bottleneck) {
      if (state.training) attached.bottleneck.train(state.seed);
      else attached.bottleneck.eval();
    }
  };
  const view = new AdapterTrainingView(current.model, attached.params, setState);
  const trainer = new Trainer(view, { train: packed.train, validation: null }, { steps: payload.steps, batchSize: payload.batchSize, lr: payload.lr, schedule: 'constant', seed: payload.seed }, {
    onEvent: (event) => {
      if (event.type === 'step') {
        ctx.emit({ type: 'trainStep', step: event.step, steps: payload.steps, loss: event.loss, skipped: false, tokensPerSecond: event.tokensPerSecond, elapsedMs: event.elapsedMs, etaMs: event.etaMs });
      } else if (event.type === 'skip') {
        ctx.emit({ type: 'trainStep', step: event.step, steps: payload.steps, loss: event.loss, skipped: true, tokensPerSecond: 0, elapsedMs: 0, etaMs: 0 });
      }
    },
  });
  try {
    const result = await trainer.run({ signal: ctx.signal });
    return { stopReason: result.stopReason, step: result.step, tokensPerSecond: result.tokensPerSecond };
  } finally {
    trainer.dispose();
    setState({ training: false, seed: 0 });
  }
}

async function exportAdapterCall(): Promise<Result<'exportAdapter'>> {
  const current = requireLoaded();
  if (!adapted) throw new NoModelError('no adapter is attached: choose a method and train first');
  const method = adapted.summary.settings.method;
  if (adapted.peft) {
    const files = await exportLoraAdapter(adapted.peft, { baseModelNameOrPath: current.summary.name });
    const bytes = bundleAdapter({
      layout: 'peft',
      configFile: ADAPTER_CONFIG_FILE,
      config: new TextDecoder().decode(files.get(ADAPTER_CONFIG_FILE)!),
      weightsFile: ADAPTER_WEIGHTS_FILE,
      weights: files.get(ADAPTER_WEIGHTS_FILE)!,
    });
    return { fileName: `tabtune-${method}-adapter.safetensors`, bytes };
  }
  const files = await exportBottleneckAdapter(adapted.bottleneck!, { modelName: current.summary.name });
  const bytes = bundleAdapter({
    layout: 'adapterhub',
    configFile: BOTTLENECK_CONFIG_FILE,
    config: new TextDecoder().decode(files.get(BOTTLENECK_CONFIG_FILE)!),
    weightsFile: BOTTLENECK_WEIGHTS_FILE,
    weights: files.get(BOTTLENECK_WEIGHTS_FILE)!,
  });
  return { fileName: `tabtune-${method}-adapter.safetensors`, bytes };
}

// ---------------------------------------------------------------------------------------------------------------
// Dispatch

type Handler<T extends CallType> = (payload: Payload<T>, ctx: CallContext) => Promise<Result<T>>;

const handlers: { [T in CallType]: { gpu: boolean; cancellable: boolean; run: Handler<T> } } = {
  catalog: { gpu: false, cancellable: false, run: async () => describeCatalog(capacity()) },
  init: { gpu: true, cancellable: false, run: () => init() },
  loadModel: { gpu: true, cancellable: true, run: loadModelCall },
  unloadModel: {
    gpu: true,
    cancellable: false,
    run: async () => {
      const had = loaded !== null;
      loaded?.model.dispose();
      loaded = null;
      adapted = null;
      return { unloaded: had };
    },
  },
  loadedModel: { gpu: false, cancellable: false, run: async () => loaded?.summary ?? null },
  generate: { gpu: true, cancellable: true, run: generateCall },
  attachMethod: { gpu: true, cancellable: false, run: ({ settings }) => attachMethod(settings) },
  attachedMethod: { gpu: false, cancellable: false, run: async () => adapted?.summary ?? null },
  inspectDataset: { gpu: false, cancellable: false, run: (payload) => inspectDataset(payload) },
  train: { gpu: true, cancellable: true, run: trainCall },
  exportAdapter: { gpu: true, cancellable: false, run: () => exportAdapterCall() },
  cancel: {
    gpu: false,
    cancellable: false,
    run: async ({ target }) => {
      const controller = cancellable.get(target);
      controller?.abort(new DOMException('cancelled by the user', 'AbortError'));
      return { found: controller !== undefined };
    },
  },
  loseDevice: {
    gpu: false,
    cancellable: false,
    run: async () => {
      if (!device) return { lost: false };
      device.gpu.device.destroy();
      return { lost: true };
    },
  },
};

async function handle(id: number, request: Request): Promise<void> {
  const entry = handlers[request.type] as { gpu: boolean; cancellable: boolean; run: Handler<CallType> } | undefined;
  if (!entry) throw new BadRequestError(`unknown call ${JSON.stringify(String(request.type))}`);
  const controller = new AbortController();
  if (entry.cancellable) cancellable.set(id, controller);
  const ctx: CallContext = { id, signal: controller.signal, emit: emitter(id) };
  const run = () => entry.run(request as Payload<CallType>, ctx);
  try {
    let result: unknown;
    if (entry.gpu) {
      const queued = gpuQueue.then(() => (controller.signal.throwIfAborted(), run()));
      gpuQueue = queued.catch(() => undefined);
      result = await queued;
    } else {
      result = await run();
    }
    post({ v: PROTOCOL_VERSION, kind: 'result', id, type: request.type, result } as ResponseMessage);
  } finally {
    cancellable.delete(id);
  }
}

worker.onmessage = (event: MessageEvent<unknown>) => {
  const message = event.data;
  if (!isRequestMessage(message)) {
    post({ v: PROTOCOL_VERSION, kind: 'error', id: -1, error: toFailure(new BadRequestError('a message that is not a call was ignored')) });
    return;
  }
  if (message.v !== PROTOCOL_VERSION) {
    const error = new BadRequestError(`protocol version ${message.v} is not this worker's ${PROTOCOL_VERSION}: reload the page`);
    post({ v: PROTOCOL_VERSION, kind: 'error', id: message.id, error: { ...toFailure(error), kind: 'protocol' } });
    return;
  }
  handle(message.id, message.request).catch((error: unknown) => {
    post({ v: PROTOCOL_VERSION, kind: 'error', id: message.id, error: toFailure(error) });
  });
};
