// The training loop. Anything that adds `trainableParameters()` to a CausalLM trains here (LoRA, QLoRA and
// bottleneck adapters from src/peft, or a few of a model's own tensors); the rest of the model stays frozen and
// gets no gradient and no optimizer state.
//
// One optimizer step s (0-based) of `steps`:
//   1. Draw gradAccum micro-batches of batchSize packed rows (packing.ts RowSampler: seeded, epoch after epoch).
//   2. For each micro-batch i: hidden = model.hidden(ids); loss_i = chunkedLmLoss(hidden, labels, head) (the logits
//      are formed in row chunks, lmLoss.ts); backward of w_i · loss_i with w_i = targets_i / Σ targets, so the
//      gradients accumulated over the micro-batches are exactly those of one batch of all their rows (the mean
//      over all counted labels), whatever the split.
//   3. AdamW at lr = schedule(s) × the group's lrScale, with global-norm clipping; the step is skipped on
//      the GPU when the loss or the gradient norm is NaN/Inf (weights and moments untouched; as in ops/adamw.ts the
//      bias-correction count still advances). maxConsecutiveSkips skipped steps in a row stop the run ('diverged').
//   4. The step's loss and gradient norm are copied into a small tensor whose readback is started at once and
//      awaited only after step s + 1 has been recorded, so the GPU never waits for the host. The report of step s
//      (a 'step' event, or a 'skip' event naming the step) therefore comes one step late.
// Evaluation (every evalEvery steps and at the end) runs the validation rows under noGrad and reports the mean
// loss over their counted labels and its exponential, the perplexity.
//
// Reproducible: every source of randomness derives from the seed (row order, dropout seeds passed to the model
// through setTrainingState), every kernel is deterministic, so the same seed on the same device gives the same
// losses bit for bit, and a run resumed from a checkpoint (checkpoint.ts) continues exactly as the uninterrupted one.
// AbortSignal pauses at a step boundary; run() again continues. A CheckpointSaver (checkpoint.ts) writes every N
// steps, at the end and when a run pauses; a failed write (quota) stops the run with 'checkpoint-failed' and the
// state stays in memory, so run() can continue once there is room.

import { add, scale } from '../engine/ops/arithmetic.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { CausalLM } from '../models/model.ts';
import { AdamW, type ParamGroup } from './adamw.ts';
import { chunkedLmLoss, lmHeadWeight } from './lmLoss.ts';
import { checkSeed, deriveSeed, gatherRows, IGNORE_INDEX, packedFingerprint, RowSampler, type PackedSequences } from './packing.ts';
import {
  checkLearningRate,
  createSchedule,
  HyperparameterError,
  requireInteger,
  requireNumber,
  SCHEDULE_KINDS,
  type LearningRateSchedule,
  type ScheduleKind,
} from './schedule.ts';

/** What the trainer tells the model before each forward. */
export interface TrainingState {
  /** True for training forwards (dropout on), false for evaluation. */
  readonly training: boolean;
  /** A seed for this forward's dropout, unique per (run seed, step, micro-batch); 0 in evaluation. */
  readonly seed: number;
}

/** A causal LM with some trainable tensors (f32, requiresGrad). */
export interface TrainableModel extends CausalLM {
  trainableParameters(): Tensor[];
  /** Optional: called before every forward (adapters use the seed for dropout). */
  setTrainingState?(state: TrainingState): void;
}

export interface TrainerConfig {
  /** Optimizer steps. */
  steps: number;
  /** Rows per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Peak learning rate. */
  lr: number;
  /** Default 'linear'. */
  schedule?: ScheduleKind;
  /** Default 0. */
  warmupSteps?: number;
  /** Floor of the decay as a fraction of lr (default 0). */
  minLrRatio?: number;
  /** Defaults 0.9, 0.999, 1e-8, 0 (decoupled weight decay). */
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global gradient-norm clip (default 1); null for none. */
  maxGradNorm?: number | null;
  /** Evaluate every this many steps (0: only at the end); default 0. */
  evalEvery?: number;
  /** Evaluate once before the first step (default false). */
  evalAtStart?: boolean;
  /** At most this many validation batches per evaluation (default all). */
  evalBatches?: number;
  /** Default 0; an integer in [0, 2^32). */
  seed?: number;
  /** Rows per chunk of logits (default: ~16 MiB of logits). */
  chunkRows?: number;
  /** Stop after this many consecutive skipped (NaN/Inf) steps (default 8). */
  maxConsecutiveSkips?: number;
}

