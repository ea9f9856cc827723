import { describe, expect, it, vi } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { attention, chooseAttentionKernel, type AttentionKernel, type AttentionOptions } from '../../../src/engine/ops/attention.ts';
import {
  attentionBackwardReference,
  attentionReference,
  attentionReferenceDims,
  type AttentionReferenceDims,
} from '../../../src/engine/reference/attention.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, relativeError, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

interface Case {
  B: number;
  T: number;
  S: number;
  H: number;
  KVH: number;
  D: number;
  options?: AttentionOptions;
}

const dimsOf = (c: Case) => attentionReferenceDims(c.B, c.T, c.S, c.H, c.KVH, c.D, c.options);
const qSize = (d: AttentionReferenceDims) => d.B * d.T * d.H * d.D;
const kvSize = (d: AttentionReferenceDims) => d.B * d.S * d.KVH * d.D;

/** Seeded inputs; `scoreScale` multiplies q and k, so scores grow by its square. */
function inputs(d: AttentionReferenceDims, seed: number, scoreScale = 1) {
  const random = rng(seed);
  return {
    q: randomArray(qSize(d), random, scoreScale),
    k: randomArray(kvSize(d), random, scoreScale),
    v: randomArray(kvSize(d), random),
    dOut: randomArray(qSize(d), random),
  };
}

const errors: Record<string, number> = {};
function note(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number) {
  errors[what] = Math.max(errors[what] ?? 0, relativeError(actual, expected));
  expectClose(actual, expected, tolerance, what);
}

/**
 * GPU forward and all three gradients against the float64 reference. dQ and dK are gradients with
 * respect to the scores, so their error follows the absolute rounding error of f32 scores, hence a
 * separate tolerance for tests with large scores.
 */
async function checkAgainstReference(c: Case, seed: number, scoreScale = 1, tag = '', scoreGradTolerance = 1e-4) {
  const d = dimsOf(c);
  const data = inputs(d, seed, scoreScale);
  const results = await runOnGpu(c, data);
  const expected = attentionReference(data.q, data.k, data.v, d);
  note(`${tag}out`, results.out, expected.out, 1e-4);
  const grads = attentionBackwardReference(data.q, data.k, data.v, data.dOut, d);
  note(`${tag}dQ`, results.dQ, grads.dQ, scoreGradTolerance);
  note(`${tag}dK`, results.dK, grads.dK, scoreGradTolerance);
  note(`${tag}dV`, results.dV, grads.dV, 1e-4);
  return results;
}

/** Forward and all three gradients on the GPU, with the kernel set c.options picks. */
async function runOnGpu(c: Case, data: ReturnType<typeof inputs>) {
  const d = dimsOf(c);
  return engine.scope(async () => {
    const q = engine.tensor(toF32(data.q), [d.B, d.T, d.H, d.D], { requiresGrad: true });
    const k = engine.tensor(toF32(data.k), [d.B, d.S, d.KVH, d.D], { requiresGrad: true });
    const v = engine.tensor(toF32(data.v), [d.B, d.S, d.KVH, d.D], { requiresGrad: true });
    const out = attention(q, k, v, c.options);
    expect(out.shape).toEqual([d.B, d.T, d.H, d.D]);
    engine.backward(out, engine.tensor(toF32(data.dOut), out.shape));
    return { out: await out.read(), dQ: await q.grad!.read(), dK: await k.grad!.read(), dV: await v.grad!.read() };
  });
}

const cases: Case[] = [
  { B: 1, T: 1, S: 1, H: 4, KVH: 4, D: 1 },
  { B: 1, T: 3, S: 3, H: 4, KVH: 2, D: 8 },
  { B: 2, T: 17, S: 17, H: 4, KVH: 1, D: 16 },
  { B: 1, T: 33, S: 33, H: 4, KVH: 4, D: 7 },
  { B: 2, T: 33, S: 33, H: 4, KVH: 2, D: 5 },
  { B: 1, T: 40, S: 40, H: 4, KVH: 4, D: 64 }, // two key tiles of 32 rows
  { B: 1, T: 20, S: 20, H: 2, KVH: 1, D: 128 }, // two key tiles of 16 rows
  { B: 1, T: 70, S: 70, H: 2, KVH: 1, D: 8 }, // 140 query rows and 70 key rows: several workgroups each
  { B: 1, T: 1, S: 20, H: 4, KVH: 2, D: 16 }, // generation with a KV cache
  { B: 2, T: 3, S: 40, H: 4, KVH: 1, D: 8 },
  { B: 1, T: 17, S: 33, H: 4, KVH: 4, D: 16 },
  { B: 2, T: 5, S: 7, H: 4, KVH: 2, D: 8, options: { causal: false } },
  { B: 1, T: 6, S: 11, H: 4, KVH: 2, D: 5, options: { kvOffset: 2, scale: 0.7 } }, // cache rows 8..10 unused
];

