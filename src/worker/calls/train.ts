// The worker's training calls. `train` tokenizes and packs the dataset (holding out a validation share), saves the
// run's description and dataset in browser storage, and runs the Trainer over the attached adapter, reporting
// steps, validation losses and checkpoints as events; with fromCheckpoint it continues the saved run from its
// checkpoint instead. A cancel pauses at a step boundary (a checkpoint is written) and the worker keeps the run:
// `resumeTraining` continues it exactly, `endTraining` ends it. `savedRun` and `discardSavedRun` are what a
// reloaded page offers and refuses.

import type { LoadedCheckpoint } from '../../train/checkpoint.ts';
import { requireUsable } from '../../train/data.ts';
import { MAX_SEED, packDataset } from '../../train/packing.ts';
import { SCHEDULE_KINDS } from '../../train/schedule.ts';
import { resolveTrainerConfig, ResumeMismatchError, Trainer, type TrainerConfig, type TrainingState } from '../../train/trainer.ts';
import { AdapterTrainingView } from '../../train/trainingView.ts';
import { engineState, requireDevice, requireLoaded, type CallContext } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import { MAX_BATCH_SIZE, type Result, type SavedRunDescription, type TrainRequest } from '../protocol.ts';
import { tokenize } from './dataset.ts';
import { attachMethod } from './method.ts';
import { describeRun, settingsDifference, textFingerprint } from './savedRun.ts';
import { opfsRunFiles, SavedRunStore } from './savedRunFiles.ts';
import { createSession, endKeptSession, isCurrent, runSession, type TrainingSession } from './trainingSession.ts';
import { checkValidationShare, validationExampleCount } from './trainingSplit.ts';

const MAX_STEPS = 100_000;

/** The saved-run store in this worker's origin-private file system; null when the browser offers none. */
async function openStore(): Promise<SavedRunStore | null> {
  try {
    return new SavedRunStore(await opfsRunFiles());
  } catch {
    return null;
  }
}

function checkInteger(what: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new BadRequestError(`${what} must be an integer in [${min}, ${max}], got ${value}`);
}

function checkRequest(payload: TrainRequest): void {
  checkInteger('steps', payload.steps, 1, MAX_STEPS);
  checkInteger('the batch size', payload.batchSize, 1, MAX_BATCH_SIZE);
  checkInteger('the checkpoint interval', payload.checkpointEvery, 0, MAX_STEPS);
  checkInteger('the evaluation interval', payload.evalEvery, 0, MAX_STEPS);
  if (!SCHEDULE_KINDS.includes(payload.schedule)) throw new BadRequestError(`the learning-rate schedule must be one of ${SCHEDULE_KINDS.join(', ')}, got ${JSON.stringify(payload.schedule)}`);
  checkInteger('the warm-up steps', payload.warmupSteps, 0, MAX_STEPS);
  if (payload.warmupSteps >= payload.steps) throw new BadRequestError(`the warm-up steps must be fewer than the ${payload.steps} steps of the run, got ${payload.warmupSteps}`);
  checkInteger('the seed', payload.seed, 0, MAX_SEED);
  try {
    checkValidationShare(payload.validationShare);
  } catch (error) {
    throw new BadRequestError((error as Error).message);
  }
  if (typeof payload.model !== 'object' || payload.model === null || typeof payload.model.label !== 'string') throw new BadRequestError('the run must name its model');
}

/** The saved run this request continues, checked against it; BadRequestError saying what differs. */
async function savedRunFor(payload: TrainRequest, store: SavedRunStore | null, modelType: string): Promise<{ description: SavedRunDescription; checkpoint: LoadedCheckpoint | null }> {
  if (!store) throw new BadRequestError('browser storage is not available in this browser, so there is no saved run to continue');
  const description = await store.description();
  if (!description) throw new BadRequestError('there is no saved run to continue (it finished or was discarded)');
  const difference = settingsDifference(description.settings, payload);
  if (difference) throw new BadRequestError(`the saved run cannot continue with other settings (${difference})`);
  if (textFingerprint(payload.dataset) !== description.dataset.fingerprint) throw new BadRequestError('the saved run cannot continue on another dataset: the dataset was changed since it was saved');
  if (description.model.modelType !== modelType) {
    throw new BadRequestError(`the saved run trained ${description.model.label} (a ${description.model.modelType} model); the loaded model is a ${modelType} model`);
  }
  return { description, checkpoint: await store.checkpoint(description) };
}

