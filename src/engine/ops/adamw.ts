// adamwStep: one fused, in-place AdamW update of a parameter and its two moment buffers, exactly as
// torch.optim.AdamW with amsgrad off (shaders/adamw.wgsl). Optimizer state stays on the GPU; the
// gradient clipping scale and the "skip this step" flag are GPU tensors too (ops/gradNorm.ts), so a
// training step never waits for a readback. Nothing is recorded on the tape.

import { f32, u32 } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType, requireShape } from './checks.ts';

export interface AdamWHyperparameters {
  lr: number;
  /** Default 0.9, as torch. */
  beta1?: number;
  /** Default 0.999, as torch. */
  beta2?: number;
  /** Default 1e-8, as torch. */
  eps?: number;
  /** Decoupled weight decay; default 0.01, as torch. */
  weightDecay?: number;
}

export interface AdamWStepOptions extends AdamWHyperparameters {
  /** 1-based step count t of this update (for the bias corrections 1 − β^t). */
  step: number;
  /** One-element f32 tensor multiplied into the gradient first (the clip scale from clipScale()). */
  gradScale?: Tensor;
  /**
   * One-element u32 tensor: when non-zero, param, m and v are left unchanged (nonFiniteFlag()).
   * The host does not learn that the step was skipped, so its step count still advances.
   */
  skipFlag?: Tensor;
}

const WORKGROUP_SIZE = 256;

/** param, m, v ← AdamW(param, grad · gradScale, m, v), in place; grad is read only. All four f32 of one shape. */
export function adamwStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamWStepOptions): void {
  const op = 'adamwStep';
  for (const [tensor, what] of [[param, 'param'], [grad, 'grad'], [m, 'm'], [v, 'v']] as const) {
    requireDType(op, tensor, 'f32');
    if (tensor !== param) requireShape(op, tensor, param.shape, `${what} (like param)`);
  }
  if (options.gradScale) requireOneElement(op, options.gradScale, 'f32', 'gradScale');
  if (options.skipFlag) requireOneElement(op, options.skipFlag, 'u32', 'skipFlag');
  const { lr, step, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01 } = options;
  requireRange(op, 'lr', lr, lr >= 0 && Number.isFinite(lr));
  requireRange(op, 'beta1', beta1, beta1 >= 0 && beta1 < 1);
  requireRange(op, 'beta2', beta2, beta2 >= 0 && beta2 < 1);
  requireRange(op, 'eps', eps, eps >= 0 && Number.isFinite(eps));
  requireRange(op, 'weightDecay', weightDecay, weightDecay >= 0 && Number.isFinite(weightDecay));
  requireRange(op, 'step', step, Number.isSafeInteger(step) && step >= 1);
  if (param.size === 0) return;

  const entryPoint = `adamw${options.gradScale ? '_scaled' : ''}${options.skipFlag ? '_skippable' : ''}`;
  param.engine.gpu.dispatch(
    { shader: 'adamw', entryPoint },
    {
      params: [
        u32(param.size),
        f32(beta1),
        f32(beta2),
        f32(1 - beta1),
        f32(1 - beta2),
        f32(eps),
        f32(lr / (1 - beta1 ** step)),
        f32(Math.sqrt(1 - beta2 ** step)),
        f32(1 - lr * weightDecay),
      ],
      bindings: [param.binding, grad.binding, m.binding, v.binding, options.gradScale?.binding, options.skipFlag?.binding],
      workgroups: grid1d(param.size, WORKGROUP_SIZE),
    },
  );
}

function requireOneElement(op: string, tensor: Tensor, dtype: 'f32' | 'u32', what: string): void {
  requireDType(op, tensor, dtype);
  if (tensor.size !== 1) throw new ShapeError(`${op}: ${what} must have one element, got ${shapeText(tensor.shape)}`);
}

function requireRange(op: string, what: string, value: number, ok: boolean): void {
  if (!ok) throw new RangeError(`${op}: invalid ${what} ${value}`);
}