/**
 * Shapes for the tiled kernels (query rows × keys per tile: forward 16 × 32, dQ 8 × 16, dK/dV 16 × 8
 * up to D = 64, half each above): flattened query rows T·G and keys S off the tile sizes, one row,
 * KV-cache offsets, G = 1 and G > 1, D from 1 to 128 across the D = 64 switch. Tiny: each barrier is
 * slow on SwiftShader.
 */
const tiledCases: Case[] = [
  { B: 1, T: 1, S: 1, H: 1, KVH: 1, D: 1 },
  { B: 2, T: 7, S: 7, H: 3, KVH: 1, D: 8 }, // 21 rows per kv head: two forward blocks, three dQ blocks
  { B: 1, T: 19, S: 19, H: 2, KVH: 2, D: 24 }, // G = 1, S off every tile size
  { B: 1, T: 1, S: 21, H: 4, KVH: 2, D: 64 }, // generation with a KV cache
  { B: 1, T: 5, S: 37, H: 2, KVH: 1, D: 64, options: { kvOffset: 20, scale: 0.4 } }, // cache rows 25..36 unused
  { B: 1, T: 18, S: 18, H: 2, KVH: 1, D: 65 }, // the wide tiles at their smallest D
  { B: 2, T: 6, S: 11, H: 4, KVH: 2, D: 128, options: { causal: false } },
  { B: 1, T: 9, S: 9, H: 2, KVH: 1, D: 128 },
  { B: 1, T: 4, S: 35, H: 3, KVH: 3, D: 7, options: { causal: false } },
];

const withKernel = (c: Case, kernel: AttentionKernel): Case => ({ ...c, options: { ...c.options, kernel } });

