// Gradient clipping without a readback (shaders/reduce.wgsl): the global L2 norm of a list of
// gradients, the clip scale torch.nn.utils.clip_grad_norm_ would apply, and a flag saying the norm is
// NaN or infinite. Each result is a one-element tensor ([]) that adamwStep reads on the GPU:
//   const norm = gradNorm(grads);
//   adamwStep(p, g, m, v, { ..., gradScale: clipScale(norm, 1.0), skipFlag: nonFiniteFlag(norm) });
// Sums are in f32: squares above ~3.4e38 overflow to an infinite norm, which the flag then reports.

import { f32, u32 } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType } from './checks.ts';

const SHADER = 'reduce';
/** Elements per partial sum: WORKGROUP_SIZE · ITEMS_PER_THREAD of shaders/reduce.wgsl. */
const BLOCK = 256 * 16;

/**
 * [] f32: √(Σ over all tensors of Σ x²). Each tensor is reduced in blocks of BLOCK elements and the
 * partial sums are added in one fixed order, so the result is deterministic. Needs at least one tensor.
 */
export function gradNorm(grads: readonly Tensor[]): Tensor {
  const op = 'gradNorm';
  if (grads.length === 0) throw new ShapeError(`${op}: no gradients given`);
  for (const grad of grads) requireDType(op, grad, 'f32');
  const engine = grads[0].engine;
  const blocks = grads.map((grad) => Math.ceil(grad.size / BLOCK));
  const totalBlocks = blocks.reduce((sum, count) => sum + count, 0);
  const partials = engine.empty([totalBlocks]);
  let offset = 0;
  grads.forEach((grad, index) => {
    if (grad.size === 0) return;
    engine.gpu.dispatch(
      { shader: SHADER, entryPoint: 'sum_squares_partial' },
      { params: [u32(grad.size), u32(offset), f32(0)], bindings: [grad.binding, partials.binding], workgroups: grid1d(blocks[index], 1) },
    );
    offset += blocks[index];
  });
  const norm = engine.empty([]);
  engine.gpu.dispatch(
    { shader: SHADER, entryPoint: 'sum_sqrt' },
    { params: [u32(totalBlocks), u32(0), f32(0)], bindings: [undefined, partials.binding, norm.binding], workgroups: [1] },
  );
  partials.dispose();
  return norm;
}

/** [] f32: min(1, maxNorm / (norm + 1e-6)), the factor clip_grad_norm_ multiplies the gradients by. */
export function clipScale(norm: Tensor, maxNorm: number): Tensor {
  const op = 'clipScale';
  requireOneElement(op, norm);
  if (!(maxNorm > 0 && Number.isFinite(maxNorm))) throw new RangeError(`${op}: maxNorm must be a positive number, got ${maxNorm}`);
  const scale = norm.engine.empty([]);
  norm.engine.gpu.dispatch(
    { shader: SHADER, entryPoint: 'clip_scale' },
    { params: [u32(1), u32(0), f32(maxNorm)], bindings: [undefined, undefined, norm.binding, scale.binding], workgroups: [1] },
  );
  return scale;
}

/** [] u32: 1 when the one-element f32 tensor (a norm, a loss) is NaN or ±Inf, else 0. */
export function nonFiniteFlag(value: Tensor): Tensor {
  requireOneElement('nonFiniteFlag', value);
  const flag = value.engine.empty([], { dtype: 'u32' });
  value.engine.gpu.dispatch(
    { shader: SHADER, entryPoint: 'non_finite_flag' },
    { bindings: [undefined, undefined, value.binding, undefined, flag.binding], workgroups: [1] },
  );
  return flag;
}

function requireOneElement(op: string, tensor: Tensor): void {
  requireDType(op, tensor, 'f32');
  if (tensor.size !== 1) throw new ShapeError(`${op}: expected one element, got ${shapeText(tensor.shape)}`);
}