export type ResolvedTrainerConfig = Required<Omit<TrainerConfig, 'maxGradNorm' | 'chunkRows' | 'evalBatches'>> & {
  maxGradNorm: number | null;
  chunkRows: number | null;
  evalBatches: number | null;
};

/** Settings that change the numbers a run produces: a resumed run must use the same. */
export const REPRODUCIBILITY_KEYS = [
  'steps',
  'batchSize',
  'gradAccum',
  'lr',
  'schedule',
  'warmupSteps',
  'minLrRatio',
  'beta1',
  'beta2',
  'eps',
  'weightDecay',
  'maxGradNorm',
  'seed',
  'chunkRows',
] as const satisfies readonly (keyof ResolvedTrainerConfig)[];

export interface TrainerData {
  readonly train: PackedSequences;
  readonly validation?: PackedSequences | null;
}

export interface StepRecord {
  /** 1-based. */
  readonly step: number;
  readonly loss: number;
  readonly gradNorm: number;
  readonly lr: number;
  readonly skipped: boolean;
}

export interface EvalRecord {
  /** Optimizer steps completed when it ran. */
  readonly step: number;
  readonly loss: number;
  readonly perplexity: number;
  /** Counted labels. */
  readonly tokens: number;
}

export type TrainEvent =
  | ({ readonly type: 'step' } & StepRecord & { readonly tokens: number; readonly tokensPerSecond: number; readonly elapsedMs: number; readonly etaMs: number })
  | ({ readonly type: 'skip' } & StepRecord & { readonly reason: string })
  | ({ readonly type: 'eval' } & EvalRecord)
  | { readonly type: 'diverged'; readonly step: number; readonly consecutiveSkips: number }
  | { readonly type: 'checkpoint'; readonly step: number; readonly bytes: number }
  | { readonly type: 'checkpoint-failed'; readonly step: number; readonly error: Error; readonly bytesNeeded: number | null };

/** Saves checkpoints during run(); checkpoint.ts's `checkpointSaver` makes one. */
export interface CheckpointSaver {
  /** Every this many steps (and when a run stops or ends). */
  readonly every: number;
  /** Write the trainer's state; returns the bytes written. */
  save(trainer: Trainer): Promise<number>;
}

export interface TrainerOptions {
  /** Parameter groups (LoRA+); default one group of model.trainableParameters(). */
  groups?: readonly ParamGroup[];
  onEvent?: (event: TrainEvent) => void;
  checkpoint?: CheckpointSaver;
  /** Clock for rates and ETA (default performance.now). */
  now?: () => number;
}

export interface RunOptions {
  /** Checked between steps: the run pauses; run() again continues. */
  signal?: AbortSignal;
  /** Stop once this many steps are complete (a pause point). */
  untilStep?: number;
}

export type StopReason = 'completed' | 'aborted' | 'until' | 'diverged' | 'checkpoint-failed';

export interface TrainResult {
  readonly stopReason: StopReason;
  /** Steps completed. */
  readonly step: number;
  readonly history: readonly StepRecord[];
  readonly evals: readonly EvalRecord[];
  readonly skippedSteps: readonly number[];
  /** Input positions per second over this run() call. */
  readonly tokensPerSecond: number;
  /** Set when a checkpoint could not be written. */
  readonly checkpointError?: Error;
}

