// reshape: the same elements under another shape, sharing the buffer (no copy). One dimension may
// be -1 and is inferred. Backward reshapes the gradient back, also without a copy.

import { ShapeError, shapeText } from '../errors.ts';
import type { Tensor } from '../tensor.ts';

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const resolved = resolveShape(x, shape);
  const engine = x.engine;
  const out = engine.adoptView(x.view(resolved));
  if (engine.needsGrad([x])) {
    engine.record(out, [x], [], (dOut) => [engine.adoptView(dOut.view(x.shape))]);
  }
  return out;
}

function resolveShape(x: Tensor, shape: readonly number[]): number[] {
  const inferred = shape.filter((dim) => dim === -1).length;
  const known = shape.reduce((product, dim) => (dim === -1 ? product : product * dim), 1);
  const fail = () => new ShapeError(`reshape: cannot view ${shapeText(x.shape)} (${x.size} elements) as ${shapeText(shape)}`);
  if (inferred > 1 || shape.some((dim) => !Number.isSafeInteger(dim) || dim < -1)) throw fail();
  if (inferred === 1) {
    if (known === 0 || x.size % known !== 0) throw fail();
    return shape.map((dim) => (dim === -1 ? x.size / known : dim));
  }
  if (known !== x.size) throw fail();
  return [...shape];
}
