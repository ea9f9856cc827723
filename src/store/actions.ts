// Actions: plain functions that drive the engine worker through its client and record what happens in the
// store. Components call these; they never talk to the worker themselves.

import type { EngineClient } from '../worker/client.ts';
import { EngineCallError } from '../worker/client.ts';
import type { EngineFailure, MethodSettings, ModelSource } from '../worker/protocol.ts';
import type { TrainProgress } from './training.ts';
import { useApp } from './index.ts';
import type { ReloadableSource } from './model.ts';

let client: EngineClient | null = null;

function failureOf(error: unknown): EngineFailure {
  if (error instanceof EngineCallError) return error.failure;
  return { kind: 'internal', name: error instanceof Error ? error.name : 'Error', message: error instanceof Error ? error.message : String(error), retryable: false };
}

function engine(): EngineClient {
  if (!client) throw new Error('the engine is not connected');
  return client;
}

const state = () => useApp.getState();

/** Attach the worker client, listen for news, and start the engine (or say why WebGPU is missing). */
export async function connectEngine(connected: EngineClient): Promise<void> {
  client = connected;
  connected.subscribe((event) => {
    if (event.type !== 'deviceLost') return;
    state().setGpu({ state: 'lost', reason: event.reason, message: event.message, restarting: false });
    state().patchModel({ status: 'none', summary: null, progress: null, callId: null });
    state().patchTraining({ attached: null });
  });
  await startEngine();
}

/** Shown without starting anything when the page itself has no WebGPU. */
export function reportNoWebGpu(reason: string): void {
  state().setGpu({ state: 'unavailable', reason });
}

async function refreshCatalog(): Promise<void> {
  try {
    state().patchModel({ catalog: await engine().call('catalog', {}) });
  } catch (error) {
    state().patchModel({ error: failureOf(error) });
  }
}

async function startEngine(): Promise<boolean> {
  await refreshCatalog();
  try {
    const device = await engine().call('init', {});
    state().setGpu({ state: 'ready', device });
    await refreshCatalog(); // now with the device's limits
    return true;
  } catch (error) {
    state().setGpu({ state: 'unavailable', reason: failureOf(error).message });
    return false;
  }
}

/** After a device loss: acquire a new device, then load the last model again when that needs no user action. */
export async function restartEngine(): Promise<void> {
  const gpu = state().gpu;
  if (gpu.state === 'lost') state().setGpu({ ...gpu, restarting: true });
  const started = await startEngine();
  const again = state().model.reloadable;
  if (started && again) await loadModel(again.kind === 'demo' ? demoSource() : again, again.kind === 'demo' ? 'Demo model' : again.spec);
}

export function demoSource(): ModelSource {
  return { kind: 'demo', baseUrl: new URL('demo/', document.baseURI).href };
}

function reloadableOf(source: ModelSource): ReloadableSource | null {
  if (source.kind === 'demo') return { kind: 'demo' };
  if (source.kind === 'hub') return { kind: 'hub', spec: source.spec, ...(source.endpoint ? { endpoint: source.endpoint } : {}) };
  return null;
}

export async function loadModel(source: ModelSource, label: string, ignoreBudget = false): Promise<void> {
  if (state().model.status === 'loading') return;
  const previous = state().model;
  const running = engine().start('loadModel', { source, ignoreBudget }, (event) => {
    if (event.type === 'loadProgress') {
      const { phase, item, done, total, unit } = event;
      state().patchModel({ progress: { phase, item, done, total, unit } });
    } else if (event.type === 'estimate') {
      state().patchModel({ estimate: event.estimate });
    }
  });
  state().patchModel({ status: 'loading', sourceLabel: label, progress: null, estimate: null, error: null, callId: running.id });
  try {
    const summary = await running.result;
    state().patchModel({ status: 'ready', summary, progress: null, callId: null, reloadable: reloadableOf(source) });
    state().patchTraining({ attached: null, lossHistory: [], progress: null, outcome: null });
    if (state().training.dataset) void inspectDataset();
  } catch (error) {
    // A load that failed before replacing the model leaves the earlier one loaded; ask the worker which.
    let summary = previous.summary;
    try {
      summary = await engine().call('loadedModel', {});
    } catch {
      summary = null;
    }
    state().patchModel({ status: summary ? 'ready' : 'none', summary, progress: null, callId: null, error: failureOf(error) });
  }
}

export function cancelLoad(): void {
  const id = state().model.callId;
  if (id !== null) void engine().call('cancel', { target: id }).catch(() => undefined);
}

export async function unloadModel(): Promise<void> {
  await engine().call('unloadModel', {});
  state().patchModel({ status: 'none', summary: null, error: null, estimate: null });
  state().patchTraining({ attached: null });
}

export async function generate(): Promise<void> {
  const { playground } = state();
  if (playground.running) return;
  const running = engine().start('generate', { prompt: playground.prompt, sampling: playground.sampling, useChatTemplate: playground.useChatTemplate }, (event) => {
    if (event.type !== 'token') return;
    const current = state().playground;
    state().patchPlayground({ output: current.output + event.delta, tokens: event.tokenId >= 0 ? current.tokens + 1 : current.tokens });
  });
  state().patchPlayground({ running: true, output: '', tokens: 0, result: null, error: null, callId: running.id });
  try {
    const result = await running.result;
    state().patchPlayground({ running: false, result, output: result.text, tokens: result.tokenIds.length, callId: null });
  } catch (error) {
    state().patchPlayground({ running: false, error: failureOf(error), callId: null });
  }
}