/** Check and complete a config; HyperparameterError names the field. Nothing touches the GPU. */
export function resolveTrainerConfig(config: TrainerConfig): ResolvedTrainerConfig {
  if (typeof config !== 'object' || config === null) throw new HyperparameterError('config', 'must be an object');
  const resolved: ResolvedTrainerConfig = {
    steps: config.steps,
    batchSize: config.batchSize,
    gradAccum: config.gradAccum ?? 1,
    lr: config.lr,
    schedule: config.schedule ?? 'linear',
    warmupSteps: config.warmupSteps ?? 0,
    minLrRatio: config.minLrRatio ?? 0,
    beta1: config.beta1 ?? 0.9,
    beta2: config.beta2 ?? 0.999,
    eps: config.eps ?? 1e-8,
    weightDecay: config.weightDecay ?? 0,
    maxGradNorm: config.maxGradNorm === undefined ? 1 : config.maxGradNorm,
    evalEvery: config.evalEvery ?? 0,
    evalAtStart: config.evalAtStart ?? false,
    evalBatches: config.evalBatches ?? null,
    seed: config.seed ?? 0,
    chunkRows: config.chunkRows ?? null,
    maxConsecutiveSkips: config.maxConsecutiveSkips ?? 8,
  };
  requireInteger('batch', resolved.batchSize, 1, 1 << 20);
  requireInteger('grad-accum', resolved.gradAccum, 1, 1 << 20);
  checkLearningRate('lr', resolved.lr);
  if (!SCHEDULE_KINDS.includes(resolved.schedule)) throw new HyperparameterError('schedule', `must be one of ${SCHEDULE_KINDS.join(', ')}, got ${String(resolved.schedule)}`);
  createSchedule({ lr: resolved.lr, steps: resolved.steps, warmupSteps: resolved.warmupSteps, kind: resolved.schedule, minLrRatio: resolved.minLrRatio });
  requireNumber('beta1', resolved.beta1, (v) => v >= 0 && v < 1, 'in [0, 1)');
  requireNumber('beta2', resolved.beta2, (v) => v >= 0 && v < 1, 'in [0, 1)');
  requireNumber('eps', resolved.eps, (v) => v > 0 && v < 1, 'in (0, 1)');
  requireNumber('weight-decay', resolved.weightDecay, (v) => v >= 0 && v <= 10, 'in [0, 10]');
  if (resolved.maxGradNorm !== null) requireNumber('max-grad-norm', resolved.maxGradNorm, (v) => v > 0, 'a positive number or null');
  requireInteger('eval-every', resolved.evalEvery, 0);
  if (typeof resolved.evalAtStart !== 'boolean') throw new HyperparameterError('eval-at-start', `must be a boolean, got ${String(resolved.evalAtStart)}`);
  if (resolved.evalBatches !== null) requireInteger('eval-batches', resolved.evalBatches, 1);
  try {
    checkSeed(resolved.seed);
  } catch (error) {
    throw new HyperparameterError('seed', (error as Error).message);
  }
  if (resolved.chunkRows !== null) requireInteger('chunk-rows', resolved.chunkRows, 1);
  requireInteger('max-consecutive-skips', resolved.maxConsecutiveSkips, 1);
  return resolved;
}

function checkPacked(what: string, packed: PackedSequences, vocabSize: number, maxPositions: number): void {
  if (packed.rows < 1) throw new HyperparameterError(what, 'has no rows');
  if (packed.seqLen > maxPositions) throw new HyperparameterError('seq', `${packed.seqLen} is longer than the model's ${maxPositions} positions`);
  for (const id of packed.inputs) if (!(id >= 0 && id < vocabSize)) throw new HyperparameterError(what, `token id ${id} is outside the model's vocabulary of ${vocabSize}`);
  for (const id of packed.labels) {
    if (id !== IGNORE_INDEX && !(id >= 0 && id < vocabSize)) throw new HyperparameterError(what, `label ${id} is outside the model's vocabulary of ${vocabSize}`);
  }
}

/** The state a checkpoint must hold besides the tensors. */
export interface TrainerProgress {
  readonly step: number;
  readonly optimizerStep: number;
  /** Rows drawn by the sampler so far (the data position; with the seed, the whole RNG state). */
  readonly samplerPosition: number;
  readonly history: readonly StepRecord[];
  readonly evals: readonly EvalRecord[];
}

/** One trainable tensor's state, as checkpoints hold it. */
export interface ParameterSnapshot {
  readonly name: string;
  readonly group: number;
  readonly shape: readonly number[];
  readonly value: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
}

export interface TrainerSnapshot {
  readonly config: ResolvedTrainerConfig;
  readonly progress: TrainerProgress;
  readonly groups: readonly { name: string; lrScale: number; weightDecay: number }[];
  readonly parameters: readonly ParameterSnapshot[];
  /** Identifies the model (type and sizes) and the training data, so a checkpoint is not resumed on others. */
  readonly model: ModelIdentity;
  readonly dataFingerprint: string;
}

export interface ModelIdentity {
  readonly modelType: string;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
}

