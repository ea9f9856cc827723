import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { layerNorm } from '../../../src/engine/ops/layernorm.ts';
import { layerNormBackwardReference, layerNormReference } from '../../../src/engine/reference/layernorm.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

interface Case {
  shape: number[];
  eps: number;
  withBias: boolean;
  /** Added to every x: a large row mean must not cost accuracy. */
  offset?: number;
}

// Widths 1 and 2, odd widths, 256 (the workgroup size) and 257 / 600 (threads loop), rank 1 and 3.
// At width 2 the normalized row is ±1 whatever x is, so dx is only the eps effect, a difference of
// terms ~10⁴ times larger (ill-conditioned in any precision); a large eps keeps that case meaningful.
const cases: Case[] = [
  { shape: [1, 1], eps: 1e-5, withBias: true },
  { shape: [3, 2], eps: 0.5, withBias: true },
  { shape: [4, 3], eps: 1e-5, withBias: false },
  { shape: [37], eps: 1e-6, withBias: true },
  { shape: [2, 3, 37], eps: 1e-5, withBias: true },
  { shape: [3, 256], eps: 1e-5, withBias: false },
  { shape: [2, 257], eps: 1e-3, withBias: true },
  { shape: [33, 600], eps: 1e-5, withBias: true },
  { shape: [5, 41], eps: 1e-5, withBias: true, offset: 100 },
];

function check(name: string, actual: ArrayLike<number>, expected: Float64Array): void {
  expectClose(actual, expected, 1e-5, name);
}

describe('layerNorm', () => {
  it.each(cases)('GPU forward and gradients match the float64 reference: %o', async ({ shape, eps, withBias, offset = 0 }) => {
    const width = shape[shape.length - 1];
    const size = shape.reduce((p, x) => p * x, 1);
    const random = rng(size * 7 + width);
    const xData = randomArray(size, random, 2).map((v) => Math.fround(v + offset));
    const weightData = randomArray(width, random).map((v) => Math.fround(1 + v / 2));
    const biasData = withBias ? randomArray(width, random) : null;
    const dyData = randomArray(size, random);

    await engine.scope(async () => {
      const x = engine.tensor(toF32(xData), shape, { requiresGrad: true });
      const weight = engine.tensor(toF32(weightData), [width], { requiresGrad: true });
      const bias = biasData ? engine.tensor(toF32(biasData), [width], { requiresGrad: true }) : null;
      const y = layerNorm(x, weight, bias, eps);
      expect(y.shape).toEqual(shape);
      check('y', await y.read(), layerNormReference(xData, weightData, biasData, width, eps));

      engine.backward(y, engine.tensor(toF32(dyData), shape));
      const expected = layerNormBackwardReference(xData, weightData, dyData, width, eps);
      check('dx', await x.grad!.read(), expected.dx);
      check('dWeight', await weight.grad!.read(), expected.dWeight);
      if (bias) check('dBias', await bias.grad!.read(), expected.dBias);
    });
  });

  it('skips the weight and bias gradients when they are frozen', async () => {
    const random = rng(21);
    const [rows, width] = [6, 19];
    const xData = randomArray(rows * width, random);
    const weightData = randomArray(width, random);
    const biasData = randomArray(width, random);
    const dyData = randomArray(rows * width, random);
    const expected = layerNormBackwardReference(xData, weightData, dyData, width, 1e-5);
    for (const [trainWeight, trainBias] of [[false, false], [true, false], [false, true]]) {
      await engine.scope(async () => {
        const x = engine.tensor(toF32(xData), [rows, width], { requiresGrad: true });
        const weight = engine.tensor(toF32(weightData), [width], { requiresGrad: trainWeight });
        const bias = engine.tensor(toF32(biasData), [width], { requiresGrad: trainBias });
        const y = layerNorm(x, weight, bias);
        engine.backward(y, engine.tensor(toF32(dyData), [rows, width]));
        check('dx', await x.grad!.read(), expected.dx);
        if (trainWeight) check('dWeight', await weight.grad!.read(), expected.dWeight);
        else expect(weight.grad).toBeNull();
        if (trainBias) check('dBias', await bias.grad!.read(), expected.dBias);
        else expect(bias.grad).toBeNull();
      });
    }
  });

  it('computes only parameter gradients when x needs none, and records nothing when nothing trains', async () => {
    const random = rng(22);
    const [rows, width] = [4, 9];
    const xData = randomArray(rows * width, random);
    const weightData = randomArray(width, random);
    const dyData = randomArray(rows * width, random);
    await engine.scope(async () => {
      const x = engine.tensor(toF32(xData), [rows, width]);
      const weight = engine.tensor(toF32(weightData), [width], { requiresGrad: true });
      const y = layerNorm(x, weight, null);
      engine.backward(y, engine.tensor(toF32(dyData), [rows, width]));
      expect(x.grad).toBeNull();
      check('dWeight', await weight.grad!.read(), layerNormBackwardReference(xData, weightData, dyData, width, 1e-5).dWeight);

      const frozen = layerNorm(x, engine.tensor(toF32(weightData), [width]), null);
      expect(frozen.requiresGrad).toBe(false);
      expectClose(await frozen.read(), layerNormReference(xData, weightData, null, width, 1e-5), 1e-5, 'y');
    });
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(23);
    for (const [rows, width] of [[1, 1], [3, 5], [2, 8]]) {
      const x = randomArray(rows * width, random);
      const weight = randomArray(width, random);
      const bias = randomArray(width, random);
      const weights = randomArray(rows * width, random);
      const eps = 1e-3;
      const expected = layerNormBackwardReference(x, weight, weights, width, eps);
      expectClose(numericGradient((v) => dot(layerNormReference(v, weight, bias, width, eps), weights), x), expected.dx, 1e-6, 'dx');
      expectClose(numericGradient((v) => dot(layerNormReference(x, v, bias, width, eps), weights), weight), expected.dWeight, 1e-6, 'dWeight');
      expectClose(numericGradient((v) => dot(layerNormReference(x, weight, v, width, eps), weights), bias), expected.dBias, 1e-6, 'dBias');
    }
  });

  it('rejects a weight or bias that is not [C] and tensors that are not f32', () => {
    engine.scope(() => {
      const x = engine.zeros([2, 5]);
      const weight = engine.zeros([5]);
      expect(() => layerNorm(x, engine.zeros([4]), null)).toThrow(ShapeError);
      expect(() => layerNorm(x, engine.zeros([4]), null)).toThrow('weight for x [2, 5] must be [5], got [4]');
      expect(() => layerNorm(x, engine.zeros([1, 5]), null)).toThrow(ShapeError);
      expect(() => layerNorm(x, weight, engine.zeros([6]))).toThrow('bias for x [2, 5] must be [5], got [6]');
      expect(() => layerNorm(engine.zeros([2, 5], { dtype: 'i32' }), weight, null)).toThrow(DTypeError);
      expect(() => layerNorm(x, engine.zeros([5], { dtype: 'i32' }), null)).toThrow(DTypeError);
      expect(() => layerNorm(engine.zeros([]), engine.zeros([1]), null)).toThrow(ShapeError);
      expect(() => layerNorm(x, weight, null, -1)).toThrow(RangeError);
    });
  });
});
