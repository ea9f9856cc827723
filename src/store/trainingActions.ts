// Methods, datasets and training runs through the worker: attach, inspect; start, pause, resume and end a run,
// with its events (steps, validation losses, checkpoints) throttled into the training slice; a run interrupted by
// a lost device; and the adapter download. A run continued from browser storage starts here too
// (savedRunActions.ts prepares it).

import type { RunningCall } from '../worker/client.ts';
import type { EngineEvent, LossPoint, MethodSettings, SavedRun, TrainRequest, TrainResult } from '../worker/protocol.ts';
import { download, engine, failureOf, state } from './engineClient.ts';
import type { TrainingState, TrainProgress } from './training.ts';

/** Attach the chosen method's adapter to the loaded model (the worker reports its trainable parameters). */
export async function attachMethod(): Promise<void> {
  const { training } = state();
  if (training.attaching || training.running) return;
  const settings = training.settings;
  state().patchTraining({ attaching: true, attachError: null });
  try {
    const attached = await engine().call('attachMethod', { settings });
    // Settings changed while attaching: what is attached no longer matches them.
    state().patchTraining({ attaching: false, attached: state().training.settings === settings ? attached : null });
  } catch (error) {
    state().patchTraining({ attaching: false, attachError: failureOf(error) });
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

/** A run's events, gathered and written into the store at most every PROGRESS_THROTTLE_MS. */
class RunFeed {
  private progress: TrainProgress | null = null;
  private losses: LossPoint[] = [];
  private evals: LossPoint[] = [];
  private checkpointStep: number | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  readonly onEvent = (event: EngineEvent): void => {
    switch (event.type) {
      case 'trainStep': {
        const previous = this.progress ?? state().training.progress;
        const loss = event.skipped ? (previous?.loss ?? NaN) : event.loss;
        if (!event.skipped && Number.isFinite(event.loss)) this.losses.push({ step: event.step, loss: event.loss });
        this.progress = { step: event.step, steps: event.steps, loss, tokensPerSecond: event.tokensPerSecond, etaMs: event.etaMs, memory: event.memory };
        break;
      }
      case 'trainEval':
        if (Number.isFinite(event.loss)) this.evals.push({ step: event.step, loss: event.loss });
        break;
      case 'trainCheckpoint':
        this.checkpointStep = event.step;
        break;
      case 'trainRestored': {
        // The run continues from its checkpoint: the histories so far replace what the store shows.
        this.stop();
        const last = event.losses[event.losses.length - 1];
        state().patchTraining({
          progress: { step: event.step, steps: event.steps, loss: last?.loss ?? NaN, tokensPerSecond: 0, etaMs: 0, memory: null },
          lossHistory: event.losses,
          validationHistory: event.evals,
          checkpointStep: event.step,
        });
        return;
      }
      default:
        return;
    }
    this.timer ??= setTimeout(() => this.flush(), PROGRESS_THROTTLE_MS);
  };

  /** Write what is pending now and stop the timer. */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.flush();
  }

  private flush(): void {
    this.timer = null;
    const { training } = state();
    const patch: Partial<TrainingState> = {};
    if (this.progress) patch.progress = this.progress;
    if (this.losses.length) patch.lossHistory = [...training.lossHistory, ...this.losses];
    if (this.evals.length) patch.validationHistory = [...training.validationHistory, ...this.evals];
    if (this.checkpointStep !== null) patch.checkpointStep = this.checkpointStep;
    this.progress = null;
    this.losses = [];
    this.evals = [];
    this.checkpointStep = null;
    if (Object.keys(patch).length) state().patchTraining(patch);
  }
}

function trainRequest(fromCheckpoint: boolean): TrainRequest {
  const { training, model } = state();
  return {
    method: training.settings,
    dataset: training.dataset,
    steps: training.steps,
    seqLen: training.seqLen,
    batchSize: training.batchSize,
    lr: training.lr,
    schedule: training.schedule,
    warmupSteps: training.warmupSteps,
    seed: training.seed,
    checkpointEvery: training.checkpointEvery,
    validationShare: training.validationShare,
    evalEvery: training.evalEvery,
    model: { source: model.reloadable, label: model.sourceLabel ?? model.summary?.name ?? 'the model' },
    fromCheckpoint,
  };
}

export interface StartOptions {
  /** Continue the run saved in browser storage from its checkpoint. */
  fromCheckpoint?: boolean;
  /** The saved run being continued from the offer (offered again, with the reason, when it cannot be). */
  offered?: SavedRun;
}

/** Start a run (or continue the saved one from its checkpoint); resolves when the call ends (done, paused, failed). */
export async function startTraining(options: StartOptions = {}): Promise<void> {
  const { training } = state();
  const fromCheckpoint = options.fromCheckpoint ?? false;
  if (training.phase !== 'idle' && !(fromCheckpoint && training.phase === 'interrupted')) return;
  const feed = new RunFeed();
  const running = engine().start('train', trainRequest(fromCheckpoint), feed.onEvent);
  state().patchTraining({
    running: true,
    phase: 'running',
    progress: null,
    lossHistory: [],
    validationHistory: [],
    checkpointStep: null,
    outcome: null,
    error: null,
    callId: running.id,
    // A new run replaces whatever run was saved; a continued one is no longer on offer.
    savedRun: { state: 'none' },
  });
  await follow('train', running, feed, options.offered ?? null);
}

/** Ask the running run to pause at the next step boundary (the worker writes a checkpoint and keeps the run). */
export function pauseTraining(): void {
  const { phase, callId } = state().training;
  if (phase !== 'running' || callId === null) return;
  state().patchTraining({ phase: 'pausing' });
  void engine().call('cancel', { target: callId }).catch(() => undefined);
}

/** Continue the paused run exactly where it stopped. */
export async function resumeTraining(): Promise<void> {
  if (state().training.phase !== 'paused') return;
  const feed = new RunFeed();
  const running = engine().start('resumeTraining', {}, feed.onEvent);
  state().patchTraining({ phase: 'running', outcome: null, error: null, callId: running.id });
  await follow('resume', running, feed, null);
}

/** End the run: stop it at the next step boundary when it runs, then free it in the worker; the adapter stays. */
export async function endTraining(): Promise<void> {
  const { phase, callId } = state().training;
  if (phase === 'running' || phase === 'pausing') {
    state().patchTraining({ phase: 'ending' });
    if (phase === 'running' && callId !== null) void engine().call('cancel', { target: callId }).catch(() => undefined);
    return; // follow() ends it once the call returns
  }
  if (phase === 'paused' || phase === 'interrupted') await finishEnd();
}

/** The GPU device was lost: a run that owned the settings can continue from its checkpoint (not an error). */
export function markInterrupted(): void {
  if (state().training.running) state().patchTraining({ phase: 'interrupted', callId: null, error: null, outcome: null });
}

async function finishEnd(): Promise<void> {
  state().patchTraining({ phase: 'ending' });
  const step = state().training.progress?.step ?? 0;
  try {
    await engine().call('endTraining', {});
    state().patchTraining({ running: false, phase: 'idle', callId: null, checkpointStep: null, outcome: `Ended after ${step} steps; the trained adapter stays attached.` });
  } catch (error) {
    state().patchTraining({ running: false, phase: 'idle', callId: null, error: failureOf(error) });
  }
}

/** Wait for a train or resumeTraining call and record how it ended. */
async function follow(kind: 'train' | 'resume', running: RunningCall<'train' | 'resumeTraining'>, feed: RunFeed, offered: SavedRun | null): Promise<void> {
  const settings = state().training.settings;
  try {
    const result = await running.result;
    feed.stop();
    await settle(result);
  } catch (error) {
    feed.stop();
    const failure = failureOf(error);
    const { gpu, training } = state();
    if (failure.kind === 'deviceLost' || gpu.state === 'lost' || training.phase === 'interrupted') {
      markInterrupted();
    } else if (failure.kind === 'cancelled') {
      // Cancelled while still queued, so nothing ran: a run being resumed is still kept paused in the worker.
      if (kind === 'train') state().patchTraining({ running: false, phase: 'idle', callId: null });
      else if (training.phase === 'ending') await finishEnd();
      else state().patchTraining({ phase: 'paused', callId: null });
    } else {
      state().patchTraining({ running: false, phase: 'idle', callId: null, error: failure });
      if (offered) state().patchTraining({ savedRun: { state: 'offer', run: offered, problem: failure.message } });
    }
  }
  // The run attached the method's adapter when it was not: ask for its numbers (cheap: it is attached).
  if (state().training.settings === settings && state().training.attached === null) await attachSummary(settings);
}

async function settle(result: TrainResult): Promise<void> {
  if (result.stopReason === 'paused' || result.stopReason === 'checkpointFailed') {
    if (state().training.phase === 'ending') {
      await finishEnd();
      return;
    }
    const saved = result.checkpointStep !== null ? ` Checkpoint saved at step ${result.checkpointStep}.` : '';
    const outcome =
      result.stopReason === 'paused'
        ? `Paused after ${result.step} steps.${saved}`
        : `Paused after ${result.step} steps: the checkpoint could not be saved (${result.checkpointError}). Resume continues from memory.`;
    state().patchTraining({ phase: 'paused', callId: null, checkpointStep: result.checkpointStep ?? state().training.checkpointStep, outcome });
    return;
  }
  const outcome = result.stopReason === 'completed' ? `Finished ${result.step} steps.` : `The run diverged after ${result.step} steps (the loss stayed NaN or infinite) and ended.`;
  state().patchTraining({ running: false, phase: 'idle', callId: null, checkpointStep: null, outcome });
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

/** Download the attached adapter: one safetensors file (its config in the header metadata), or a zip of the library's files. */
export async function exportAdapter(format: 'safetensors' | 'zip' = 'safetensors'): Promise<void> {
  if (state().training.exporting) return;
  state().patchTraining({ exporting: true, error: null });
  try {
    const { fileName, bytes } = await engine().call('exportAdapter', { format });
    download(bytes, fileName);
    state().patchTraining({ exporting: false });
  } catch (error) {
    state().patchTraining({ exporting: false, error: failureOf(error) });
  }
}
