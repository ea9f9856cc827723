// Kernels the engine needs for itself: filling a tensor and accumulating gradients.

import { f32, u32 } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import type { Tensor } from '../tensor.ts';
import { grid1d } from './grid.ts';

const WORKGROUP_SIZE = 256;

export function fill(target: Tensor, value: number): void {
  if (target.size === 0) return;
  target.engine.gpu.dispatch(
    { shader: 'elementwise', entryPoint: 'fill' },
    { params: [u32(target.size), f32(value)], bindings: [target.binding], workgroups: grid1d(target.size, WORKGROUP_SIZE) },
  );
}

/** target += source, in place. */
export function accumulateInto(target: Tensor, source: Tensor): void {
  if (target.size !== source.size) {
    throw new ShapeError(`accumulate: ${shapeText(source.shape)} into ${shapeText(target.shape)}`);
  }
  if (target.size === 0) return;
  target.engine.gpu.dispatch(
    { shader: 'elementwise', entryPoint: 'accumulate' },
    { params: [u32(target.size), f32(0)], bindings: [target.binding, source.binding], workgroups: grid1d(target.size, WORKGROUP_SIZE) },
  );
}

/** A new tensor with the same contents. */
export function clone(source: Tensor): Tensor {
  const copy = source.engine.empty(source.shape, { dtype: source.dtype });
  if (source.size > 0) source.engine.gpu.copy(source.buffer, 0, copy.buffer, 0, source.byteLength);
  return copy;
}
