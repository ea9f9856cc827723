import { describe, expect, it } from 'vitest';
import { ShapeError } from '../../../src/engine/errors.ts';
import { matmul, matmulInto, type MatmulKernel } from '../../../src/engine/ops/matmul.ts';
import { matmulBackwardReference, matmulReference, type MatmulReferenceDims } from '../../../src/engine/reference/matmul.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

function shapes(d: MatmulReferenceDims) {
  const a = d.transposeA ? [d.K, d.M] : [d.M, d.K];
  const b = d.transposeB ? [d.N, d.K] : [d.K, d.N];
  return { a: d.aShared ? a : [d.batch, ...a], b: d.bShared ? b : [d.batch, ...b] };
}

const cases: MatmulReferenceDims[] = [];
for (const [M, N, K] of [[1, 1, 1], [3, 5, 7], [17, 65, 33], [64, 64, 16], [70, 9, 130]]) {
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      cases.push({ batch: 1, M, N, K, transposeA, transposeB, aShared: false, bShared: false });
    }
  }
}
cases.push({ batch: 3, M: 5, N: 6, K: 7, transposeA: false, transposeB: false, aShared: false, bShared: false });
cases.push({ batch: 4, M: 9, N: 11, K: 5, transposeA: false, transposeB: true, aShared: false, bShared: true }); // x · Wᵀ
cases.push({ batch: 2, M: 6, N: 3, K: 8, transposeA: true, transposeB: false, aShared: true, bShared: false });
cases.push({ batch: 3, M: 4, N: 5, K: 6, transposeA: true, transposeB: true, aShared: false, bShared: true });

describe('matmul', () => {
  it.each(cases)('GPU forward and backward match the float64 reference: %o', async (d) => {
    const random = rng(d.M * 1000 + d.N * 10 + d.K + d.batch);
    const { a: aShape, b: bShape } = shapes(d);
    const aData = randomArray(aShape.reduce((p, x) => p * x, 1), random);
    const bData = randomArray(bShape.reduce((p, x) => p * x, 1), random);
    const dC = randomArray(d.batch * d.M * d.N, random);

    await engine.scope(async () => {
      const a = engine.tensor(toF32(aData), aShape, { requiresGrad: true });
      const b = engine.tensor(toF32(bData), bShape, { requiresGrad: true });
      const c = matmul(a, b, { transposeA: d.transposeA, transposeB: d.transposeB });
      expect(c.shape).toEqual([...(d.aShared && d.bShared ? [] : d.aShared ? [d.batch] : aShape.slice(0, -2)), d.M, d.N]);
      expectClose(await c.read(), matmulReference(aData, bData, d), 1e-4, 'C');

      engine.backward(c, engine.tensor(toF32(dC), c.shape));
      const { dA, dB } = matmulBackwardReference(aData, bData, dC, d);
      expectClose(await a.grad!.read(), dA, 1e-4, 'dA');
      expectClose(await b.grad!.read(), dB, 1e-4, 'dB');
    });
  });

  it.each(cases.filter((_, i) => i % 3 === 0 || i >= cases.length - 4))('both kernels (tiled and direct) match the reference, accumulating with alpha and beta: %o', async (d) => {
    const random = rng(d.M * 7 + d.N * 3 + d.K);
    const { a: aShape, b: bShape } = shapes(d);
    const aData = randomArray(aShape.reduce((p, x) => p * x, 1), random);
    const bData = randomArray(bShape.reduce((p, x) => p * x, 1), random);
    const cData = randomArray(d.batch * d.M * d.N, random);
    const product = matmulReference(aData, bData, d);
    const expected = product.map((value, i) => 0.5 * value + 2 * cData[i]);
    await engine.scope(async () => {
      const a = engine.tensor(toF32(aData), aShape);
      const b = engine.tensor(toF32(bData), bShape);
      const dims = { batch: d.batch, M: d.M, N: d.N, K: d.K, aBatched: !d.aShared, bBatched: !d.bShared };
      for (const kernel of ['tiled', 'direct'] as MatmulKernel[]) {
        const c = engine.tensor(toF32(cData), [d.batch, d.M, d.N]);
        matmulInto(c, a, b, dims, d.transposeA, d.transposeB, 0.5, 2, kernel);
        expectClose(await c.read(), expected, 1e-4, kernel);
      }
    });
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(7);
    for (const d of [cases[7], cases[cases.length - 1], cases[cases.length - 2]]) {
      const { a: aShape, b: bShape } = shapes(d);
      const a = randomArray(aShape.reduce((p, x) => p * x, 1), random);
      const b = randomArray(bShape.reduce((p, x) => p * x, 1), random);
      const weights = randomArray(d.batch * d.M * d.N, random);
      const { dA, dB } = matmulBackwardReference(a, b, weights, d);
      expectClose(numericGradient((x) => dot(matmulReference(x, b, d), weights), a), dA, 1e-6, 'dA');
      expectClose(numericGradient((x) => dot(matmulReference(a, x, d), weights), b), dB, 1e-6, 'dB');
    }
  });

  it('rejects operands whose inner dimensions differ, naming both shapes', () => {
    engine.scope(() => {
      const a = engine.zeros([2, 3]);
      const b = engine.zeros([4, 5]);
      expect(() => matmul(a, b)).toThrow(ShapeError);
      expect(() => matmul(a, b)).toThrow('[2, 3] by [4, 5]');
    });
  });
});
