import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import {
  crossEntropy,
  crossEntropyCount,
  crossEntropyMean,
  crossEntropyRows,
  crossEntropyRowsBackward,
} from '../../../src/engine/ops/crossEntropy.ts';
import { crossEntropyBackwardReference, crossEntropyReference } from '../../../src/engine/reference/crossEntropy.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

interface Case {
  N: number;
  V: number;
  scale: number;
  /** Every `ignoreEvery`-th row (from row 1) gets the ignore index; 0: none; 1: all. */
  ignoreEvery: number;
  ignoreIndex?: number;
}

function makeTargets(c: Case, random: () => number): Int32Array {
  const ignoreIndex = c.ignoreIndex ?? -100;
  const targets = new Int32Array(c.N);
  for (let row = 0; row < c.N; row++) {
    const ignored = c.ignoreEvery === 1 || (c.ignoreEvery > 1 && row % c.ignoreEvery === 1);
    targets[row] = ignored ? ignoreIndex : Math.floor(random() * c.V);
  }
  return targets;
}

const cases: Case[] = [
  { N: 1, V: 1, scale: 1, ignoreEvery: 0 },
  { N: 3, V: 7, scale: 3, ignoreEvery: 0 },
  { N: 6, V: 7, scale: 3, ignoreEvery: 3 },
  { N: 5, V: 1000, scale: 4, ignoreEvery: 2 },
  { N: 2, V: 50257, scale: 5, ignoreEvery: 0 },
  { N: 300, V: 3, scale: 2, ignoreEvery: 7, ignoreIndex: 0 }, // more rows than a workgroup; ignore class 0
  { N: 4, V: 1000, scale: 1e4, ignoreEvery: 0 }, // large logits: must stay finite and exact
  { N: 4, V: 7, scale: 1, ignoreEvery: 1 }, // every row ignored: loss 0, gradient 0
];