export async function trainCall(payload: TrainRequest, ctx: CallContext): Promise<Result<'train'>> {
  checkRequest(payload);
  endKeptSession(); // a new run, or a run continued from storage, replaces a paused one
  const current = requireLoaded();
  const dataset = tokenize(current, payload.dataset, payload.seqLen);
  requireUsable(dataset);
  const store = await openStore();
  const saved = payload.fromCheckpoint ? await savedRunFor(payload, store, current.summary.modelType) : null;
  const runId = saved ? saved.description.runId : crypto.randomUUID();

  if (engineState.adapted?.key !== JSON.stringify(payload.method)) await attachMethod(payload.method);
  const attached = engineState.adapted!;
  const padId = current.tokenizer.special.pad?.id ?? current.tokenizer.special.eos?.id ?? 0;
  const validationExamples = validationExampleCount(dataset.examples.length, payload.validationShare);
  const packed = packDataset(dataset, { seqLen: payload.seqLen, padId, seed: payload.seed, validationExamples });
  const config: TrainerConfig = {
    steps: payload.steps,
    batchSize: payload.batchSize,
    lr: payload.lr,
    schedule: payload.schedule,
    warmupSteps: payload.warmupSteps,
    seed: payload.seed,
    evalEvery: payload.evalEvery,
  };
  resolveTrainerConfig(config); // a bad setting fails here, before anything is saved
  if (!saved && store) await beginRun(store, payload, runId, current.summary.modelType);

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
  const runStore = payload.checkpointEvery > 0 ? store : null;
  const session = createSession({
    view,
    loaded: current,
    adapted: attached,
    store: runStore,
    makeTrainer: (onEvent) => new Trainer(view, { train: packed.train, validation: packed.validation }, config, { onEvent, checkpoint: runStore?.saver(runId, payload.checkpointEvery) }),
  });
  if (saved?.checkpoint) restore(session, saved.checkpoint, ctx);
  return runSession(session, ctx);
}

/**
 * Replace the saved run by this one, before its first step: a crash at any later point finds its description and
 * dataset. A run without checkpoints only removes the previous saved run.
 */
async function beginRun(store: SavedRunStore, payload: TrainRequest, runId: string, modelType: string): Promise<void> {
  try {
    if (payload.checkpointEvery > 0) await store.begin(describeRun(payload, { runId, createdAt: Date.now(), modelType }), payload.dataset);
    else await store.clear();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new BadRequestError(`the run could not be saved in browser storage (${reason}): free some space for this site, then start the run again`);
  }
}

/** Put the checkpoint's weights, moments and position into the new session's trainer and tell the page where it stands. */
function restore(session: TrainingSession, checkpoint: LoadedCheckpoint, ctx: CallContext): void {
  try {
    session.trainer.restore(checkpoint.snapshot);
  } catch (error) {
    session.dispose();
    if (error instanceof ResumeMismatchError) throw new BadRequestError(`the saved checkpoint does not fit this run: ${error.message}`);
    throw error;
  }
  const { trainer } = session;
  session.checkpointStep = trainer.step;
  ctx.emit({
    type: 'trainRestored',
    step: trainer.step,
    steps: trainer.config.steps,
    losses: trainer.history.filter((r) => !r.skipped).map((r) => ({ step: r.step, loss: r.loss })),
    evals: trainer.evals.map((e) => ({ step: e.step, loss: e.loss })),
  });
}

export async function resumeTrainingCall(_payload: Record<string, never>, ctx: CallContext): Promise<Result<'resumeTraining'>> {
  const session = engineState.training;
  if (!session) throw new BadRequestError('there is no paused run to resume');
  if (!isCurrent(session)) {
    endKeptSession();
    throw new BadRequestError('the paused run was lost with its model (the model was replaced or the GPU device was lost): continue it from its checkpoint');
  }
  requireDevice();
  return runSession(session, ctx);
}

export async function endTrainingCall(): Promise<Result<'endTraining'>> {
  const ended = endKeptSession();
  await (await openStore())?.clear();
  return { ended };
}

/** The saved run, or null; a damaged one is a typed failure (SavedRunError, CheckpointError) naming the file. */
export async function savedRunCall(): Promise<Result<'savedRun'>> {
  return (await openStore())?.read() ?? null;
}

export async function discardSavedRunCall(): Promise<Result<'discardSavedRun'>> {
  const store = await openStore();
  return { discarded: store ? await store.clear() : false };
}