/** A checkpoint that does not fit this trainer (another model, other data, other settings). */
export class ResumeMismatchError extends Error {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`cannot resume: ${detail}`);
    this.name = 'ResumeMismatchError';
  }
}

export class Trainer {
  readonly config: ResolvedTrainerConfig;
  readonly schedule: LearningRateSchedule;
  readonly optimizer: AdamW;
  /** Optimizer steps completed. */
  step = 0;
  readonly history: StepRecord[] = [];
  readonly evals: EvalRecord[] = [];
  private readonly sampler: RowSampler;
  private readonly head: Tensor;
  private readonly names: string[];
  private readonly now: () => number;
  private consecutiveSkips = 0;
  private diverged = false;
  private readonly dataFingerprint: string;

  constructor(
    readonly model: TrainableModel,
    readonly data: TrainerData,
    config: TrainerConfig,
    private readonly options: TrainerOptions = {},
  ) {
    // Everything is validated before the optimizer allocates its moments.
    this.config = resolveTrainerConfig(config);
    const c = this.config;
    this.schedule = createSchedule({ lr: c.lr, steps: c.steps, warmupSteps: c.warmupSteps, kind: c.schedule, minLrRatio: c.minLrRatio });
    const { vocabSize, maxPositions } = model.config;
    checkPacked('data', data.train, vocabSize, maxPositions);
    if (data.validation) {
      checkPacked('validation', data.validation, vocabSize, maxPositions);
      if (data.validation.seqLen !== data.train.seqLen) throw new HyperparameterError('validation', `rows of ${data.validation.seqLen} tokens differ from training rows of ${data.train.seqLen}`);
    }
    if (data.train.targetTokens === 0) throw new HyperparameterError('data', 'every label is masked: no token to learn, the loss would be undefined');

    const trainable = model.trainableParameters();
    const groups = options.groups ?? [{ name: 'default', params: trainable }];
    const grouped = new Set(groups.flatMap((g) => [...g.params]));
    const trainableSet = new Set(trainable);
    if (trainable.length === 0) throw new HyperparameterError('trainable', 'the model has no trainable parameters');
    for (const param of trainable) {
      if (!param.requiresGrad) throw new HyperparameterError('trainable', `${param.describe()} is trainable but does not require a gradient`);
      if (!grouped.has(param)) throw new HyperparameterError('groups', `${param.describe()} is trainable but in no parameter group`);
    }
    for (const param of grouped) if (!trainableSet.has(param)) throw new HyperparameterError('groups', `${param.describe()} is in a group but not trainable`);
    for (const [name, tensor] of model.parameters()) {
      if (tensor.requiresGrad && !trainableSet.has(tensor)) throw new HyperparameterError('trainable', `frozen weight ${JSON.stringify(name)} requires a gradient`);
    }
    this.head = lmHeadWeight(model);
    this.sampler = new RowSampler(data.train.rows, deriveSeed(c.seed, 4));
    this.now = options.now ?? (() => performance.now());
    this.dataFingerprint = packedFingerprint(data.train);

    this.optimizer = new AdamW(groups, {
      beta1: c.beta1,
      beta2: c.beta2,
      eps: c.eps,
      weightDecay: c.weightDecay,
      maxGradNorm: c.maxGradNorm ?? undefined,
    });
    const names = this.optimizer.params.map((p, i) => p.name || `param.${i}`);
    this.names = new Set(names).size === names.length ? names : names.map((_, i) => `param.${i}`);
  }

  /** Input positions per optimizer step. */
  get tokensPerStep(): number {
    return this.config.batchSize * this.config.gradAccum * this.data.train.seqLen;
  }

