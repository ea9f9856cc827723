// Argument checks shared by ops: clear typed errors instead of silently wrong results.

import { DestroyedTensorError, DTypeError, ShapeError, shapeText } from '../errors.ts';
import type { DType, Tensor } from '../tensor.ts';

/** Also the first check every op makes, so a released input is reported as such. */
export function requireDType(op: string, tensor: Tensor, dtype: DType): void {
  if (tensor.isDestroyed) throw new DestroyedTensorError(`${op}: ${tensor.describe()} was used after it was released`);
  if (tensor.dtype !== dtype) throw new DTypeError(`${op}: ${tensor.describe()} must be ${dtype}`);
}

export function requireShape(op: string, tensor: Tensor, shape: readonly number[], what: string): void {
  if (tensor.rank !== shape.length || tensor.shape.some((dim, i) => dim !== shape[i])) {
    throw new ShapeError(`${op}: ${what} must be ${shapeText(shape)}, got ${shapeText(tensor.shape)}`);
  }
}

export function requireSameShape(op: string, a: Tensor, b: Tensor): void {
  requireShape(op, b, a.shape, 'both operands');
}

/** The size of the last dimension and the number of rows before it. */
export function rowsAndWidth(tensor: Tensor): { rows: number; width: number } {
  const width = tensor.shape[tensor.rank - 1] ?? 1;
  return { rows: width === 0 ? 0 : tensor.size / width, width };
}
