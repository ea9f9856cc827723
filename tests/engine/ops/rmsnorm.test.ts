import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { rmsNorm } from '../../../src/engine/ops/rmsnorm.ts';
import { rmsNormBackwardReference, rmsNormReference } from '../../../src/engine/reference/rmsnorm.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

interface Case {
  shape: number[];
  eps: number;
}

// Width 1, odd widths, 256 (the workgroup size) and 257 / 600 (threads loop), rank 1 and 3.
// At width 1 the output is sign(x) · weight up to eps, so dx is only the eps effect, a difference of
// terms ~10⁵ times larger (ill-conditioned in any precision); a large eps keeps that case meaningful.
const cases: Case[] = [
  { shape: [1, 1], eps: 0.5 },
  { shape: [4, 1], eps: 0.5 },
  { shape: [37], eps: 1e-6 },
  { shape: [3, 3], eps: 1e-5 },
  { shape: [2, 3, 37], eps: 1e-6 },
  { shape: [3, 256], eps: 1e-6 },
  { shape: [2, 257], eps: 1e-6 },
  { shape: [33, 600], eps: 1e-5 },
];

function check(name: string, actual: ArrayLike<number>, expected: Float64Array): void {
  expectClose(actual, expected, 1e-5, name);
}

describe('rmsNorm', () => {
  it.each(cases)('GPU forward and gradients match the float64 reference: %o', async ({ shape, eps }) => {
    const width = shape[shape.length - 1];
    const size = shape.reduce((p, x) => p * x, 1);
    const random = rng(size * 7 + width);
    const xData = randomArray(size, random, 2);
    const weightData = randomArray(width, random).map((v) => Math.fround(1 + v / 2));
    const dyData = randomArray(size, random);

    await engine.scope(async () => {
      const x = engine.tensor(toF32(xData), shape, { requiresGrad: true });
      const weight = engine.tensor(toF32(weightData), [width], { requiresGrad: true });
      const y = rmsNorm(x, weight, eps);
      expect(y.shape).toEqual(shape);
      check('y', await y.read(), rmsNormReference(xData, weightData, width, eps));

      engine.backward(y, engine.tensor(toF32(dyData), shape));
      const expected = rmsNormBackwardReference(xData, weightData, dyData, width, eps);
      check('dx', await x.grad!.read(), expected.dx);
      check('dWeight', await weight.grad!.read(), expected.dWeight);
    });
  });

  it('skips the weight gradient when the weight is frozen, and dx when x needs none', async () => {
    const random = rng(31);
    const [rows, width] = [5, 23];
    const xData = randomArray(rows * width, random);
    const weightData = randomArray(width, random);
    const dyData = randomArray(rows * width, random);
    const expected = rmsNormBackwardReference(xData, weightData, dyData, width, 1e-6);
    for (const [trainX, trainWeight] of [[true, false], [false, true]]) {
      await engine.scope(async () => {
        const x = engine.tensor(toF32(xData), [rows, width], { requiresGrad: trainX });
        const weight = engine.tensor(toF32(weightData), [width], { requiresGrad: trainWeight });
        const y = rmsNorm(x, weight);
        engine.backward(y, engine.tensor(toF32(dyData), [rows, width]));
        if (trainX) check('dx', await x.grad!.read(), expected.dx);
        else expect(x.grad).toBeNull();
        if (trainWeight) check('dWeight', await weight.grad!.read(), expected.dWeight);
        else expect(weight.grad).toBeNull();
      });
    }
    await engine.scope(async () => {
      const y = rmsNorm(engine.tensor(toF32(xData), [rows, width]), engine.tensor(toF32(weightData), [width]));
      expect(y.requiresGrad).toBe(false);
      check('y', await y.read(), rmsNormReference(xData, weightData, width, 1e-6));
    });
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(33);
    for (const [rows, width] of [[1, 1], [3, 5], [2, 8]]) {
      const x = randomArray(rows * width, random);
      const weight = randomArray(width, random);
      const weights = randomArray(rows * width, random);
      const eps = 1e-3;
      const expected = rmsNormBackwardReference(x, weight, weights, width, eps);
      expectClose(numericGradient((v) => dot(rmsNormReference(v, weight, width, eps), weights), x), expected.dx, 1e-6, 'dx');
      expectClose(numericGradient((v) => dot(rmsNormReference(x, v, width, eps), weights), weight), expected.dWeight, 1e-6, 'dWeight');
    }
  });

  it('rejects a weight that is not [C] and tensors that are not f32', () => {
    engine.scope(() => {
      const x = engine.zeros([2, 5]);
      expect(() => rmsNorm(x, engine.zeros([4]))).toThrow(ShapeError);
      expect(() => rmsNorm(x, engine.zeros([4]))).toThrow('weight for x [2, 5] must be [5], got [4]');
      expect(() => rmsNorm(x, engine.zeros([5, 1]))).toThrow(ShapeError);
      expect(() => rmsNorm(engine.zeros([2, 5], { dtype: 'i32' }), engine.zeros([5]))).toThrow(DTypeError);
      expect(() => rmsNorm(x, engine.zeros([5], { dtype: 'u32' }))).toThrow(DTypeError);
      expect(() => rmsNorm(engine.zeros([]), engine.zeros([1]))).toThrow(ShapeError);
      expect(() => rmsNorm(x, engine.zeros([5]), Number.NaN)).toThrow(RangeError);
    });
  });
});