describe('attention', () => {
  it.each(cases)('GPU forward and backward match the float64 reference: %o', async (c) => {
    await checkAgainstReference(c, c.B * 10007 + c.T * 101 + c.S * 13 + c.KVH * 3 + c.D);
  });

  it('stays finite and accurate for large scores (q, k ×30): the online softmax subtracts the max', async () => {
    // Scores reach ~1100 here: exp() of them overflows f32 (above 88) unless the max is subtracted.
    // An f32 score that size is only known to ~6e-5 (half an ulp), and dQ and dK are first-order
    // in that absolute error (measured up to 2.2e-4 on SwiftShader and on an H200), so they get
    // 1e-3. out and dV keep 1e-4 (measured ≤ 1.4e-6 on SwiftShader, ≤ 4e-5 with NVIDIA's exp).
    for (const c of [
      { B: 1, T: 17, S: 17, H: 4, KVH: 2, D: 16 },
      { B: 1, T: 9, S: 70, H: 2, KVH: 1, D: 64 },
    ]) {
      await checkAgainstReference(c, 99 + c.S, 30, `large scores D=${c.D} `, 1e-3);
    }
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(5);
    const small: Case[] = [
      { B: 2, T: 3, S: 3, H: 4, KVH: 2, D: 3 },
      { B: 1, T: 2, S: 5, H: 2, KVH: 1, D: 4 },
      { B: 1, T: 3, S: 4, H: 2, KVH: 2, D: 2, options: { causal: false, scale: 1.3 } },
      { B: 1, T: 2, S: 6, H: 3, KVH: 3, D: 2, options: { kvOffset: 1 } },
    ];
    for (const c of small) {
      const d = dimsOf(c);
      const { q, k, v } = inputs(d, random() * 1e9, 1);
      const weights = randomArray(qSize(d), random);
      const { dQ, dK, dV } = attentionBackwardReference(q, k, v, weights, d);
      const loss = (q2: Float64Array, k2: Float64Array, v2: Float64Array) => dot(attentionReference(q2, k2, v2, d).out, weights);
      expectClose(numericGradient((x) => loss(x, k, v), q), dQ, 1e-6, 'dQ');
      expectClose(numericGradient((x) => loss(q, x, v), k), dK, 1e-6, 'dK');
      expectClose(numericGradient((x) => loss(q, k, x), v), dV, 1e-6, 'dV');
    }
  });

  it('reference log-sum-exp is the log of the softmax normaliser', () => {
    const d = dimsOf({ B: 1, T: 2, S: 3, H: 1, KVH: 1, D: 2 });
    const q = Float64Array.from([1, 0, 0, 2]);
    const k = Float64Array.from([1, 1, 0, 1, 3, 0]);
    const { logSumExp } = attentionReference(q, k, k, d);
    const s = d.scale;
    // Query 0 sits at key position 1 (kvOffset = S − T = 1): it sees keys 0 and 1.
    expect(logSumExp[0]).toBeCloseTo(Math.log(Math.exp(s) + Math.exp(0)), 12);
    expect(logSumExp[1]).toBeCloseTo(Math.log(Math.exp(2 * s) + Math.exp(2 * s) + Math.exp(0)), 12);
  });

  it('never reads KV cache rows after the last query position (kvOffset)', async () => {
    const d = dimsOf({ B: 1, T: 4, S: 9, H: 2, KVH: 1, D: 8, options: { kvOffset: 2 } });
    const data = inputs(d, 17);
    const valid = (2 + 4) * d.KVH * d.D;
    const poisoned = (values: Float64Array) => toF32(values.map((x, i) => (i < valid ? x : Number.NaN)));
    await engine.scope(async () => {
      const q = engine.tensor(toF32(data.q), [1, 4, 2, 8]);
      const k = engine.tensor(poisoned(data.k), [1, 9, 1, 8]);
      const v = engine.tensor(poisoned(data.v), [1, 9, 1, 8]);
      const out = attention(q, k, v, { kvOffset: 2 });
      note('cache out', await out.read(), attentionReference(data.q, data.k, data.v, d).out, 1e-4);
    });
  });

  it('gives gradients only to inputs that need them, deterministically', async () => {
    const c: Case = { B: 1, T: 9, S: 9, H: 4, KVH: 2, D: 8 };
    const d = dimsOf(c);
    const data = inputs(d, 23);
    const grads = attentionBackwardReference(data.q, data.k, data.v, data.dOut, d);
    const runs: Float32Array[] = [];
    for (let run = 0; run < 2; run++) {
      await engine.scope(async () => {
        const q = engine.tensor(toF32(data.q), [1, 9, 4, 8]);
        const k = engine.tensor(toF32(data.k), [1, 9, 2, 8]);
        const v = engine.tensor(toF32(data.v), [1, 9, 2, 8], { requiresGrad: true });
        const out = attention(q, k, v);
        engine.backward(out, engine.tensor(toF32(data.dOut), out.shape));
        expect(q.grad).toBeNull();
        expect(k.grad).toBeNull();
        const dV = (await v.grad!.read()) as Float32Array;
        note('dV only', dV, grads.dV, 1e-4);
        runs.push(dV);
      });
    }
    expect(Array.from(runs[1])).toEqual(Array.from(runs[0]));

    await engine.scope(async () => {
      const q = engine.tensor(toF32(data.q), [1, 9, 4, 8], { requiresGrad: true });
      const k = engine.tensor(toF32(data.k), [1, 9, 2, 8]);
      const v = engine.tensor(toF32(data.v), [1, 9, 2, 8]);
      const out = attention(q, k, v);
      engine.backward(out, engine.tensor(toF32(data.dOut), out.shape));
      expect(k.grad).toBeNull();
      note('dQ only', await q.grad!.read(), grads.dQ, 1e-4);
    });
  });

  it('allocates nothing the size of a [T, S] score matrix, forward or backward', async () => {
    const [B, T, H, D] = [1, 256, 2, 2];
    const allocate = vi.spyOn(engine.gpu, 'allocate');
    try {
      await engine.scope(async () => {
        const random = rng(3);
        const q = engine.tensor(toF32(randomArray(B * T * H * D, random)), [B, T, H, D], { requiresGrad: true });
        const k = engine.tensor(toF32(randomArray(B * T * H * D, random)), [B, T, H, D], { requiresGrad: true });
        const v = engine.tensor(toF32(randomArray(B * T * H * D, random)), [B, T, H, D], { requiresGrad: true });
        allocate.mockClear();
        const out = attention(q, k, v);
        engine.backward(out, engine.full(out.shape, 1));
        await engine.gpu.sync();
      });
      const largest = Math.max(...allocate.mock.calls.map(([bytes]) => bytes));
      expect(allocate.mock.calls.length).toBeGreaterThan(0);
      expect(largest).toBe(B * T * H * D * 4); // q-sized tensors; one head's scores would be T·T·4 = 262144 bytes
    } finally {
      allocate.mockRestore();
    }
  });

  it('picks the tiled kernels for real GPUs and the direct ones for software adapters', () => {
    expect(chooseAttentionKernel(false)).toBe('tiled');
    expect(chooseAttentionKernel(true)).toBe('direct');
  });

  it.each(tiledCases)('tiled kernels: forward and backward match the float64 reference, and the direct kernels: %o', async (c) => {
    const seed = c.B * 7919 + c.T * 97 + c.S * 11 + c.KVH * 5 + c.D;
    const kernels: Record<AttentionKernel, Awaited<ReturnType<typeof runOnGpu>>> = {
      tiled: await checkAgainstReference(withKernel(c, 'tiled'), seed, 1, 'tiled '),
      direct: await runOnGpu(withKernel(c, 'direct'), inputs(dimsOf(c), seed)),
    };
    for (const what of ['out', 'dQ', 'dK', 'dV'] as const) {
      note(`tiled vs direct ${what}`, kernels.tiled[what], kernels.direct[what], 1e-5);
    }
  });

  it('tiled kernels stay accurate for large scores (q, k ×30), never read unused cache rows, and are deterministic', async () => {
    // The direct kernels' large-score cases and budgets (test above), over several key tiles here.
    for (const c of [
      { B: 1, T: 17, S: 17, H: 4, KVH: 2, D: 16 },
      { B: 1, T: 9, S: 70, H: 2, KVH: 1, D: 64 },
    ]) {
      await checkAgainstReference(withKernel(c, 'tiled'), 99 + c.S, 30, `tiled large scores D=${c.D} `, 1e-3);
    }

    const c = withKernel({ B: 1, T: 4, S: 37, H: 3, KVH: 1, D: 8, options: { kvOffset: 2 } }, 'tiled');
    const d = dimsOf(c);
    const data = inputs(d, 31);
    const valid = (2 + 4) * d.KVH * d.D;
    const poisoned = (values: Float64Array) => toF32(values.map((x, i) => (i < valid ? x : Number.NaN)));
    const runs: Float32Array[] = [];
    for (let run = 0; run < 2; run++) {
      await engine.scope(async () => {
        const q = engine.tensor(toF32(data.q), [1, 4, 3, 8], { requiresGrad: true });
        const k = engine.tensor(poisoned(data.k), [1, 37, 1, 8], { requiresGrad: true });
        const v = engine.tensor(poisoned(data.v), [1, 37, 1, 8], { requiresGrad: true });
        const out = attention(q, k, v, c.options);
        note('tiled cache out', await out.read(), attentionReference(data.q, data.k, data.v, d).out, 1e-4);
        engine.backward(out, engine.tensor(toF32(data.dOut), out.shape));
        const grads = attentionBackwardReference(data.q, data.k, data.v, data.dOut, d);
        note('tiled cache dQ', await q.grad!.read(), grads.dQ, 1e-4);
        // Cache rows past the last query's position get no gradient; the poisoned rows stay out of the valid ones.
        const dK = (await k.grad!.read()) as Float32Array;
        note('tiled cache dK', dK.slice(0, valid), grads.dK.slice(0, valid), 1e-4);
        expect(Array.from(dK.slice(valid)).every((x) => x === 0)).toBe(true);
        note('tiled cache dV', ((await v.grad!.read()) as Float32Array).slice(0, valid), grads.dV.slice(0, valid), 1e-4);
        runs.push(dK);
      });
    }
    expect(Array.from(runs[1])).toEqual(Array.from(runs[0]));
  });

  it('rejects mismatched shapes with a ShapeError naming the shapes', () => {
    engine.scope(() => {
      const z = (...shape: number[]) => engine.zeros(shape);
      const q = z(1, 3, 4, 8);
      const kv = z(1, 3, 2, 8);
      expect(() => attention(q, z(1, 3, 3, 8), z(1, 3, 3, 8))).toThrow(ShapeError); // 4 heads over 3 kv heads
      expect(() => attention(q, z(1, 3, 3, 8), z(1, 3, 3, 8))).toThrow('[1, 3, 4, 8]');
      expect(() => attention(q, z(1, 3, 2, 7), z(1, 3, 2, 7))).toThrow('head dims differ');
      expect(() => attention(q, z(2, 3, 2, 8), z(2, 3, 2, 8))).toThrow('batch sizes differ');
      expect(() => attention(q, kv, z(1, 4, 2, 8))).toThrow('same shape');
      expect(() => attention(z(3, 4, 8), kv, kv)).toThrow(ShapeError);
      expect(() => attention(q, z(1, 2, 2, 8), z(1, 2, 2, 8))).toThrow('at least as many keys as queries');
      expect(() => attention(q, kv, kv, { kvOffset: 1 })).toThrow('kvOffset 1');
      expect(() => attention(q, kv, kv, { kvOffset: -1 })).toThrow(ShapeError);
      expect(() => attention(z(1, 3, 4, 0), z(1, 3, 2, 0), z(1, 3, 2, 0))).toThrow('head dim 0');
      expect(() => attention(z(1, 1, 1, 129), z(1, 1, 1, 129), z(1, 1, 1, 129))).toThrow('head dim 129');
      expect(() => attention(q, z(1, 3, 0, 8), z(1, 3, 0, 8))).toThrow(ShapeError);
      expect(() => attention(q, engine.zeros([1, 3, 2, 8], { dtype: 'i32' }), kv)).toThrow(DTypeError);
    });
  });

  it('reports the worst relative errors seen', () => {
    console.log('attention max relative errors:', Object.entries(errors).map(([k, e]) => `${k} ${e.toExponential(2)}`).join(', '));
    expect(Object.keys(errors).length).toBeGreaterThan(0);
  });
});
