// Learning-rate schedules: linear warm-up, then constant, linear decay or cosine decay, over a fixed number of
// optimizer steps. Steps are 0-based: step s of T uses
//   warm-up (s < W):  lr · (s + 1) / W                      (reaches lr at the last warm-up step; never 0)
//   constant:         lr
//   linear:           lr · (m + (1 − m) · (T − s) / (T − W))          (lr at s = W, falls towards m·lr)
//   cosine:           lr · (m + (1 − m) · ½ (1 + cos(π (s − W) / (T − W))))
// with m = minLrRatio (default 0). The schedule is a pure function of the step, so resuming needs only the step.
//
// Hyperparameters are validated here and by the trainer with HyperparameterError, which names the field.

export type ScheduleKind = 'constant' | 'linear' | 'cosine';
export const SCHEDULE_KINDS: readonly ScheduleKind[] = ['constant', 'linear', 'cosine'];

/** Learning rates above this are refused as a typo (Adam-family optimizers diverge far below it). */
export const MAX_LEARNING_RATE = 1;
/** More optimizer steps than this are refused as a typo. */
export const MAX_STEPS = 100_000_000;

/** A training setting out of range; `field` names it (as the CLI flag's long name without dashes). */
export class HyperparameterError extends RangeError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`${field}: ${detail}`);
    this.name = 'HyperparameterError';
  }
}

export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  /** T: optimizer steps in all. */
  steps: number;
  /** W: warm-up steps (default 0). */
  warmupSteps?: number;
  /** Default 'constant'. */
  kind?: ScheduleKind;
  /** Floor of the decay as a fraction of lr, in [0, 1] (default 0). */
  minLrRatio?: number;
}

export interface LearningRateSchedule {
  readonly options: Readonly<Required<ScheduleOptions>>;
  /** The learning rate of 0-based step s in [0, steps). */
  lrAt(step: number): number;
}

export function requireInteger(field: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new HyperparameterError(field, `must be an integer in [${min}, ${max}], got ${value}`);
  }
}

export function requireNumber(field: string, value: number, ok: (value: number) => boolean, range: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) throw new HyperparameterError(field, `must be ${range}, got ${value}`);
}

export function checkLearningRate(field: string, lr: number): void {
  requireNumber(field, lr, (v) => v > 0 && v <= MAX_LEARNING_RATE, `a number in (0, ${MAX_LEARNING_RATE}]`);
}

export function createSchedule(options: ScheduleOptions): LearningRateSchedule {
  const { lr, steps, warmupSteps = 0, kind = 'constant', minLrRatio = 0 } = options;
  checkLearningRate('lr', lr);
  requireInteger('steps', steps, 1, MAX_STEPS);
  requireInteger('warmup', warmupSteps, 0, MAX_STEPS);
  if (warmupSteps > steps) throw new HyperparameterError('warmup', `${warmupSteps} warm-up steps is longer than the ${steps} training steps`);
  if (!SCHEDULE_KINDS.includes(kind)) throw new HyperparameterError('schedule', `must be one of ${SCHEDULE_KINDS.join(', ')}, got ${String(kind)}`);
  requireNumber('minLrRatio', minLrRatio, (v) => v >= 0 && v <= 1, 'a number in [0, 1]');
  const resolved = Object.freeze({ lr, steps, warmupSteps, kind, minLrRatio });
  return {
    options: resolved,
    lrAt(step: number): number {
      if (!Number.isSafeInteger(step) || step < 0 || step >= steps) throw new RangeError(`lrAt: step ${step} is outside [0, ${steps})`);
      if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
      if (kind === 'constant') return lr;
      const progress = (step - warmupSteps) / (steps - warmupSteps); // in [0, 1)
      const decay = kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
      return lr * (minLrRatio + (1 - minLrRatio) * decay);
    },
  };
}
