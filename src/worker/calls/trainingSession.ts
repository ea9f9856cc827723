// A training run as the worker keeps it between calls: the Trainer over the attached adapter (its weights and AdamW
// moments on the GPU), its saved run in browser storage, and the event channel of the call running it now. A
// paused run is a session whose trainer's run() returned at a step boundary; run() again continues exactly. The
// session belongs to the model and adapter it was made with: once either is replaced (or the device is lost) it
// is stale and only its checkpoint in storage can continue it.

import type { Gpu } from '../../gpu/runtime.ts';
import { Trainer, type TrainEvent } from '../../train/trainer.ts';
import type { AdapterTrainingView } from '../../train/trainingView.ts';
import { engineState, type Adapted, type CallContext, type LoadedModel } from '../engineState.ts';
import type { EngineEvent, TrainMemory, TrainResult } from '../protocol.ts';
import type { SavedRunStore } from './savedRunFiles.ts';

export interface TrainingSession {
  readonly trainer: Trainer;
  readonly view: AdapterTrainingView;
  readonly loaded: LoadedModel;
  readonly adapted: Adapted;
  /** Where the run's checkpoints and description are saved; null when browser storage is unavailable or off. */
  readonly store: SavedRunStore | null;
  /** The running call's event channel; a paused run has none. */
  emit: (event: EngineEvent) => void;
  /** Steps done at the last checkpoint written (or restored), null before one. */
  checkpointStep: number | null;
  /** Free the optimizer state and put the adapters in evaluation mode (when they are still attached). */
  dispose(): void;
}

const nowhere = () => undefined;

function memoryOf(view: AdapterTrainingView): TrainMemory {
  const { total, ...byCategory } = view.engine.memory();
  return { total, byCategory, peakTotal: Math.max(view.peakBytes, total) };
}

/** The Trainer's events as protocol events, sent to whichever call runs the session now. */
function forward(session: TrainingSession, event: TrainEvent): void {
  const steps = session.trainer.config.steps;
  switch (event.type) {
    case 'step':
      session.emit({ type: 'trainStep', step: event.step, steps, loss: event.loss, skipped: false, tokensPerSecond: event.tokensPerSecond, elapsedMs: event.elapsedMs, etaMs: event.etaMs, memory: memoryOf(session.view) });
      return;
    case 'skip':
      session.emit({ type: 'trainStep', step: event.step, steps, loss: event.loss, skipped: true, tokensPerSecond: 0, elapsedMs: 0, etaMs: 0, memory: memoryOf(session.view) });
      return;
    case 'eval':
      session.emit({ type: 'trainEval', step: event.step, loss: event.loss, perplexity: event.perplexity });
      return;
    case 'checkpoint':
      session.checkpointStep = event.step;
      session.emit({ type: 'trainCheckpoint', step: event.step, bytes: event.bytes });
      return;
    default:
      // diverged and checkpoint-failed end run(): its result reports them.
      return;
  }
}

/** A session around the trainer `makeTrainer` builds (given the handler for its events). */
export function createSession(parts: {
  view: AdapterTrainingView;
  loaded: LoadedModel;
  adapted: Adapted;
  store: SavedRunStore | null;
  makeTrainer: (onEvent: (event: TrainEvent) => void) => Trainer;
}): TrainingSession {
  const { view, loaded, adapted, store } = parts;
  let self: TrainingSession | null = null;
  const trainer = parts.makeTrainer((event) => {
    if (self) forward(self, event);
  });
  const session: TrainingSession = {
    trainer,
    view,
    loaded,
    adapted,
    store,
    emit: nowhere,
    checkpointStep: null,
    dispose() {
      trainer.dispose();
      if (isCurrent(session)) view.setTrainingState({ training: false, seed: 0 });
    },
  };
  self = session;
  return session;
}

/** Whether the session's model and adapter are still the ones on the device. */
export function isCurrent(session: TrainingSession): boolean {
  return session.loaded === engineState.loaded && session.adapted === engineState.adapted && !session.loaded.model.engine.gpu.isLost;
}

/** Drop the kept session, if any (a new run replaces it; ending a run frees it). */
export function endKeptSession(): boolean {
  const session = engineState.training;
  if (!session) return false;
  engineState.training = null;
  session.dispose();
  return true;
}

/**
 * How long a failed run waits for the device's loss to be confirmed: a readback fails a moment before it is, and
 * on a busy machine that moment can last seconds (the confirmation crosses to the GPU process and back). A
 * failure with a healthy device is rare, so waiting costs little; missing the loss would end the run for good.
 */
const LOSS_CONFIRM_MS = 5000;

/**
 * The DeviceLostError when the device is gone, else null. A destroyed device fails pending readbacks (as aborted
 * ones) just before its `lost` promise settles, so a failure waits a moment for that promise.
 */
async function deviceLoss(gpu: Gpu): Promise<unknown> {
  if (!gpu.isLost) await Promise.race([gpu.device.lost, new Promise((resolve) => setTimeout(resolve, LOSS_CONFIRM_MS))]);
  if (!gpu.isLost) return null;
  try {
    gpu.checkHealthy();
  } catch (lost) {
    return lost;
  }
  return null;
}

/**
 * Run the session until it completes, pauses (the call's signal) or fails. A completed or diverged run ends: its
 * optimizer state is freed and its saved run removed. A paused run stays kept (its checkpoint was just written).
 * A failure (a lost device) drops it from memory; its saved run stays, to continue from the checkpoint.
 */
export async function runSession(session: TrainingSession, ctx: CallContext): Promise<TrainResult> {
  engineState.training = session;
  session.emit = ctx.emit;
  let result;
  const { gpu } = session.loaded.model.engine;
  try {
    result = await session.trainer.run({ signal: ctx.signal });
    // A device lost during a checkpoint's readback ends run() as a failed checkpoint: it is the loss that matters.
    if (gpu.isLost) gpu.checkHealthy();
  } catch (error) {
    if (engineState.training === session) endKeptSession();
    throw (await deviceLoss(gpu)) ?? error;
  } finally {
    session.emit = nowhere;
    if (isCurrent(session)) session.view.setTrainingState({ training: false, seed: 0 });
  }
  const base = { step: result.step, tokensPerSecond: result.tokensPerSecond, checkpointStep: session.checkpointStep };
  switch (result.stopReason) {
    case 'completed':
    case 'diverged':
      endKeptSession();
      // A leftover saved run would only be offered again after a reload; the run itself is done either way.
      await session.store?.clear().catch(nowhere);
      return { ...base, stopReason: result.stopReason, checkpointStep: null, checkpointError: null };
    case 'checkpoint-failed':
      return { ...base, stopReason: 'checkpointFailed', checkpointError: result.checkpointError?.message ?? 'the checkpoint could not be written' };
    default:
      return { ...base, stopReason: 'paused', checkpointError: null };
  }
}
