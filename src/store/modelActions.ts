// Loading and unloading models through the worker, with progress and the memory estimate in the model slice.

import type { MethodKind, ModelSource, WeightStorage } from '../worker/protocol.ts';
import { engine, failureOf, state } from './engineClient.ts';
import type { ReloadableSource } from './model.ts';
import { inspectDataset } from './trainingActions.ts';

export function demoSource(): ModelSource {
  return { kind: 'demo', baseUrl: new URL('demo/', document.baseURI).href };
}

function reloadableOf(source: ModelSource): ReloadableSource | null {
  if (source.kind === 'demo') return { kind: 'demo' };
  if (source.kind === 'hub') return { kind: 'hub', spec: source.spec, ...(source.endpoint ? { endpoint: source.endpoint } : {}) };
  return null;
}

/** The demo model's load when the page opened, which a load the user asks for replaces. */
let openingLoad: Promise<void> | null = null;

/** Load a model; `weights` (default: the model panel's choice, which it then becomes) says f32 or NF4 linears. */
export async function loadModel(source: ModelSource, label: string, ignoreBudget = false, weights: WeightStorage = state().model.weights): Promise<void> {
  if (state().model.status === 'loading') {
    if (!openingLoad) return; // one load at a time
    cancelLoad();
    await openingLoad;
    if (state().model.status === 'loading') return; // another request was first
  }
  state().patchModel({ weights });
  const previous = state().model;
  const running = engine().start('loadModel', { source, ignoreBudget, weights }, (event) => {
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
    // A checkpoint stored in 4-bit has no float weights for LoRA or adapters: QLoRA is the one method that trains on it.
    if (summary.prequantized && state().training.settings.method !== 'qlora') state().setMethodSettings({ method: 'qlora' });
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

/** What a page opens with: the built-in demo model, unless the user asks for another model meanwhile. */
export async function loadOpeningModel(): Promise<void> {
  const load = loadModel(demoSource(), 'Demo model');
  openingLoad = load;
  try {
    await load;
  } finally {
    openingLoad = null;
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

/** The weights a method trains on: QLoRA's NF4 base, f32 for LoRA and adapters. */
export function weightsFor(method: MethodKind): WeightStorage {
  return method === 'qlora' ? 'nf4' : 'f32';
}
