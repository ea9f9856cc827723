import { describe, expect, it, vi } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { add, mul, scale, sub } from '../../../src/engine/ops/arithmetic.ts';
import {
  addBackwardReference,
  addReference,
  mulBackwardReference,
  mulReference,
  scaleBackwardReference,
  scaleReference,
  type Shape,
} from '../../../src/engine/reference/arithmetic.ts';
import type { Tensor } from '../../../src/engine/tensor.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

const sizeOf = (shape: Shape) => shape.reduce((product, dim) => product * dim, 1);

type BinaryOp = 'add' | 'sub' | 'mul';
const ops = { add, sub, mul };

function reference(op: BinaryOp, a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape) {
  return op === 'mul' ? mulReference(a, aShape, b, bShape) : addReference(a, aShape, b, bShape, 1, op === 'sub' ? -1 : 1);
}

function backwardReference(op: BinaryOp, a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape, dOut: Float64Array) {
  return op === 'mul'
    ? mulBackwardReference(a, aShape, b, bShape, dOut)
    : addBackwardReference(dOut, aShape, bShape, 1, op === 'sub' ? -1 : 1);
}

// [a shape, b shape, output shape]
const shapePairs: [Shape, Shape, Shape][] = [
  [[1], [1], [1]],
  [[7, 13], [7, 13], [7, 13]],
  [[2, 3], [3], [2, 3]], // bias against rows
  [[6, 7, 37], [37], [6, 7, 37]], // bias, odd sizes
  [[200, 3], [3], [200, 3]], // gain gradient split into chunks
  [[2, 3], [1], [2, 3]], // scalar-like
  [[1], [2, 3], [2, 3]], // broadcast first operand
  [[5], [4, 5], [4, 5]],
  [[3, 1, 5], [4, 5], [3, 4, 5]],
  [[5, 1], [1, 6], [5, 6]], // outer product: both broadcast
  [[2, 1, 3, 1], [4, 1, 5], [2, 4, 3, 5]], // several broadcast runs per operand
  [[1, 1, 6], [6], [1, 1, 6]], // same elements, different rank
  [[2000, 1], [1], [2000, 1]], // a reduction of several chunk passes
];