describe('crossEntropy', () => {
  it.each(cases)('GPU loss and dLogits match the float64 reference: %o', async (c) => {
    const random = rng(c.N * 100_003 + c.V);
    const logits = randomArray(c.N * c.V, random, c.scale);
    const targets = makeTargets(c, random);
    const ignoreIndex = c.ignoreIndex ?? -100;
    const dLoss = 0.75;

    await engine.scope(async () => {
      const x = engine.tensor(toF32(logits), [c.N, c.V], { requiresGrad: true });
      const t = engine.tensor(targets, [c.N]);
      const loss = crossEntropy(x, t, { ignoreIndex });
      expect(loss.shape).toEqual([]);
      const expected = crossEntropyReference(logits, targets, c.V, ignoreIndex);
      const [value] = await loss.toArray();
      expect(Number.isFinite(value)).toBe(true);
      if (expected.count === 0) expect(value).toBe(0);
      else expectClose([value], [expected.loss], 1e-5, 'loss');

      engine.backward(loss, engine.tensor([dLoss], []));
      const dLogits = await x.grad!.read();
      const expectedGrad = crossEntropyBackwardReference(logits, targets, c.V, dLoss, ignoreIndex);
      if (expected.count === 0) expect(dLogits.every((g) => g === 0)).toBe(true);
      else expectClose(dLogits, expectedGrad, 1e-5, 'dLogits');
    });
  });

  it('takes [B, T, V] logits with [B, T] targets', async () => {
    const random = rng(11);
    const [B, T, V] = [2, 3, 9];
    const logits = randomArray(B * T * V, random, 2);
    const targets = Int32Array.from([4, -100, 0, 8, 3, -100]);
    await engine.scope(async () => {
      const x = engine.tensor(toF32(logits), [B, T, V], { requiresGrad: true });
      const loss = crossEntropy(x, engine.tensor(targets, [B, T]));
      expectClose(await loss.toArray(), [crossEntropyReference(logits, targets, V).loss], 1e-5, 'loss');
      engine.backward(loss);
      expect(x.grad!.shape).toEqual([B, T, V]);
      expectClose(await x.grad!.read(), crossEntropyBackwardReference(logits, targets, V), 1e-5, 'dLogits');
    });
  });

  it('chunked rows give the same loss and gradient as one call', async () => {
    const random = rng(5);
    const [N, V] = [7, 33];
    const logits = randomArray(N * V, random, 3);
    const targets = Int32Array.from([1, -100, 32, 0, 17, -100, 5]);
    const expected = crossEntropyReference(logits, targets, V);
    const expectedGrad = crossEntropyBackwardReference(logits, targets, V, 2);
    await engine.scope(async () => {
      const t = engine.tensor(targets, [N]);
      const count = crossEntropyCount(t);
      expect(await count.toArray()).toEqual([expected.count]);
      const rowLoss = engine.zeros([N]);
      const dLoss = engine.tensor([2], [1]);
      const grads: number[] = [];
      for (const [start, rows] of [[0, 3], [3, 1], [4, 3]]) {
        const chunk = engine.tensor(toF32(logits.subarray(start * V, (start + rows) * V)), [rows, V]);
        const { rowStats } = crossEntropyRows(chunk, t, { rowOffset: start, rowLoss });
        expect(rowStats.shape).toEqual([rows, 2]);
        const dChunk = crossEntropyRowsBackward(chunk, t, rowStats, dLoss, count, { rowOffset: start });
        grads.push(...(await dChunk.read()));
      }
      expectClose(await rowLoss.read(), expected.rowLoss, 1e-5, 'rowLoss');
      expectClose(await crossEntropyMean(rowLoss, count).toArray(), [expected.loss], 1e-5, 'loss');
      expectClose(grads, expectedGrad, 1e-5, 'dLogits');
    });
  });

  it('a target outside [0, V) makes the loss NaN instead of reading out of bounds', async () => {
    await engine.scope(async () => {
      const x = engine.tensor(toF32([0.5, -1, 2, 0, 1, 3]), [2, 3]);
      const [value] = await crossEntropy(x, engine.tensor(Int32Array.from([1, 3]), [2])).toArray();
      expect(Number.isNaN(value)).toBe(true);
    });
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(3);
    for (const c of [cases[1], cases[2], { N: 5, V: 4, scale: 2, ignoreEvery: 2, ignoreIndex: 3 }]) {
      const logits = randomArray(c.N * c.V, random, c.scale);
      const targets = makeTargets(c, random);
      const weight = 1.7;
      const ignoreIndex = c.ignoreIndex ?? -100;
      const numeric = numericGradient((x) => weight * crossEntropyReference(x, targets, c.V, ignoreIndex).loss, logits);
      expectClose(numeric, crossEntropyBackwardReference(logits, targets, c.V, weight, ignoreIndex), 1e-6, 'dLogits');
      // The per-row losses weighted by a random vector, to check each row on its own.
      const weights = randomArray(c.N, random);
      const rowNumeric = numericGradient((x) => dot(crossEntropyReference(x, targets, c.V, ignoreIndex).rowLoss, weights), logits);
      const count = targets.filter((t) => t !== ignoreIndex).length;
      const rowAnalytic = new Float64Array(c.N * c.V);
      for (let row = 0; row < c.N; row++) {
        const one = crossEntropyBackwardReference(logits, targets.map((t, i) => (i === row ? t : ignoreIndex)), c.V, 1, ignoreIndex);
        for (let j = 0; j < c.V; j++) rowAnalytic[row * c.V + j] = one[row * c.V + j] * weights[row];
      }
      expect(count).toBeGreaterThan(0);
      expectClose(rowNumeric, rowAnalytic, 1e-6, 'per-row dLogits');
    }
  });

  it('rejects mismatched shapes and dtypes with typed errors', () => {
    engine.scope(() => {
      const x = engine.zeros([4, 5]);
      expect(() => crossEntropy(x, engine.zeros([3], { dtype: 'i32' }))).toThrow(ShapeError);
      expect(() => crossEntropy(x, engine.zeros([3], { dtype: 'i32' }))).toThrow('[4, 5]');
      expect(() => crossEntropy(x, engine.zeros([4]))).toThrow(DTypeError);
      expect(() => crossEntropy(engine.zeros([4, 0]), engine.zeros([4], { dtype: 'i32' }))).toThrow(ShapeError);
      expect(() => crossEntropy(x, engine.zeros([4], { dtype: 'i32' }), { ignoreIndex: 0.5 })).toThrow(RangeError);
      const t = engine.zeros([6], { dtype: 'i32' });
      expect(() => crossEntropyRows(x, t, { rowOffset: 3, rowLoss: engine.zeros([6]) })).toThrow(ShapeError);
      expect(() => crossEntropyRows(x, t, { rowOffset: 1 })).toThrow(ShapeError);
    });
  });
});
