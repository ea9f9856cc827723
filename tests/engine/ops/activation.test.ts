import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { gelu, silu, swiglu } from '../../../src/engine/ops/activation.ts';
import {
  geluBackwardReference,
  geluReference,
  siluBackwardReference,
  siluReference,
  swigluBackwardReference,
  swigluReference,
} from '../../../src/engine/reference/activation.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { expectUnaryMatchesReference, sizeOf, UNARY_SHAPES, unaryAtPoints } from './unaryChecks.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();


// Inputs from tiny to far beyond where tanh and sigmoid saturate in f32.
const extremes = Float64Array.from(
  [-1e4, -1000, -100, -50, -20, -10, -5, -2, -1, -1e-3, -1e-7, 0, 1e-7, 1e-3, 1, 2, 5, 10, 20, 50, 100, 1000, 1e4],
  Math.fround,
);

const unary = [
  { name: 'gelu', op: gelu, forward: geluReference, backward: geluBackwardReference },
  { name: 'silu', op: silu, forward: siluReference, backward: siluBackwardReference },
] as const;

describe.each(unary)('$name', (unaryCase) => {
  const { op, forward, backward } = unaryCase;
  it.each(UNARY_SHAPES)('GPU forward and backward match the float64 reference: %j', (...shape) => expectUnaryMatchesReference(engine, unaryCase, shape));

  it('stays finite and exact for |x| up to 1e4', async () => {
    const { values, grads, expected, expectedGrads } = await unaryAtPoints(engine, unaryCase, extremes);
    // Saturated ends: the identity above, zero below.
    expect(values[extremes.length - 1]).toBe(1e4);
    expect(Math.abs(values[0])).toBe(0);
    expect(grads[extremes.length - 1]).toBe(1);
    expect(grads[0]).toBe(0);
    // Around zero the relative error is small too.
    const small = extremes.map((v, i) => (Math.abs(v) <= 1 ? i : -1)).filter((i) => i >= 0);
    expectClose(small.map((i) => values[i]), small.map((i) => expected[i]), 1e-5, 'out near 0');
    expectClose(small.map((i) => grads[i]), small.map((i) => expectedGrads[i]), 1e-5, 'dX near 0');
  });

  it('reference gradient agrees with central finite differences', () => {
    const random = rng(9);
    const x = randomArray(40, random, 6);
    const weights = randomArray(40, random);
    expectClose(numericGradient((v) => dot(forward(v), weights), x), backward(x, weights), 1e-6);
  });

  it('rejects integer tensors', () => {
    engine.scope(() => {
      expect(() => op(engine.tensor(new Int32Array([1, 2]), [2]))).toThrow(DTypeError);
    });
  });
});

describe('gelu', () => {
  it('matches independently computed values of the tanh formula', async () => {
    // Python: 0.5*x*(1+math.tanh(math.sqrt(2/math.pi)*(x+0.044715*x**3))), PyTorch's gelu(approximate='tanh').
    const expected = [-0.0036373920817729943, -0.15880800939172324, 0.34571400982514394, 0.8411919906082768, 2.996362607918227];
    expectClose(geluReference(Float64Array.from([-3, -1, 0.5, 1, 3])), expected, 1e-14, 'reference');
    await engine.scope(async () => {
      expectClose(await gelu(engine.tensor([-3, -1, 0.5, 1, 3], [5])).read(), expected, 1e-6, 'GPU');
    });
  });
});

describe('swiglu', () => {
  it.each(UNARY_SHAPES)('GPU forward and backward match the float64 reference: %j', async (...shape) => {
    const random = rng(sizeOf(shape) + 17);
    const gate = randomArray(sizeOf(shape), random, 6);
    const up = randomArray(sizeOf(shape), random, 2);
    const dOut = randomArray(sizeOf(shape), random);
    const expected = swigluBackwardReference(gate, up, dOut);
    for (const [needGate, needUp] of [[true, true], [true, false], [false, true]]) {
      await engine.scope(async () => {
        const g = engine.tensor(toF32(gate), shape, { requiresGrad: needGate });
        const u = engine.tensor(toF32(up), shape, { requiresGrad: needUp });
        const out = swiglu(g, u);
        expect(out.shape).toEqual(shape);
        expectClose(await out.read(), swigluReference(gate, up), 1e-5, 'out');
        engine.backward(out, engine.tensor(toF32(dOut), shape));
        if (needGate) expectClose(await g.grad!.read(), expected.dGate, 1e-5, 'dGate');
        else expect(g.grad).toBeNull();
        if (needUp) expectClose(await u.grad!.read(), expected.dUp, 1e-5, 'dUp');
        else expect(u.grad).toBeNull();
      });
    }
  });

  it('stays finite for |gate| up to 1e4', async () => {
    const up = Float64Array.from(extremes, (_, i) => Math.fround(1 + (i % 3)));
    const ones = new Float64Array(extremes.length).fill(1);
    await engine.scope(async () => {
      const g = engine.tensor(toF32(extremes), [extremes.length], { requiresGrad: true });
      const u = engine.tensor(toF32(up), [extremes.length], { requiresGrad: true });
      const out = swiglu(g, u);
      engine.backward(out, engine.full(out.shape, 1));
      const expected = swigluBackwardReference(extremes, up, ones);
      const values = Array.from(await out.read());
      const dGate = Array.from(await g.grad!.read());
      const dUp = Array.from(await u.grad!.read());
      for (const value of [...values, ...dGate, ...dUp]) expect(Number.isFinite(value)).toBe(true);
      expectClose(values, swigluReference(extremes, up), 1e-5, 'out');
      expectClose(dGate, expected.dGate, 1e-5, 'dGate');
      expectClose(dUp, expected.dUp, 1e-5, 'dUp');
    });
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(4);
    const gate = randomArray(30, random, 6);
    const up = randomArray(30, random, 2);
    const weights = randomArray(30, random);
    const { dGate, dUp } = swigluBackwardReference(gate, up, weights);
    expectClose(numericGradient((x) => dot(swigluReference(x, up), weights), gate), dGate, 1e-6, 'dGate');
    expectClose(numericGradient((x) => dot(swigluReference(gate, x), weights), up), dUp, 1e-6, 'dUp');
  });

  it('rejects mismatched shapes, naming both, and integer tensors', () => {
    engine.scope(() => {
      const gate = engine.zeros([2, 3]);
      expect(() => swiglu(gate, engine.zeros([3, 2]))).toThrow(ShapeError);
      expect(() => swiglu(gate, engine.zeros([3, 2]))).toThrow('swiglu: both operands must be [2, 3], got [3, 2]');
      expect(() => swiglu(gate, engine.zeros([3]))).toThrow(ShapeError);
      expect(() => swiglu(gate, engine.tensor(new Int32Array(6), [2, 3]))).toThrow(DTypeError);
    });
  });
});