  /** Train until `steps` are done, the signal aborts, `untilStep`, divergence, or a failed checkpoint. */
  async run(options: RunOptions = {}): Promise<TrainResult> {
    const { steps, evalEvery } = this.config;
    const saver = this.options.checkpoint;
    let pending: Promise<void> | null = null;
    let stopReason: StopReason = 'completed';
    let checkpointError: Error | undefined;
    const settle = async () => {
      if (pending) {
        const waiting = pending;
        pending = null;
        await waiting;
      }
    };

    if (this.config.evalAtStart && this.step === 0 && this.evals.length === 0) await this.evaluate();
    const started = this.now();
    const startStep = this.step;
    while (this.step < steps) {
      if (this.diverged) {
        stopReason = 'diverged';
        break;
      }
      if (options.signal?.aborted) {
        stopReason = 'aborted';
        break;
      }
      if (options.untilStep !== undefined && this.step >= options.untilStep) {
        stopReason = 'until';
        break;
      }
      const s = this.step;
      const lr = this.schedule.lrAt(s);
      const stats = this.recordStep(s, lr);
      const reading = stats.read().finally(() => stats.dispose());
      this.step++;
      await settle();
      pending = reading.then((values) => this.report(s, lr, values, started, startStep));

      const done = this.step;
      const evalDue = this.data.validation && ((evalEvery > 0 && done % evalEvery === 0) || done === steps);
      const saveDue = saver && (done % saver.every === 0 || done === steps);
      if (evalDue || saveDue) await settle();
      if (evalDue) await this.evaluate();
      if (saveDue && !this.diverged) {
        checkpointError = await this.trySave(saver);
        if (checkpointError) {
          stopReason = 'checkpoint-failed';
          break;
        }
      }
    }
    await settle();
    if (this.diverged) stopReason = 'diverged';
    if ((stopReason === 'aborted' || stopReason === 'until') && saver && this.step > 0 && !this.diverged) {
      checkpointError = await this.trySave(saver);
      if (checkpointError) stopReason = 'checkpoint-failed';
    }
    const seconds = (this.now() - started) / 1000;
    return {
      stopReason,
      step: this.step,
      history: this.history,
      evals: this.evals,
      skippedSteps: this.history.filter((r) => r.skipped).map((r) => r.step),
      tokensPerSecond: seconds > 0 ? ((this.step - startStep) * this.tokensPerStep) / seconds : 0,
      checkpointError,
    };
  }

  /** Mean loss and perplexity over the validation rows (or the first evalBatches batches); null without validation. */
  async evaluate(): Promise<EvalRecord | null> {
    const validation = this.data.validation;
    if (!validation) return null;
    const { engine } = this.model;
    const B = this.config.batchSize;
    const L = validation.seqLen;
    const batches: number[][] = [];
    for (let r = 0; r < validation.rows; r += B) batches.push(Array.from({ length: Math.min(B, validation.rows - r) }, (_, k) => r + k));
    const used = this.config.evalBatches === null ? batches : batches.slice(0, this.config.evalBatches);
    const counts = used.map((rows) => rows.reduce((sum, row) => sum + validation.targetsPerRow[row], 0));
    const losses = engine.keep(engine.empty([used.length]));
    try {
      this.model.setTrainingState?.({ training: false, seed: 0 });
      engine.noGrad(() => {
        used.forEach((rows, b) => {
          if (counts[b] === 0) return;
          engine.scope(() => {
            const batch = gatherRows(validation, rows);
            const ids = engine.tensor(batch.inputs, [rows.length, L], { dtype: 'i32' });
            const labels = engine.tensor(batch.labels, [rows.length, L], { dtype: 'i32' });
            const loss = chunkedLmLoss(this.model.hidden(ids), labels, this.head, { chunkRows: this.config.chunkRows ?? undefined });
            engine.gpu.copy(loss.buffer, 0, losses.buffer, b * 4, 4);
          });
        });
      });
      const values = await losses.read();
      let sum = 0;
      let tokens = 0;
      counts.forEach((count, b) => {
        if (count === 0) return;
        sum += values[b] * count;
        tokens += count;
      });
      const loss = tokens > 0 ? sum / tokens : NaN;
      const record: EvalRecord = { step: this.step, loss, perplexity: Math.exp(loss), tokens };
      this.evals.push(record);
      this.options.onEvent?.({ type: 'eval', ...record });
      return record;
    } finally {
      losses.dispose();
    }
  }

