import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { loraAddInto, loraDelta, loraMerge, loraProduct, loraProductPlan, loraUnmerge } from '../../../src/engine/ops/lora.ts';
import { matmul } from '../../../src/engine/ops/matmul.ts';
import { dropoutBackwardReference, dropoutReference } from '../../../src/engine/reference/dropout.ts';
import { loraBackwardReference, loraMergeReference, loraReference, type LoraReferenceDims } from '../../../src/engine/reference/lora.ts';
import { matmulBackwardReference, matmulReference } from '../../../src/engine/reference/matmul.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

interface Case {
  lead: number[]; // leading dimensions of x: T = their product
  I: number;
  O: number;
  R: number;
  scale: number;
  fused: boolean; // loraAddInto (into a base output) rather than loraDelta
}

// Token counts 1, 7, 300, 1000 (the weight gradients' inner dimension: 300 and 1000 split into
// chunks), features 5, 64, 96, 130 (none a multiple of the 128-wide tiles), ranks 1 to 64.
const cases: Case[] = [
  { lead: [1], I: 5, O: 5, R: 1, scale: 2, fused: false },
  { lead: [7], I: 64, O: 96, R: 4, scale: 0.5, fused: true },
  { lead: [300], I: 130, O: 64, R: 8, scale: 2, fused: false },
  { lead: [1000], I: 96, O: 130, R: 16, scale: 1 / 16, fused: true },
  { lead: [7], I: 130, O: 5, R: 64, scale: 0.25, fused: false },
  { lead: [300], I: 64, O: 96, R: 64, scale: 0.125, fused: true },
  { lead: [1000], I: 5, O: 64, R: 1, scale: 8, fused: false },
  { lead: [2, 3], I: 96, O: 5, R: 8, scale: 2, fused: true },
];

const product = (shape: number[]) => shape.reduce((p, x) => p * x, 1);
const dimsOf = (c: Pick<Case, 'lead' | 'I' | 'O' | 'R'>): LoraReferenceDims => ({ rows: product(c.lead), inFeatures: c.I, outFeatures: c.O, rank: c.R });

function inputs(c: Case, seed: number) {
  const random = rng(seed);
  const T = product(c.lead);
  return {
    x: randomArray(T * c.I, random),
    A: randomArray(c.R * c.I, random),
    B: randomArray(c.O * c.R, random),
    base: randomArray(T * c.O, random),
    dY: randomArray(T * c.O, random),
  };
}

