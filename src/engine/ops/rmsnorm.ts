// rmsNorm: Llama's RMSNorm over the last dimension, y = x / sqrt(mean(x²) + eps) · weight, with
// x [..., C] and weight [C] (shaders/norm.wgsl). Backward gives dx and dWeight (summed over all
// rows without atomics); a frozen weight (requiresGrad false) gets no gradient and no reduction.

import { f32, u32 } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType, requireShape, rowsAndWidth } from './checks.ts';

const COLUMNS = 32; // COLUMNS in the shader: columns per weight-gradient workgroup

/** y = x / sqrt(mean(x²) + eps) · weight over the last dimension of x; eps defaults to Llama's 1e-6. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  requireDType('rmsNorm', x, 'f32');
  requireDType('rmsNorm', weight, 'f32');
  if (x.rank < 1) throw new ShapeError(`rmsNorm: x must have a last dimension to normalize, got ${shapeText(x.shape)}`);
  const { rows, width } = rowsAndWidth(x);
  requireShape('rmsNorm', weight, [width], `weight for x ${shapeText(x.shape)}`);
  if (!(eps >= 0)) throw new RangeError(`rmsNorm: eps must be a non-negative number, got ${eps}`);

  const engine = x.engine;
  const recording = engine.needsGrad([x, weight]);
  const out = engine.empty(x.shape);
  if (x.size === 0) return out;
  const rstd = recording ? engine.empty([rows]) : null;
  engine.gpu.dispatch(
    { shader: 'norm', entryPoint: rstd ? 'rmsnormForwardWithStats' : 'rmsnormForward' },
    {
      params: [u32(rows), u32(width), f32(eps), u32(0)],
      // The shader's bias binding (LayerNorm's) stays empty; rstd fills its stats_out.
      bindings: [x.binding, weight.binding, undefined, out.binding, rstd?.binding],
      workgroups: grid1d(rows, 1),
    },
  );

  if (rstd) {
    engine.record(out, [x, weight], [x, weight, rstd], (dOut, [needX, needWeight]) => [
      needX ? rmsNormKernel('rmsnormBackwardInput', x, weight, rstd, dOut) : null,
      needWeight ? rmsNormKernel('rmsnormWeightGrad', x, weight, rstd, dOut) : null,
    ]);
    rstd.dispose(); // the tape holds it now
  }
  return out;
}

function rmsNormKernel(entryPoint: 'rmsnormBackwardInput' | 'rmsnormWeightGrad', x: Tensor, weight: Tensor, rstd: Tensor, dOut: Tensor): Tensor {
  const { rows, width } = rowsAndWidth(x);
  const engine = x.engine;
  const forInput = entryPoint === 'rmsnormBackwardInput';
  const grad = engine.empty(forInput ? x.shape : [width]);
  engine.gpu.dispatch(
    { shader: 'norm', entryPoint },
    {
      params: [u32(rows), u32(width), f32(0), u32(0)],
      bindings: forInput
        ? [x.binding, weight.binding, undefined, undefined, undefined, dOut.binding, rstd.binding, grad.binding]
        : [x.binding, undefined, undefined, undefined, undefined, dOut.binding, rstd.binding, undefined, grad.binding],
      workgroups: forInput ? grid1d(rows, 1) : grid1d(width, COLUMNS),
    },
  );
  return grad;
}