  /** Record one optimizer step on the GPU; returns a kept [2] tensor (loss, gradient norm) for the caller to read and dispose. */
  private recordStep(step: number, lr: number): Tensor {
    const { engine } = this.model;
    const { batchSize: B, gradAccum, seed } = this.config;
    const L = this.data.train.seqLen;
    const micro = Array.from({ length: gradAccum }, () => gatherRows(this.data.train, this.sampler.next(B)));
    const total = micro.reduce((sum, batch) => sum + batch.targets, 0);
    return engine.scope(() => {
      let lossSum: Tensor | null = null;
      micro.forEach((batch, i) => {
        if (batch.targets === 0) return; // no counted label: contributes nothing to the step's mean
        this.model.setTrainingState?.({ training: true, seed: deriveSeed(seed, 3, step, i) });
        const weighted = engine.scope(() => {
          const ids = engine.tensor(batch.inputs, [B, L], { dtype: 'i32' });
          const labels = engine.tensor(batch.labels, [B, L], { dtype: 'i32' });
          const loss = chunkedLmLoss(this.model.hidden(ids), labels, this.head, { chunkRows: this.config.chunkRows ?? undefined });
          const part = scale(loss, batch.targets / total);
          if (!part.requiresGrad) throw new HyperparameterError('trainable', 'none of the trainable parameters affects the loss');
          engine.backward(part);
          return part;
        });
        lossSum = lossSum === null ? weighted : engine.noGrad(() => add(lossSum!, weighted));
      });
      const loss: Tensor = lossSum ?? engine.full([], NaN); // cannot happen: packed rows always hold a target
      const norm = this.optimizer.step(lr, loss);
      const stats = engine.keep(engine.empty([2]));
      engine.gpu.copy(loss.buffer, 0, stats.buffer, 0, 4);
      engine.gpu.copy(norm.buffer, 0, stats.buffer, 4, 4);
      return stats;
    });
  }

  private report(step: number, lr: number, values: ArrayLike<number>, started: number, startStep: number): void {
    const loss = values[0];
    const gradNorm = values[1];
    const skipped = !Number.isFinite(loss) || !Number.isFinite(gradNorm);
    const record: StepRecord = { step: step + 1, loss, gradNorm, lr, skipped };
    this.history.push(record);
    const emit = this.options.onEvent;
    if (skipped) {
      this.consecutiveSkips++;
      const what = !Number.isFinite(loss) ? `the loss is ${loss}` : `the gradient norm is ${gradNorm}`;
      emit?.({ type: 'skip', ...record, reason: `${what}; the update was not applied` });
      if (this.consecutiveSkips >= this.config.maxConsecutiveSkips && !this.diverged) {
        this.diverged = true;
        emit?.({ type: 'diverged', step: step + 1, consecutiveSkips: this.consecutiveSkips });
      }
      return;
    }
    this.consecutiveSkips = 0;
    const elapsedMs = this.now() - started;
    const done = step + 1 - startStep;
    const tokens = done * this.tokensPerStep;
    emit?.({
      type: 'step',
      ...record,
      tokens,
      tokensPerSecond: elapsedMs > 0 ? (tokens * 1000) / elapsedMs : 0,
      elapsedMs,
      etaMs: done > 0 ? (elapsedMs / done) * (this.config.steps - step - 1) : 0,
    });
  }

  private async trySave(saver: CheckpointSaver): Promise<Error | undefined> {
    try {
      const bytes = await saver.save(this);
      this.options.onEvent?.({ type: 'checkpoint', step: this.step, bytes });
      return undefined;
    } catch (error) {
      const err = error instanceof Error ? error : new Error(String(error));
      const bytesNeeded = typeof (err as { bytesNeeded?: unknown }).bytesNeeded === 'number' ? (err as unknown as { bytesNeeded: number }).bytesNeeded : null;
      this.options.onEvent?.({ type: 'checkpoint-failed', step: this.step, error: err, bytesNeeded });
      return err;
    }
  }

  /** Everything needed to resume, read from the GPU. Call between runs or from a CheckpointSaver. */
  async snapshot(): Promise<TrainerSnapshot> {
    const parameters: ParameterSnapshot[] = [];
    for (const [i, state] of this.optimizer.states.entries()) {
      const [value, m, v] = (await Promise.all([state.param.read(), state.m.read(), state.v.read()])) as Float32Array[];
      parameters.push({ name: this.names[i], group: state.group, shape: [...state.param.shape], value, m, v });
    }
    return {
      config: { ...this.config },
      progress: {
        step: this.step,
        optimizerStep: this.optimizer.stepCount,
        samplerPosition: this.sampler.position,
        history: [...this.history],
        evals: [...this.evals],
      },
      groups: this.optimizer.groups.map(({ name, lrScale, weightDecay }) => ({ name, lrScale, weightDecay })),
      parameters,
      model: this.modelIdentity(),
      dataFingerprint: this.dataFingerprint,
    };
  }