describe.each(['add', 'sub', 'mul'] as const)('%s', (op) => {
  it.each(shapePairs)('GPU forward and backward match the float64 reference: %j with %j', async (aShape, bShape, outShape) => {
    const random = rng(sizeOf(aShape) * 131 + sizeOf(bShape) * 7 + op.length);
    const aData = randomArray(sizeOf(aShape), random);
    const bData = randomArray(sizeOf(bShape), random);
    const dOut = randomArray(sizeOf(outShape), random);

    await engine.scope(async () => {
      const a = engine.tensor(toF32(aData), aShape, { requiresGrad: true });
      const b = engine.tensor(toF32(bData), bShape, { requiresGrad: true });
      const out = ops[op](a, b);
      const expected = reference(op, aData, aShape, bData, bShape);
      expect(out.shape).toEqual(outShape);
      expect(expected.shape).toEqual(outShape);
      expectClose(await out.read(), expected.out, 1e-5, 'out');

      engine.backward(out, engine.tensor(toF32(dOut), outShape));
      const { dA, dB } = backwardReference(op, aData, aShape, bData, bShape, dOut);
      expect(a.grad!.shape).toEqual(aShape);
      expect(b.grad!.shape).toEqual(bShape);
      expectClose(await a.grad!.read(), dA, 1e-5, 'dA');
      expectClose(await b.grad!.read(), dB, 1e-5, 'dB');
    });
  });

  it('gives no gradient to an operand that does not require one', async () => {
    const random = rng(11);
    const [aShape, bShape, outShape] = shapePairs[3];
    const aData = randomArray(sizeOf(aShape), random);
    const bData = randomArray(sizeOf(bShape), random);
    const dOut = randomArray(sizeOf(outShape), random);
    await engine.scope(async () => {
      const a = engine.tensor(toF32(aData), aShape);
      const b = engine.tensor(toF32(bData), bShape, { requiresGrad: true });
      engine.backward(ops[op](a, b), engine.tensor(toF32(dOut), outShape));
      expect(a.grad).toBeNull();
      expectClose(await b.grad!.read(), backwardReference(op, aData, aShape, bData, bShape, dOut).dB, 1e-5, 'dB');
    });
  });

  it('handles empty tensors: an empty output and a zero gradient for the broadcast operand', async () => {
    await engine.scope(async () => {
      const a = engine.tensor(new Float32Array(0), [0, 3], { requiresGrad: true });
      const b = engine.tensor([1, 2, 3], [3], { requiresGrad: true });
      const out = ops[op](a, b);
      expect(out.shape).toEqual([0, 3]);
      engine.backward(out, engine.zeros([0, 3]));
      expect(await b.grad!.toArray()).toEqual([0, 0, 0]);
    });
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(5);
    for (const [aShape, bShape, outShape] of [shapePairs[3], shapePairs[8], shapePairs[9], shapePairs[10]]) {
      const a = randomArray(sizeOf(aShape), random);
      const b = randomArray(sizeOf(bShape), random);
      const weights = randomArray(sizeOf(outShape), random);
      const { dA, dB } = backwardReference(op, a, aShape, b, bShape, weights);
      expectClose(numericGradient((x) => dot(reference(op, x, aShape, b, bShape).out, weights), a), dA, 1e-6, 'dA');
      expectClose(numericGradient((x) => dot(reference(op, a, aShape, x, bShape).out, weights), b), dB, 1e-6, 'dB');
    }
  });

  it('rejects shapes that do not broadcast, naming both', () => {
    engine.scope(() => {
      for (const [aShape, bShape] of [[[2, 3], [4, 3]], [[3], [4]], [[2, 3, 4], [3, 5]]]) {
        const a = engine.zeros(aShape);
        const b = engine.zeros(bShape);
        expect(() => ops[op](a, b)).toThrow(ShapeError);
        expect(() => ops[op](a, b)).toThrow(`${op}: cannot broadcast [${aShape.join(', ')}] with [${bShape.join(', ')}]`);
      }
    });
  });

  it('rejects integer tensors', () => {
    engine.scope(() => {
      const a = engine.tensor(new Int32Array([1, 2]), [2]);
      const b = engine.zeros([2]);
      expect(() => ops[op](a, b)).toThrow(DTypeError);
      expect(() => ops[op](b, a)).toThrow(DTypeError);
    });
  });
});

