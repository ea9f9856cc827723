// layerNorm: normalization over the last dimension with a learned scale and optional shift, as
// torch.nn.LayerNorm (biased variance). x [..., C], weight and bias [C] (shaders/norm.wgsl).
// Backward gives dx, and dWeight / dBias summed over all rows without atomics; a frozen weight or
// bias (requiresGrad false) gets no gradient and its reduction is skipped.

import { f32, u32 } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType, requireShape, rowsAndWidth } from './checks.ts';

const COLUMNS = 32; // COLUMNS in the shader: columns per parameter-gradient workgroup

/** y = (x − mean) / sqrt(var + eps) · weight + bias over the last dimension of x. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor | null, eps = 1e-5): Tensor {
  requireDType('layerNorm', x, 'f32');
  requireDType('layerNorm', weight, 'f32');
  if (bias) requireDType('layerNorm', bias, 'f32');
  if (x.rank < 1) throw new ShapeError(`layerNorm: x must have a last dimension to normalize, got ${shapeText(x.shape)}`);
  const { rows, width } = rowsAndWidth(x);
  requireShape('layerNorm', weight, [width], `weight for x ${shapeText(x.shape)}`);
  if (bias) requireShape('layerNorm', bias, [width], `bias for x ${shapeText(x.shape)}`);
  if (!(eps >= 0)) throw new RangeError(`layerNorm: eps must be a non-negative number, got ${eps}`);

  const engine = x.engine;
  const inputs = bias ? [x, weight, bias] : [x, weight];
  const recording = engine.needsGrad(inputs);
  const out = engine.empty(x.shape);
  if (x.size === 0) return out;
  const stats = recording ? engine.empty([rows, 3]) : null;
  engine.gpu.dispatch(
    { shader: 'norm', entryPoint: stats ? 'layernormForwardWithStats' : 'layernormForward' },
    {
      params: [u32(rows), u32(width), f32(eps), u32(bias ? 1 : 0)],
      // Without a bias the weight fills its binding (both are read-only); the kernel does not read it.
      bindings: [x.binding, weight.binding, (bias ?? weight).binding, out.binding, stats?.binding],
      workgroups: grid1d(rows, 1),
    },
  );

  if (stats) {
    engine.record(out, inputs, [x, weight, stats], (dOut, [needX, needWeight, needBias = false]) => [
      needX ? layerNormInputGrad(x, weight, stats, dOut) : null,
      ...layerNormParamGrads(x, stats, dOut, needWeight, needBias),
    ]);
    stats.dispose(); // the tape holds it now
  }
  return out;
}

function layerNormInputGrad(x: Tensor, weight: Tensor, stats: Tensor, dOut: Tensor): Tensor {
  const { rows, width } = rowsAndWidth(x);
  const dx = x.engine.empty(x.shape);
  x.engine.gpu.dispatch(
    { shader: 'norm', entryPoint: 'layernormBackwardInput' },
    {
      params: [u32(rows), u32(width), f32(0), u32(0)],
      bindings: [x.binding, weight.binding, undefined, undefined, undefined, dOut.binding, stats.binding, dx.binding],
      workgroups: grid1d(rows, 1),
    },
  );
  return dx;
}

/** [dWeight, dBias], each null when not wanted. */
function layerNormParamGrads(x: Tensor, stats: Tensor, dOut: Tensor, needWeight: boolean, needBias: boolean): [Tensor | null, Tensor | null] {
  if (!needWeight && !needBias) return [null, null];
  const { rows, width } = rowsAndWidth(x);
  const engine = x.engine;
  const dWeight = needWeight ? engine.empty([width]) : null;
  const dBias = needBias ? engine.empty([width]) : null;
  const entryPoint = dWeight && dBias ? 'layernormWeightBiasGrad' : dWeight ? 'layernormWeightGrad' : 'layernormBiasGrad';
  const readsInput = dWeight !== null;
  engine.gpu.dispatch(
    { shader: 'norm', entryPoint },
    {
      params: [u32(rows), u32(width), f32(0), u32(0)],
      bindings: [
        readsInput ? x.binding : undefined,
        undefined,
        undefined,
        undefined,
        undefined,
        dOut.binding,
        readsInput ? stats.binding : undefined,
        undefined,
        dWeight?.binding,
        dBias?.binding,
      ],
      workgroups: grid1d(width, COLUMNS),
    },
  );
  return [dWeight, dBias];
}
