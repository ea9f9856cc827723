// The AdamW optimizer over a list of trainable tensors: moments live on the GPU, the global gradient
// norm, the clip scale and the "non-finite step" flag are computed on the GPU, so a whole step needs
// no readback. A step whose gradient norm is NaN or infinite changes nothing (the kernel skips it);
// the norm tensor is returned so the caller can read it later (a step late) and report the skip.

import type { Tensor } from '../engine/tensor.ts';
import { adamwStep, type AdamWHyperparameters } from '../engine/ops/adamw.ts';
import { clipScale, gradNorm, nonFiniteFlag } from '../engine/ops/gradNorm.ts';

export interface AdamWOptions extends AdamWHyperparameters {
  /** Clip the global gradient L2 norm to this value (torch.nn.utils.clip_grad_norm_); none when absent. */
  maxGradNorm?: number;
}

export class AdamW {
  private readonly moments: { m: Tensor; v: Tensor }[];
  /** Updates applied so far (the bias-correction step t of the next update is this + 1). */
  stepCount = 0;

  constructor(
    readonly params: readonly Tensor[],
    readonly options: AdamWOptions,
  ) {
    this.moments = params.map((param) => {
      const engine = param.engine;
      const moment = () => engine.keep(engine.zeros(param.shape, { category: 'optimizerState' }));
      return { m: moment(), v: moment() };
    });
  }

  /**
   * Apply one update from the accumulated gradients, then clear them. `lr` overrides the learning rate
   * for this step (schedules). Returns the global gradient norm before clipping, as a [] GPU tensor
   * owned by the current scope.
   */
  step(lr = this.options.lr): Tensor {
    const grads = this.params.map((param) => {
      if (!param.grad) throw new Error(`AdamW.step: ${param.describe()} has no gradient; call backward() first`);
      return param.grad;
    });
    const engine = this.params[0].engine;
    return engine.noGrad(() => {
      const norm = gradNorm(grads);
      const skipFlag = nonFiniteFlag(norm);
      const gradScale = this.options.maxGradNorm === undefined ? undefined : clipScale(norm, this.options.maxGradNorm);
      this.stepCount++;
      this.params.forEach((param, i) => {
        const { m, v } = this.moments[i];
        adamwStep(param, grads[i], m, v, { ...this.options, lr, step: this.stepCount, gradScale, skipFlag });
      });
      this.zeroGrad();
      return norm;
    });
  }

  zeroGrad(): void {
    for (const param of this.params) {
      param.grad?.release();
      param.grad = null;
    }
  }

  dispose(): void {
    this.zeroGrad();
    for (const { m, v } of this.moments) {
      m.dispose();
      v.dispose();
    }
  }
}
