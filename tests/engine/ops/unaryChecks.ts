// Checks shared by the tests of elementwise ops (activation.test.ts, activationErf.test.ts): the GPU forward and
// backward against the float64 reference on seeded inputs, and at chosen points with every value finite.

import { expect } from 'vitest';
import type { Engine } from '../../../src/engine/engine.ts';
import type { Tensor } from '../../../src/engine/tensor.ts';
import { expectClose, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

export interface UnaryCase {
  name: string;
  op: (x: Tensor) => Tensor;
  forward: (x: Float64Array) => Float64Array;
  backward: (x: Float64Array, dOut: Float64Array) => Float64Array;
}

export const sizeOf = (shape: readonly number[]) => shape.reduce((product, dim) => product * dim, 1);

/** Shapes with odd sizes and sizes past a workgroup. */
export const UNARY_SHAPES = [[1], [7, 13], [3, 300], [2, 3, 65]];

/** Forward and dX on seeded inputs in ±6 match the reference to 1e-5. */
export async function expectUnaryMatchesReference(engine: Engine, { name, op, forward, backward }: UnaryCase, shape: number[]): Promise<void> {
  const random = rng(sizeOf(shape) + name.length);
  const x = randomArray(sizeOf(shape), random, 6);
  const dOut = randomArray(sizeOf(shape), random);
  await engine.scope(async () => {
    const input = engine.tensor(toF32(x), shape, { requiresGrad: true });
    const out = op(input);
    expect(out.shape).toEqual(shape);
    expectClose(await out.read(), forward(x), 1e-5, 'out');
    engine.backward(out, engine.tensor(toF32(dOut), shape));
    expectClose(await input.grad!.read(), backward(x, dOut), 1e-5, 'dX');
  });
}

/** The values and gradients (dOut = 1) at `points`, each finite and within 1e-5 of the reference; returned with the reference's. */
export async function unaryAtPoints(engine: Engine, { op, forward, backward }: UnaryCase, points: Float64Array) {
  const ones = new Float64Array(points.length).fill(1);
  return engine.scope(async () => {
    const input = engine.tensor(toF32(points), [points.length], { requiresGrad: true });
    const out = op(input);
    engine.backward(out, engine.full(out.shape, 1));
    const values = Array.from(await out.read());
    const grads = Array.from(await input.grad!.read());
    for (const value of [...values, ...grads]) expect(Number.isFinite(value)).toBe(true);
    const expected = forward(points);
    const expectedGrads = backward(points, ones);
    expectClose(values, expected, 1e-5, 'out');
    expectClose(grads, expectedGrads, 1e-5, 'dX');
    return { values, grads, expected, expectedGrads };
  });
}
