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
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

const sizeOf = (shape: readonly number[]) => shape.reduce((product, dim) => product * dim, 1);
const shapes = [[1], [7, 13], [3, 300], [2, 3, 65]];

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

describe.each(unary)('$name', ({ name, op, forward, backward }) => {
  it.each(shapes)('GPU forward and backward match the float64 reference: %j', async (...shape) => {
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
  });

  it('stays finite and exact for |x| up to 1e4', async () => {
    const ones = new Float64Array(extremes.length).fill(1);
    await engine.scope(async () => {
      const input = engine.tensor(toF32(extremes), [extremes.length], { requiresGrad: true });
      const out = op(input);
      engine.backward(out, engine.full(out.shape, 1));
      const values = Array.from(await out.read());
      const grads = Array.from(await input.grad!.read());
      for (const value of [...values, ...grads]) expect(Number.isFinite(value)).toBe(true);
      expectClose(values, forward(extremes), 1e-5, 'out');
      expectClose(grads, backward(extremes, ones), 1e-5, 'dX');
      expect(values[extremes.length - 1]).toBe(1e4);
      expect(Math.abs(values[0])).toBe(0);
      expect(grads[extremes.length - 1]).toBe(1);
      expect(grads[0]).toBe(0);
      // Near zero, and in the negative tail where x · Φ(x) is tiny, each value keeps its own relative accuracy.
      const expected = forward(extremes);
      const expectedGrads = backward(extremes, ones);
      for (let i = 0; i < extremes.length; i++) {
        if (Math.abs(extremes[i]) > 10 || expected[i] === 0) continue;
        expect(Math.abs(values[i] - expected[i]) / Math.abs(expected[i]), `value at ${extremes[i]}`).toBeLessThan(2e-5);
        if (expectedGrads[i] !== 0) {
          expect(Math.abs(grads[i] - expectedGrads[i]) / Math.abs(expectedGrads[i]), `gradient at ${extremes[i]}`).toBeLessThan(2e-5);
        }
      }
    });
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