  modelIdentity(): ModelIdentity {
    const { modelType, vocabSize, hiddenSize, numLayers, numHeads, numKvHeads } = this.model.config;
    return { modelType, vocabSize, hiddenSize, numLayers, numHeads, numKvHeads };
  }

  /**
   * Continue from a snapshot: checks it belongs to this model, data and settings (ResumeMismatchError naming the
   * difference) before anything is uploaded, then restores weights, moments, step counts and the data position.
   */
  restore(snapshot: TrainerSnapshot): void {
    const ours = this.modelIdentity();
    for (const key of Object.keys(ours) as (keyof ModelIdentity)[]) {
      if (snapshot.model[key] !== ours[key]) {
        throw new ResumeMismatchError('model', `the checkpoint is for another model (${key} ${String(snapshot.model[key])}, this model has ${String(ours[key])})`);
      }
    }
    for (const key of REPRODUCIBILITY_KEYS) {
      if (snapshot.config[key] !== this.config[key]) {
        throw new ResumeMismatchError(key, `the checkpoint was trained with ${key} ${String(snapshot.config[key])}, this run has ${String(this.config[key])}`);
      }
    }
    if (snapshot.dataFingerprint !== this.dataFingerprint) throw new ResumeMismatchError('data', 'the checkpoint was trained on other data (or other packing settings)');
    const groups = this.optimizer.groups;
    if (snapshot.groups.length !== groups.length || snapshot.groups.some((g, i) => g.name !== groups[i].name || g.lrScale !== groups[i].lrScale || g.weightDecay !== groups[i].weightDecay)) {
      const show = (list: readonly { name: string; lrScale: number; weightDecay: number }[]) => list.map((g) => `${g.name} ×${g.lrScale} wd ${g.weightDecay}`).join(', ');
      throw new ResumeMismatchError('groups', `the checkpoint's parameter groups (${show(snapshot.groups)}) differ from this run's (${show(groups)})`);
    }
    const states = this.optimizer.states;
    if (snapshot.parameters.length !== states.length) {
      throw new ResumeMismatchError('parameters', `the checkpoint has ${snapshot.parameters.length} trainable tensors, this model ${states.length}`);
    }
    snapshot.parameters.forEach((saved, i) => {
      const param = states[i].param;
      if (saved.name !== this.names[i]) throw new ResumeMismatchError('parameters', `trainable tensor ${i} is ${JSON.stringify(saved.name)} in the checkpoint, ${JSON.stringify(this.names[i])} here`);
      if (saved.shape.length !== param.shape.length || saved.shape.some((d, k) => d !== param.shape[k])) {
        throw new ResumeMismatchError('parameters', `${JSON.stringify(saved.name)} is [${saved.shape.join(', ')}] in the checkpoint, [${param.shape.join(', ')}] here`);
      }
      if (saved.group !== states[i].group) throw new ResumeMismatchError('groups', `${JSON.stringify(saved.name)} is in another parameter group`);
      for (const array of [saved.value, saved.m, saved.v]) {
        if (array.length !== param.size) throw new ResumeMismatchError('parameters', `${JSON.stringify(saved.name)} has ${array.length} values, needs ${param.size}`);
      }
    });
    const { progress } = snapshot;
    if (!(Number.isSafeInteger(progress.step) && progress.step >= 0 && progress.step <= this.config.steps)) throw new ResumeMismatchError('step', `step ${progress.step} is outside [0, ${this.config.steps}]`);

    const gpu = this.model.engine.gpu;
    snapshot.parameters.forEach((saved, i) => {
      const { param, m, v } = states[i];
      gpu.upload(param.buffer, saved.value);
      gpu.upload(m.buffer, saved.m);
      gpu.upload(v.buffer, saved.v);
    });
    this.optimizer.zeroGrad();
    this.step = progress.step;
    this.optimizer.stepCount = progress.optimizerStep;
    this.sampler.position = progress.samplerPosition;
    this.history.splice(0, this.history.length, ...progress.history);
    this.evals.splice(0, this.evals.length, ...progress.evals);
    this.consecutiveSkips = 0;
    for (let k = this.history.length - 1; k >= 0 && this.history[k].skipped; k--) this.consecutiveSkips++;
    this.diverged = false;
  }

  /** Release the optimizer state (the model and its tensors belong to the caller). */
  dispose(): void {
    this.optimizer.dispose();
  }
}