describe('broadcast kernels', () => {
  function entryPoints(run: () => void): string[] {
    const spy = vi.spyOn(engine.gpu, 'dispatch');
    try {
      run();
      return spy.mock.calls.map(([kernel]) => kernel.entryPoint);
    } finally {
      spy.mockRestore();
    }
  }

  it('use the fast paths for same shapes and a trailing bias or gain', () => {
    engine.scope(() => {
      const x = engine.zeros([4, 6, 8]);
      const [y, bias, gain, scalar, column] = [[4, 6, 8], [8], [1, 8], [1], [6, 1]].map((shape) => engine.zeros(shape));
      expect(entryPoints(() => add(x, y))).toEqual(['binary_same']);
      expect(entryPoints(() => add(x, bias))).toEqual(['binary_repeat']);
      expect(entryPoints(() => mul(gain, x))).toEqual(['binary_repeat']);
      expect(entryPoints(() => mul(x, scalar))).toEqual(['binary_repeat']);
      expect(entryPoints(() => add(x, column))).toEqual(['binary_general']);
    });
  });

  it('reduce a gain gradient in one fused product pass', () => {
    engine.scope(() => {
      const x = engine.zeros([3, 8]);
      const gain = engine.zeros([8], { requiresGrad: true });
      const out = mul(x, gain);
      const dOut = engine.zeros([3, 8]);
      const calls = entryPoints(() => engine.backward(out, dOut));
      expect(calls).toEqual(['reduce_middle_product']);
    });
  });

  it('split a long reduction into chunks of partial sums', () => {
    engine.scope(() => {
      const x = engine.zeros([200, 3]);
      const gain = engine.zeros([3], { requiresGrad: true });
      const out = mul(x, gain);
      const dOut = engine.zeros([200, 3]);
      expect(entryPoints(() => engine.backward(out, dOut))).toEqual(['reduce_middle_product', 'reduce_middle']);
    });
  });

  it('release every temporary of the backward pass', () => {
    // No scope here: a temporary the backward pass forgot to dispose would stay in use.
    const before = engine.gpu.pool.stats().bytesInUse;
    for (const [aShape, bShape, outShape] of [shapePairs[4], shapePairs[9], shapePairs[10], shapePairs[11], shapePairs[12]]) {
      for (const op of [mul, sub]) {
        const a = engine.zeros(aShape, { requiresGrad: true });
        const b = engine.zeros(bShape, { requiresGrad: true });
        const out = op(a, b);
        const dOut = engine.zeros(outShape);
        engine.backward(out, dOut);
        for (const tensor of [a, b, out, dOut]) tensor.dispose();
      }
    }
    expect(engine.gpu.pool.stats().bytesInUse).toBe(before);
  });
});

describe('scale', () => {
  it.each([[[1]], [[7, 13]], [[3, 300]]])('GPU forward and backward match the float64 reference: %j', async (shape) => {
    const random = rng(sizeOf(shape));
    const data = randomArray(sizeOf(shape), random);
    const dOut = randomArray(sizeOf(shape), random);
    for (const s of [-0.37, 2.5]) {
      await engine.scope(async () => {
        const a = engine.tensor(toF32(data), shape, { requiresGrad: true });
        const out = scale(a, s);
        expect(out.shape).toEqual(shape);
        expectClose(await out.read(), scaleReference(data, s), 1e-5, 'out');
        engine.backward(out, engine.tensor(toF32(dOut), shape));
        expectClose(await a.grad!.read(), scaleBackwardReference(dOut, s), 1e-5, 'dA');
      });
    }
  });

  it('reference gradient agrees with central finite differences', () => {
    const random = rng(3);
    const a = randomArray(20, random);
    const weights = randomArray(20, random);
    expectClose(numericGradient((x) => dot(scaleReference(x, -1.7), weights), a), scaleBackwardReference(weights, -1.7), 1e-6);
  });

  it('rejects integer tensors', () => {
    engine.scope(() => {
      expect(() => scale(engine.tensor(new Int32Array([1]), [1]), 2)).toThrow(DTypeError);
    });
  });
});

describe('one tensor as both operands', () => {
  async function gradOf(build: (x: Tensor) => Tensor, data: Float32Array, shape: number[]): Promise<number[]> {
    return engine.scope(async () => {
      const x = engine.tensor(data, shape, { requiresGrad: true });
      const out = build(x);
      engine.backward(out, engine.full(out.shape, 1));
      return Array.from(await x.grad!.read());
    });
  }

  it('add(x, x) has gradient 2 everywhere', async () => {
    const data = toF32(randomArray(7 * 13, rng(1)));
    expect(await gradOf((x) => add(x, x), data, [7, 13])).toEqual(new Array(7 * 13).fill(2));
  });

  it('sub(x, x) has gradient 0 and mul(x, x) has gradient 2x', async () => {
    const data = toF32(randomArray(9, rng(2)));
    expect(await gradOf((x) => sub(x, x), data, [9])).toEqual(new Array(9).fill(0));
    expectClose(await gradOf((x) => mul(x, x), data, [9]), Array.from(data, (v) => 2 * v), 1e-6, 'd(x²)');
  });
});