describe('loraDelta / loraAddInto', () => {
  it.each(cases)('GPU forward and gradients match the float64 reference: %o', async (c) => {
    const d = dimsOf(c);
    const data = inputs(c, d.rows * 131 + c.I * 17 + c.O * 3 + c.R);
    await engine.scope(async () => {
      const x = engine.tensor(toF32(data.x), [...c.lead, c.I], { requiresGrad: true });
      const A = engine.tensor(toF32(data.A), [c.R, c.I], { requiresGrad: true });
      const B = engine.tensor(toF32(data.B), [c.O, c.R], { requiresGrad: true });
      const base = c.fused ? engine.tensor(toF32(data.base), [...c.lead, c.O], { requiresGrad: true }) : null;
      const y = base ? loraAddInto(base, x, A, B, c.scale) : loraDelta(x, A, B, c.scale);
      expect(y.shape).toEqual([...c.lead, c.O]);
      expectClose(await y.read(), loraReference(data.x, data.A, data.B, c.scale, d, base ? data.base : undefined), 1e-4, 'y');

      engine.backward(y, engine.tensor(toF32(data.dY), y.shape));
      const expected = loraBackwardReference(data.x, data.A, data.B, c.scale, data.dY, d);
      expectClose(await x.grad!.read(), expected.dx, 1e-4, 'dx');
      expectClose(await A.grad!.read(), expected.dA, 1e-4, 'dA');
      expectClose(await B.grad!.read(), expected.dB, 1e-4, 'dB');
      if (base) expectClose(await base.grad!.read(), data.dY, 0, 'dBase');
    });
  });

  it('fits tiles to the rank, splits long inner dimensions, and sends wide short-K products to the GEMM', () => {
    // dA = gᵀ·x: M = R, N = I, K = T;  dB = s·dYᵀ·h: M = O, N = R, K = T.
    expect(loraProductPlan(8, 130, 300).chunks).toBeGreaterThan(1);
    expect(loraProductPlan(130, 16, 1000).chunks).toBeGreaterThan(1);
    expect(loraProductPlan(8, 576, 512).chunks).toBeGreaterThan(1);
    // Narrow tiles for the rank side.
    expect(loraProductPlan(512, 8, 576)).toMatchObject({ tileN: 8, tileM: 128 });
    expect(loraProductPlan(8, 576, 512)).toMatchObject({ tileM: 8, tileN: 128 });
    // Short products run in one pass; a wide output with a short K (the expansion over many tokens,
    // the merge) goes to the big-tile GEMM.
    expect(loraProductPlan(7, 64, 5)).toMatchObject({ chunks: 1, gemm: false });
    expect(loraProductPlan(7, 576, 8)).toMatchObject({ chunks: 1, gemm: false });
    expect(loraProductPlan(512, 576, 8)).toMatchObject({ chunks: 1, gemm: true });
    expect(loraProductPlan(576, 576, 64)).toMatchObject({ chunks: 1, gemm: true });
    expect(loraProductPlan(512, 64, 576).gemm).toBe(false);
  });

  it('gives the same product for every K split and operand layout, bit for bit on repeat', async () => {
    const random = rng(5);
    const [M, N, K] = [9, 70, 203];
    const l = randomArray(M * K, random);
    const q = randomArray(K * N, random);
    for (const [transposeL, transposeQ] of [[false, false], [true, false], [false, true], [true, true]]) {
      const expected = matmulReference(l, q, { batch: 1, M, N, K, transposeA: transposeL, transposeB: transposeQ, aShared: false, bShared: false });
      await engine.scope(async () => {
        const lt = engine.tensor(toF32(l), transposeL ? [K, M] : [M, K]);
        const qt = engine.tensor(toF32(q), transposeQ ? [N, K] : [K, N]);
        const shape = { M, N, K, transposeL, transposeQ };
        for (const chunks of [1, 2, 13]) {
          const plan = loraProductPlan(M, N, K, chunks);
          expect(plan.chunks).toBe(chunks);
          const c = engine.empty([M, N]);
          loraProduct(c, lt, qt, shape, 1, 0, plan);
          const first = await c.read();
          expectClose(first, expected, 1e-5, `C, ${chunks} chunks`);
          if (chunks === 13) {
            loraProduct(c, lt, qt, shape, 1, 0, plan);
            expect(Array.from(await c.read())).toEqual(Array.from(first));
          }
        }
        // alpha and beta: C = 0.5 · L·Q − 2 · C, split and unsplit.
        for (const chunks of [1, 4]) {
          const c0 = randomArray(M * N, random);
          const c = engine.tensor(toF32(c0), [M, N]);
          loraProduct(c, lt, qt, shape, 0.5, -2, loraProductPlan(M, N, K, chunks));
          expectClose(await c.read(), expected.map((v, i) => 0.5 * v - 2 * c0[i]), 1e-5, `alpha/beta, ${chunks} chunks`);
        }
      });
    }
  });

  it('applies dropout with the dropout op\'s Philox mask, in the forward pass and in dx', async () => {
    const c: Case = { lead: [7], I: 64, O: 96, R: 8, scale: 2, fused: true };
    const d = dimsOf(c);
    const data = inputs(c, 77);
    const [p, seed, offset] = [0.25, 1234, 17];
    const xd = dropoutReference(data.x, p, seed, offset);
    expect(xd.filter((v) => v === 0).length).toBeGreaterThan(40);
    for (const fused of [true, false]) {
      await engine.scope(async () => {
        const x = engine.tensor(toF32(data.x), [7, 64], { requiresGrad: true });
        const A = engine.tensor(toF32(data.A), [8, 64], { requiresGrad: true });
        const B = engine.tensor(toF32(data.B), [96, 8], { requiresGrad: true });
        const dropout = { p, seed, offset };
        const y = fused
          ? loraAddInto(engine.tensor(toF32(data.base), [7, 96]), x, A, B, c.scale, { dropout })
          : loraDelta(x, A, B, c.scale, { dropout });
        expectClose(await y.read(), loraReference(xd, data.A, data.B, c.scale, d, fused ? data.base : undefined), 1e-4, 'y');
        engine.backward(y, engine.tensor(toF32(data.dY), [7, 96]));
        const expected = loraBackwardReference(xd, data.A, data.B, c.scale, data.dY, d);
        expectClose(await x.grad!.read(), dropoutBackwardReference(expected.dx, p, seed, offset), 1e-4, 'dx');
        expectClose(await A.grad!.read(), expected.dA, 1e-4, 'dA');
        expectClose(await B.grad!.read(), expected.dB, 1e-4, 'dB');
      });
    }
  });

  it('computes only the gradients that are needed', async () => {
    const c: Case = { lead: [5], I: 9, O: 6, R: 4, scale: 0.5, fused: false };
    const d = dimsOf(c);
    const data = inputs(c, 91);
    const expected = loraBackwardReference(data.x, data.A, data.B, c.scale, data.dY, d);
    for (const [needX, needA, needB] of [[false, true, true], [false, false, true], [true, false, false], [false, true, false]]) {
      await engine.scope(async () => {
        const x = engine.tensor(toF32(data.x), [5, 9], { requiresGrad: needX });
        const A = engine.tensor(toF32(data.A), [4, 9], { requiresGrad: needA });
        const B = engine.tensor(toF32(data.B), [6, 4], { requiresGrad: needB });
        const dispatches = engine.gpu.counters.dispatches;
        const y = loraDelta(x, A, B, c.scale);
        expect(engine.gpu.counters.dispatches - dispatches).toBe(2); // h = x·Aᵀ, then y = s·h·Bᵀ
        engine.backward(y, engine.tensor(toF32(data.dY), [5, 6]));
        if (needX) expectClose(await x.grad!.read(), expected.dx, 1e-4, 'dx');
        else expect(x.grad).toBeNull();
        if (needA) expectClose(await A.grad!.read(), expected.dA, 1e-4, 'dA');
        else expect(A.grad).toBeNull();
        if (needB) expectClose(await B.grad!.read(), expected.dB, 1e-4, 'dB');
        else expect(B.grad).toBeNull();
      });
    }
    await engine.scope(async () => {
      const y = loraDelta(engine.tensor(toF32(data.x), [5, 9]), engine.tensor(toF32(data.A), [4, 9]), engine.tensor(toF32(data.B), [6, 4]), c.scale);
      expect(y.requiresGrad).toBe(false);
      expectClose(await y.read(), loraReference(data.x, data.A, data.B, c.scale, d), 1e-4, 'y');
    });
  });

  it('adds into the base output in place, or into a copy when the base output is held elsewhere', async () => {
    const c: Case = { lead: [6], I: 10, O: 12, R: 2, scale: 3, fused: true };
    const d = dimsOf(c);
    const data = inputs(c, 3);
    const expected = loraReference(data.x, data.A, data.B, c.scale, d, data.base);
    await engine.scope(async () => {
      const [x, A, B] = [engine.tensor(toF32(data.x), [6, 10]), engine.tensor(toF32(data.A), [2, 10]), engine.tensor(toF32(data.B), [12, 2])];
      const base = engine.tensor(toF32(data.base), [6, 12]);
      const y = loraAddInto(base, x, A, B, c.scale);
      expect(y.buffer).toBe(base.buffer);
      expectClose(await y.read(), expected, 1e-5, 'y in place');

      const held = engine.tensor(toF32(data.base), [6, 12]).retain();
      const z = loraAddInto(held, x, A, B, c.scale);
      expect(z.buffer).not.toBe(held.buffer);
      expectClose(await z.read(), expected, 1e-5, 'y in a copy');
      expect(Array.from(await held.read())).toEqual(Array.from(toF32(data.base)));
      held.release();
    });
  });

  it('adds into a base matmul output and backpropagates through both branches', async () => {
    const [T, I, O, R, s] = [11, 13, 7, 3, 0.75];
    const d = { rows: T, inFeatures: I, outFeatures: O, rank: R };
    const random = rng(12);
    const [xData, wData, aData, bData, dY] = [T * I, O * I, R * I, O * R, T * O].map((n) => randomArray(n, random));
    const mm = { batch: 1, M: T, N: O, K: I, transposeA: false, transposeB: true, aShared: false, bShared: false };
    await engine.scope(async () => {
      const x = engine.tensor(toF32(xData), [T, I], { requiresGrad: true });
      const W = engine.tensor(toF32(wData), [O, I]); // frozen
      const A = engine.tensor(toF32(aData), [R, I], { requiresGrad: true });
      const B = engine.tensor(toF32(bData), [O, R], { requiresGrad: true });
      const y = loraAddInto(matmul(x, W, { transposeB: true }), x, A, B, s);
      expectClose(await y.read(), loraReference(xData, aData, bData, s, d, matmulReference(xData, wData, mm)), 1e-4, 'y');
      engine.backward(y, engine.tensor(toF32(dY), [T, O]));
      const lora = loraBackwardReference(xData, aData, bData, s, dY, d);
      const base = matmulBackwardReference(xData, wData, dY, mm);
      expectClose(await x.grad!.read(), lora.dx.map((v, i) => v + base.dA[i]), 1e-4, 'dx');
      expectClose(await A.grad!.read(), lora.dA, 1e-4, 'dA');
      expectClose(await B.grad!.read(), lora.dB, 1e-4, 'dB');
      expect(W.grad).toBeNull();
    });
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(21);
    for (const [T, I, O, R] of [[1, 1, 1, 1], [3, 4, 5, 2], [4, 3, 2, 5]]) {
      const d = { rows: T, inFeatures: I, outFeatures: O, rank: R };
      const [x, A, B, w] = [T * I, R * I, O * R, T * O].map((n) => randomArray(n, random));
      const s = 1.5;
      const expected = loraBackwardReference(x, A, B, s, w, d);
      expectClose(numericGradient((v) => dot(loraReference(v, A, B, s, d), w), x), expected.dx, 1e-6, 'dx');
      expectClose(numericGradient((v) => dot(loraReference(x, v, B, s, d), w), A), expected.dA, 1e-6, 'dA');
      expectClose(numericGradient((v) => dot(loraReference(x, A, v, s, d), w), B), expected.dB, 1e-6, 'dB');
    }
  });

  it('rejects mismatched shapes, other dtypes and bad numbers, naming the shapes', () => {
    engine.scope(() => {
      const x = engine.zeros([2, 5]);
      const A = engine.zeros([4, 5]);
      const B = engine.zeros([3, 4]);
      expect(() => loraDelta(engine.zeros([2, 6]), A, B, 1)).toThrow(ShapeError);
      expect(() => loraDelta(engine.zeros([2, 6]), A, B, 1)).toThrow('x [2, 6] must end in 5');
      expect(() => loraDelta(engine.zeros([]), A, B, 1)).toThrow(ShapeError);
      expect(() => loraDelta(x, A, engine.zeros([3, 2]), 1)).toThrow('got A [4, 5] and B [3, 2]');
      expect(() => loraDelta(x, engine.zeros([20]), B, 1)).toThrow(ShapeError);
      expect(() => loraDelta(x, engine.zeros([0, 5]), engine.zeros([3, 0]), 1)).toThrow(ShapeError);
      expect(() => loraAddInto(engine.zeros([2, 4]), x, A, B, 1)).toThrow(ShapeError);
      expect(() => loraAddInto(engine.zeros([2, 4]), x, A, B, 1)).toThrow('must be [2, 3], got [2, 4]');
      expect(() => loraAddInto(engine.zeros([3]), x, A, B, 1)).toThrow(ShapeError);
      expect(() => loraDelta(engine.zeros([2, 5], { dtype: 'i32' }), A, B, 1)).toThrow(DTypeError);
      expect(() => loraAddInto(engine.zeros([2, 3], { dtype: 'u32' }), x, A, B, 1)).toThrow(DTypeError);
      expect(() => loraDelta(x, A, B, Number.NaN)).toThrow(RangeError);
      expect(() => loraDelta(x, A, B, 1, { dropout: { p: 1, seed: 0 } })).toThrow(RangeError);
      expect(() => loraAddInto(engine.zeros([2, 3]), x, A, B, 1, { dropout: { p: 0.1, seed: -1 } })).toThrow(RangeError);
      expect(() => loraMerge(engine.zeros([3, 5]), A, B, 1, { fanInFanOut: true })).toThrow(ShapeError);
      expect(() => loraMerge(engine.zeros([3, 5]), A, B, 1, { fanInFanOut: true })).toThrow('must be [5, 3], got [3, 5]');
      expect(() => loraMerge(engine.zeros([5, 3]), A, B, 1)).toThrow(ShapeError);
      expect(() => loraUnmerge(engine.zeros([3, 5]), A, engine.zeros([3, 5]), 1)).toThrow(ShapeError);
      expect(() => loraMerge(engine.zeros([3, 5]), A, B, Infinity)).toThrow(RangeError);
    });
  });
});