export function stopGenerating(): void {
  const id = state().playground.callId;
  if (id !== null) void engine().call('cancel', { target: id }).catch(() => undefined);
}

/** Fault injection for tests (`?faults` in the URL exposes it): destroy the GPU device. */
export async function loseDevice(): Promise<boolean> {
  return (await engine().call('loseDevice', {})).lost;
}

// ---------------------------------------------------------------------------------------------------------------
// Method, data, training, export

/** Attach the chosen method's adapter to the loaded model (the worker reports its trainable parameters). */
export async function attachMethod(): Promise<void> {
  const { training } = state();
  if (training.attaching || training.running) return;
  const settings = training.settings;
  state().patchTraining({ attaching: true, error: null });
  try {
    const attached = await engine().call('attachMethod', { settings });
    // Settings changed while attaching: what is attached no longer matches them.
    state().patchTraining({ attaching: false, attached: state().training.settings === settings ? attached : null });
  } catch (error) {
    state().patchTraining({ attaching: false, error: failureOf(error) });
  }
}

let inspectSerial = 0;

/** What the worker finds in the pasted dataset (format, examples, tokens, bad lines). */
export async function inspectDataset(): Promise<void> {
  const serial = ++inspectSerial;
  const { training, model } = state();
  if (model.status !== 'ready' || training.dataset.trim() === '') {
    state().patchTraining({ datasetSummary: null });
    return;
  }
  try {
    const summary = await engine().call('inspectDataset', { text: training.dataset, seqLen: training.seqLen });
    if (serial === inspectSerial) state().patchTraining({ datasetSummary: summary });
  } catch (error) {
    if (serial === inspectSerial) state().patchTraining({ datasetSummary: null, error: failureOf(error) });
  }
}

/** The store gets the latest step at most this often; the chart and the numbers follow it. */
const PROGRESS_THROTTLE_MS = 200;

export async function startTraining(): Promise<void> {
  const { training } = state();
  if (training.running) return;
  let pending: { progress: TrainProgress; losses: number[] } | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const flush = () => {
    timer = null;
    if (!pending) return;
    const { progress, losses } = pending;
    pending = null;
    state().patchTraining({ progress, lossHistory: losses.length ? [...state().training.lossHistory, ...losses] : state().training.lossHistory });
  };
  const settings = training.settings;
  const running = engine().start(
    'train',
    { method: settings, dataset: training.dataset, steps: training.steps, seqLen: training.seqLen, batchSize: 1, lr: training.lr, seed: 0 },
    (event) => {
      if (event.type !== 'trainStep') return;
      const losses = pending?.losses ?? [];
      if (!event.skipped && Number.isFinite(event.loss)) losses.push(event.loss);
      const previous = pending?.progress ?? state().training.progress;
      const loss = event.skipped ? (previous?.loss ?? NaN) : event.loss;
      pending = { progress: { step: event.step, steps: event.steps, loss, tokensPerSecond: event.tokensPerSecond, etaMs: event.etaMs }, losses };
      timer ??= setTimeout(flush, PROGRESS_THROTTLE_MS);
    },
  );
  state().patchTraining({ running: true, progress: null, lossHistory: [], outcome: null, error: null, callId: running.id });
  try {
    const result = await running.result;
    if (timer !== null) clearTimeout(timer);
    flush();
    const outcome = result.stopReason === 'completed' ? `Finished ${result.step} steps.` : result.stopReason === 'aborted' ? `Stopped after ${result.step} steps.` : `Ended after ${result.step} steps (${result.stopReason}).`;
    state().patchTraining({ running: false, callId: null, outcome });
    // The run attached the method's adapter when it was not: ask for its numbers (cheap: it is attached).
    if (state().training.settings === settings && state().training.attached === null) await attachSummary(settings);
  } catch (error) {
    if (timer !== null) clearTimeout(timer);
    flush();
    state().patchTraining({ running: false, callId: null, error: failureOf(error) });
  }
}

async function attachSummary(settings: MethodSettings): Promise<void> {
  // attachMethod with the same settings would replace the trained adapter; the run's attach is reported instead.
  try {
    const attached = await engine().call('attachedMethod', {});
    if (attached && state().training.settings === settings) state().patchTraining({ attached });
  } catch {
    // the numbers are a nicety
  }
}

export function stopTraining(): void {
  const id = state().training.callId;
  if (id !== null) void engine().call('cancel', { target: id }).catch(() => undefined);
}

/** Download the attached adapter as one safetensors file (its config in the header metadata). */
export async function exportAdapter(): Promise<void> {
  if (state().training.exporting) return;
  state().patchTraining({ exporting: true, error: null });
  try {
    const { fileName, bytes } = await engine().call('exportAdapter', {});
    const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/octet-stream' }));
    const link = document.createElement('a');
    link.href = url;
    link.download = fileName;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    state().patchTraining({ exporting: false });
  } catch (error) {
    state().patchTraining({ exporting: false, error: failureOf(error) });
  }
}
