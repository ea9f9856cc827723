import { describe, expect, it } from 'vitest';
import { DTypeError } from '../../../src/engine/errors.ts';
import { geluErf, relu } from '../../../src/engine/ops/activation.ts';
import {
  erfcReference,
  geluErfBackwardReference,
  geluErfReference,
  reluBackwardReference,
  reluReference,
} from '../../../src/engine/reference/activation.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { expectUnaryMatchesReference, UNARY_SHAPES, unaryAtPoints } from './unaryChecks.ts';
import { dot, expectClose, numericGradient, randomArray, rng } from '../../helpers/numeric.ts';

const engine = await testEngine();


const extremes = Float64Array.from(
  [-1e4, -1000, -100, -50, -20, -10, -7, -5, -2, -1, -1e-3, -1e-7, 0, 1e-7, 1e-3, 1, 2, 5, 7, 10, 20, 50, 100, 1000, 1e4],
  Math.fround,
);

const unary = [
  { name: 'relu', op: relu, forward: reluReference, backward: reluBackwardReference },
  { name: 'geluErf', op: geluErf, forward: geluErfReference, backward: geluErfBackwardReference },
] as const;

describe('erfc reference', () => {
  it('matches tabulated values to ~1e-13', () => {
    // Python's math.erfc (correctly rounded to about 1 ulp).
    const table: [number, number][] = [
      [0, 1],
      [0.5, 0.4795001221869535],
      [1, 0.15729920705028513],
      [2.9, 4.109787809945886e-5],
      [3, 2.209049699858544e-5],
      [5, 1.5374597944280349e-12],
      [-1, 1.842700792949715],
      [-2.5, 1.999593047982555],
    ];
    for (const [z, expected] of table) expect(Math.abs(erfcReference(z) - expected) / expected, `erfc(${z})`).toBeLessThan(1e-13);
  });
});

describe.each(unary)('$name', (unaryCase) => {
  const { op, forward, backward } = unaryCase;
  it.each(UNARY_SHAPES)('GPU forward and backward match the float64 reference: %j', (...shape) => expectUnaryMatchesReference(engine, unaryCase, shape));

  it('stays finite and exact for |x| up to 1e4', async () => {
    const { values, grads, expected, expectedGrads } = await unaryAtPoints(engine, unaryCase, extremes);
    expect(values[extremes.length - 1]).toBe(1e4);
    expect(Math.abs(values[0])).toBe(0);
    expect(grads[extremes.length - 1]).toBe(1);
    expect(grads[0]).toBe(0);
    // Near zero, and in the negative tail where x · Φ(x) is tiny, each value keeps its own relative accuracy.
    for (let i = 0; i < extremes.length; i++) {
      if (Math.abs(extremes[i]) > 10 || expected[i] === 0) continue;
      expect(Math.abs(values[i] - expected[i]) / Math.abs(expected[i]), `value at ${extremes[i]}`).toBeLessThan(2e-5);
      if (expectedGrads[i] !== 0) {
        expect(Math.abs(grads[i] - expectedGrads[i]) / Math.abs(expectedGrads[i]), `gradient at ${extremes[i]}`).toBeLessThan(2e-5);
      }
    }
  });

  it('reference gradient agrees with central finite differences', () => {
    const random = rng(9);
    // Keep clear of relu's kink at 0, where the finite difference is not the derivative.
    const x = randomArray(40, random, 6).map((v) => (Math.abs(v) < 1e-3 ? v + 0.01 : v));
    const weights = randomArray(40, random);
    expectClose(numericGradient((v) => dot(forward(v), weights), x), backward(x, weights), 1e-6);
  });

  it('rejects integer tensors', () => {
    engine.scope(() => {
      expect(() => op(engine.tensor(new Int32Array([1, 2]), [2]))).toThrow(DTypeError);
    });
  });
});

describe('relu', () => {
  it('passes no gradient at exactly 0, like PyTorch', async () => {
    await engine.scope(async () => {
      const input = engine.tensor(new Float32Array([0, -0, 1, -1]), [4], { requiresGrad: true });
      engine.backward(relu(input), engine.full([4], 3));
      expect(Array.from(await input.grad!.read())).toEqual([0, 0, 3, 0]);
    });
  });
});