describe('loraMerge / loraUnmerge', () => {
  it.each([
    { O: 5, I: 5, R: 1, fanInFanOut: false },
    { O: 96, I: 130, R: 8, fanInFanOut: false },
    { O: 130, I: 64, R: 64, fanInFanOut: false },
    { O: 96, I: 130, R: 8, fanInFanOut: true },
    { O: 7, I: 64, R: 16, fanInFanOut: true },
  ])('W ± s·B·A matches the dense reference and unmerge restores W: %o', async ({ O, I, R, fanInFanOut }) => {
    const random = rng(O * 7 + I + R);
    const [W, A, B] = [O * I, R * I, O * R].map((n) => randomArray(n, random));
    const scale = 2 / Math.sqrt(R);
    const d = { inFeatures: I, outFeatures: O, rank: R };
    await engine.scope(async () => {
      const w = engine.tensor(toF32(W), fanInFanOut ? [I, O] : [O, I]);
      const [a, b] = [engine.tensor(toF32(A), [R, I]), engine.tensor(toF32(B), [O, R])];
      loraMerge(w, a, b, scale, { fanInFanOut });
      expectClose(await w.read(), loraMergeReference(W, A, B, scale, d, fanInFanOut), 1e-5, 'merged');
      loraUnmerge(w, a, b, scale, { fanInFanOut });
      expectClose(await w.read(), W, 1e-6, 'unmerged');
    });
  });
});
