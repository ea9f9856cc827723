// The AdamW optimizer: moments on the GPU, the fused update kernel (ops/adamw.ts), and gradient clipping
// computed on the GPU (gradNorm, clipScale, nonFiniteFlag), so a step needs no readback. On top of that:
//   - parameter groups with their own learning-rate multiplier (LoRA+ trains the B matrices at ratio × lr) and weight decay,
//     clipped together by one global gradient norm, as torch clips all parameters of an optimizer at once;
//   - a guard value (the step's loss) whose being NaN/Inf also skips the step, besides the gradient norm;
//   - the moments exposed for checkpoints, and restorable.
// Nothing is read back: a skipped step is decided on the GPU; the caller reads the loss and norm later to report it.
// As in ops/adamw.ts, a skipped step still advances the bias-correction step count (the host does not know).

import { add } from '../engine/ops/arithmetic.ts';
import { adamwStep } from '../engine/ops/adamw.ts';
import { clipScale, gradNorm, nonFiniteFlag } from '../engine/ops/gradNorm.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { AdamWHyperparameters } from '../engine/ops/adamw.ts';

export interface ParamGroup {
  /** For messages and checkpoints (default `group<i>`). */
  readonly name?: string;
  readonly params: readonly Tensor[];
  /** Multiplies the scheduled learning rate for this group (default 1). */
  readonly lrScale?: number;
  /** This group's decoupled weight decay (default the optimizer's). */
  readonly weightDecay?: number;
}

export interface AdamWOptions extends Omit<AdamWHyperparameters, 'lr'> {
  /** Clip the global gradient L2 norm to this value (torch.nn.utils.clip_grad_norm_); none when absent. */
  maxGradNorm?: number;
}

export interface ParamState {
  readonly param: Tensor;
  readonly m: Tensor;
  readonly v: Tensor;
  readonly group: number;
}

/**
 * LoRA+ groups: the parameters `isB` picks train at `ratio` × the learning rate (Hayou et al., 2024, suggest
 * ratios around 16), the rest at 1 ×.
 */
export function loraPlusGroups(params: readonly Tensor[], isB: (param: Tensor) => boolean, ratio: number): ParamGroup[] {
  if (!(Number.isFinite(ratio) && ratio > 0)) throw new RangeError(`loraPlusGroups: ratio must be a positive number, got ${ratio}`);
  const b = params.filter(isB);
  const a = params.filter((p) => !isB(p));
  return [
    { name: 'lora_A', params: a, lrScale: 1 },
    { name: 'lora_B', params: b, lrScale: ratio },
  ].filter((group) => group.params.length > 0);
}

export class AdamW {
  readonly groups: readonly Required<ParamGroup>[];
  readonly states: readonly ParamState[];
  /** Updates recorded so far (skipped ones included); the next uses bias-correction step stepCount + 1. */
  stepCount = 0;

  /** One group of parameters, or several (each with its own learning-rate scale and weight decay). */
  constructor(
    groups: readonly ParamGroup[] | readonly Tensor[],
    readonly options: AdamWOptions = {},
  ) {
    const seen = new Set<Tensor>();
    const asGroups: readonly ParamGroup[] = groups.every((g): g is Tensor => 'engine' in g) ? [{ params: groups as readonly Tensor[] }] : (groups as readonly ParamGroup[]);
    this.groups = asGroups.map((group, index) => {
      const lrScale = group.lrScale ?? 1;
      if (!(Number.isFinite(lrScale) && lrScale > 0)) throw new RangeError(`AdamW: group ${index} lrScale must be a positive number, got ${lrScale}`);
      const weightDecay = group.weightDecay ?? options.weightDecay ?? 0.01;
      if (!(Number.isFinite(weightDecay) && weightDecay >= 0)) throw new RangeError(`AdamW: group ${index} weightDecay must be ≥ 0, got ${weightDecay}`);
      for (const param of group.params) {
        if (seen.has(param)) throw new RangeError(`AdamW: ${param.describe()} is in more than one group`);
        if (param.dtype !== 'f32') throw new RangeError(`AdamW: ${param.describe()} is not f32`);
        seen.add(param);
      }
      return { name: group.name ?? `group${index}`, params: group.params, lrScale, weightDecay };
    });
    if (seen.size === 0) throw new RangeError('AdamW: no parameters to train');
    const states: ParamState[] = [];
    this.groups.forEach((group, index) => {
      for (const param of group.params) {
        const engine = param.engine;
        const moment = (which: string) =>
          engine.keep(engine.zeros(param.shape, { category: 'optimizerState', name: `${param.name || `#${param.id}`} adam ${which}` }));
        states.push({ param, m: moment('m'), v: moment('v'), group: index });
      }
    });
    this.states = states;
  }

  get params(): Tensor[] {
    return this.states.map((s) => s.param);
  }

  /**
   * One update from the accumulated gradients at learning rate `lr` (times each group's lrScale), then clear
   * them. A parameter without a gradient counts as a zero gradient. The step is skipped on the GPU when the
   * global gradient norm, or `guard` (a one-element f32 tensor, e.g. the loss), is NaN or infinite.
   * Returns the gradient norm before clipping ([] f32, owned by the current scope).
   */
  step(lr: number, guard?: Tensor): Tensor {
    if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`AdamW.step: invalid learning rate ${lr}`);
    const engine = this.states[0].param.engine;
    return engine.noGrad(() => {
      const grads = this.states.map(({ param }) => param.grad ?? engine.zeros(param.shape));
      const norm = gradNorm(grads);
      const flag = nonFiniteFlag(guard ? add(norm, guard) : norm);
      const gradScale = this.options.maxGradNorm === undefined ? undefined : clipScale(norm, this.options.maxGradNorm);
      this.stepCount++;
      this.states.forEach(({ param, m, v, group }, i) => {
        const { lrScale, weightDecay } = this.groups[group];
        adamwStep(param, grads[i], m, v, { ...this.options, lr: lr * lrScale, weightDecay, step: this.stepCount, gradScale, skipFlag: flag });
      });
      this.zeroGrad();
      return norm;
    });
  }

  zeroGrad(): void {
    for (const { param } of this.states) {
      param.grad?.release();
      param.grad = null;
    }
  }

  dispose(): void {
    this.zeroGrad();
    for (const { m, v } of this.states) {
      m.dispose();
      v.dispose();
    }
  }
}
