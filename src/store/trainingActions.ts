// Methods, datasets and training runs through the worker: attach, inspect, start and stop, with the steps
// throttled into the training slice; and the adapter download.

import type { MethodSettings } from '../worker/protocol.ts';
import { download, engine, failureOf, state } from './engineClient.ts';
import type { TrainProgress } from './training.ts';

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
    download(bytes, fileName);
    state().patchTraining({ exporting: false });
  } catch (error) {
    state().patchTraining({ exporting: false, error: failureOf(error) });
  }
}
