// Actions: plain functions that drive the engine worker through its client and record what happens in the
// store. Components call these; they never talk to the worker themselves.

import type { EngineClient } from '../worker/client.ts';
import { EngineCallError } from '../worker/client.ts';
import type { EngineFailure, ModelSource } from '../worker/protocol.ts';
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
