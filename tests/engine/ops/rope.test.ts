import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { rope, ropeInverseFrequencies, type RopeLayout } from '../../../src/engine/ops/rope.ts';
import { ropeBackwardReference, ropeReference, type RopeReferenceDims } from '../../../src/engine/reference/rope.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

interface Case {
  shape: number[]; // x: [B, T, H, D] or [B, T, H·D]
  headDim: number;
  rotaryDim?: number;
  layout: RopeLayout;
  /** A number: positions offset + t; 'tokens': an i32 tensor [T]; 'batch': an i32 tensor [B, T]. */
  positions: number | 'tokens' | 'batch';
  /** Largest position drawn for tensor positions. */
  maxPosition?: number;
  theta?: number;
  /** Random f32 frequencies in (0, 1] passed as invFreq (scaled variants such as llama3). */
  customFrequencies?: boolean;
}

// All cases are held to 1e-5 relative error against float64 cos/sin of the exact angle p · f,
// including positions up to 2²⁴ − 1: the kernel reduces p · f exactly (see shaders/rope.wgsl).
// A plain f32 product p · f would already be off by up to 2⁻²⁴ · p · f radians, 2.4e-4 at p = 4096.
const cases: Case[] = [
  { shape: [1, 1, 1, 2], headDim: 2, layout: 'half', positions: 0 },
  { shape: [2, 5, 3, 8], headDim: 8, layout: 'half', positions: 0 },
  { shape: [2, 3, 2, 6], headDim: 6, layout: 'interleaved', positions: 7 },
  { shape: [1, 3, 2, 10], headDim: 10, rotaryDim: 4, layout: 'half', positions: 2 },
  { shape: [2, 2, 3, 10], headDim: 10, rotaryDim: 6, layout: 'interleaved', positions: 'tokens', maxPosition: 50 },
  { shape: [2, 4, 24], headDim: 8, layout: 'half', positions: 3, theta: 500000 },
  { shape: [3, 4, 2, 16], headDim: 16, layout: 'half', positions: 'batch', maxPosition: 4096, customFrequencies: true },
  { shape: [1, 3, 2, 32], headDim: 32, layout: 'half', positions: 4093 },
  { shape: [1, 2, 1, 64], headDim: 64, layout: 'interleaved', positions: 131070 },
  { shape: [2, 6, 1, 12], headDim: 12, layout: 'half', positions: 'batch', maxPosition: 2 ** 24 - 1 },
  { shape: [1, 4, 1, 8], headDim: 8, layout: 'interleaved', positions: 2 ** 24 - 4, customFrequencies: true },
];

function positionsFor(c: Case, random: () => number): { perToken: number[]; data: Int32Array | null; shape: number[] } {
  const [batch, tokens] = c.shape;
  if (typeof c.positions === 'number') {
    const perToken = Array.from({ length: batch * tokens }, (_, i) => (c.positions as number) + (i % tokens));
    return { perToken, data: null, shape: [] };
  }
  const count = c.positions === 'batch' ? batch * tokens : tokens;
  const data = Int32Array.from({ length: count }, () => Math.floor(random() * (c.maxPosition! + 1)));
  const perToken = Array.from({ length: batch * tokens }, (_, i) => data[c.positions === 'batch' ? i : i % tokens]);
  return { perToken, data, shape: c.positions === 'batch' ? [batch, tokens] : [tokens] };
}

describe('rope', () => {
  it.each(cases)('GPU forward and backward match the float64 reference: %o', async (c) => {
    const random = rng(c.shape.reduce((p, x) => p * x, 1) + c.headDim);
    const rotaryDim = c.rotaryDim ?? c.headDim;
    const dims: RopeReferenceDims = {
      batch: c.shape[0],
      tokens: c.shape[1],
      heads: c.shape.length === 4 ? c.shape[2] : c.shape[2] / c.headDim,
      headDim: c.headDim,
      rotaryDim,
      layout: c.layout,
    };
    const size = c.shape.reduce((p, x) => p * x, 1);
    const xData = randomArray(size, random);
    const dOutData = randomArray(size, random);
    const frequencies = c.customFrequencies
      ? Float32Array.from({ length: rotaryDim / 2 }, () => Math.fround(1 - random()))
      : ropeInverseFrequencies(rotaryDim, c.theta ?? 10000);
    const { perToken, data, shape } = positionsFor(c, random);

    await engine.scope(async () => {
      const x = engine.tensor(toF32(xData), c.shape, { requiresGrad: true });
      const positions = data ? engine.tensor(data, shape) : (c.positions as number);
      const invFreq = c.customFrequencies ? engine.tensor(frequencies, [rotaryDim / 2], { requiresGrad: true }) : undefined;
      const out = rope(x, positions, { headDim: c.headDim, rotaryDim: c.rotaryDim, theta: c.theta, layout: c.layout, invFreq });
      expect(out.shape).toEqual(c.shape);
      const expected = ropeReference(xData, perToken, frequencies, dims);
      const actual = await out.read();
      expectClose(actual, expected, 1e-5, 'out');

      engine.backward(out, engine.tensor(toF32(dOutData), c.shape));
      const expectedDx = ropeBackwardReference(dOutData, perToken, frequencies, dims);
      const dx = await x.grad!.read();
      expectClose(dx, expectedDx, 1e-5, 'dx');
      if (invFreq) expect(invFreq.grad).toBeNull(); // frequencies get no gradient
    });
  });

  it('keeps the rotation angle accurate to ~1e-6 rad at every position below 2^24', async () => {
    // x = (1, 0) rotated by angle a gives (cos a, sin a): the output error is the angle error.
    // Frequencies 1 and 0.5 are the worst case for the angle's size; the others are arbitrary f32.
    const random = rng(41);
    const frequencies = Float32Array.from([1, 0.5, ...Array.from({ length: 30 }, () => Math.fround(random()))]);
    const positions = Int32Array.from([0, 1, 2, 3, 4095, 4096, 4097, 65535, 131071, 1000003, 2 ** 23 + 1, 2 ** 24 - 1, -5, -4097, -(2 ** 24 - 1)]);
    const tokens = positions.length;
    const pairs = frequencies.length;
    const xData = new Float64Array(tokens * 2 * pairs);
    for (let t = 0; t < tokens; t++) for (let i = 0; i < pairs; i++) xData[t * 2 * pairs + i] = 1; // 'half': first of each pair is 1
    await engine.scope(async () => {
      const out = rope(engine.tensor(toF32(xData), [1, tokens, 1, 2 * pairs]), engine.tensor(positions, [tokens]), {
        headDim: 2 * pairs,
        layout: 'half',
        invFreq: engine.tensor(frequencies, [pairs]),
      });
      const actual = await out.read();
      let worstAngle = 0;
      for (let t = 0; t < tokens; t++) {
        for (let i = 0; i < pairs; i++) {
          const angle = positions[t] * frequencies[i];
          const cos = actual[t * 2 * pairs + i];
          const sin = actual[t * 2 * pairs + pairs + i];
          worstAngle = Math.max(worstAngle, Math.abs(cos - Math.cos(angle)), Math.abs(sin - Math.sin(angle)));
        }
      }
      expect(worstAngle).toBeLessThan(2e-6);
    });
  });

  it('default frequencies are theta^(−2i/R) in f32', () => {
    const frequencies = ropeInverseFrequencies(8, 10000);
    expect(frequencies.length).toBe(4);
    expectClose(frequencies, [1, 0.1, 0.01, 0.001], 1e-7, 'invFreq');
  });

  it('rotates a token generated at a KV-cache offset as the same token inside a full sequence', async () => {
    const random = rng(42);
    const [tokens, heads, headDim] = [6, 2, 8];
    const xData = toF32(randomArray(tokens * heads * headDim, random));
    await engine.scope(async () => {
      const full = await rope(engine.tensor(xData, [1, tokens, heads, headDim]), 0, { headDim, layout: 'half' }).read();
      const last = xData.subarray((tokens - 1) * heads * headDim);
      const single = await rope(engine.tensor(last, [1, 1, heads, headDim]), tokens - 1, { headDim, layout: 'half' }).read();
      expect(Array.from(single)).toEqual(Array.from(full.subarray((tokens - 1) * heads * headDim)));
    });
  });

  it('reference backward agrees with central finite differences', () => {
    const random = rng(43);
    for (const layout of ['half', 'interleaved'] as const) {
      const dims: RopeReferenceDims = { batch: 2, tokens: 3, heads: 2, headDim: 6, rotaryDim: 4, layout };
      const size = 2 * 3 * 2 * 6;
      const x = randomArray(size, random);
      const weights = randomArray(size, random);
      const positions = [0, 5, 17, 3, 1000, 2];
      const frequencies = ropeInverseFrequencies(4, 10000);
      expectClose(
        numericGradient((v) => dot(ropeReference(v, positions, frequencies, dims), weights), x),
        ropeBackwardReference(weights, positions, frequencies, dims),
        1e-6,
        `dx (${layout})`,
      );
    }
  });

  it('rejects odd head sizes, mismatched shapes and wrong dtypes with typed errors', () => {
    engine.scope(() => {
      const x = engine.zeros([2, 3, 4, 8]);
      expect(() => rope(engine.zeros([1, 2, 1, 7]), 0, { headDim: 7, layout: 'half' })).toThrow(ShapeError);
      expect(() => rope(engine.zeros([1, 2, 1, 7]), 0, { headDim: 7, layout: 'half' })).toThrow('headDim is odd');
      expect(() => rope(x, 0, { headDim: 8, rotaryDim: 5, layout: 'half' })).toThrow(ShapeError);
      expect(() => rope(x, 0, { headDim: 8, rotaryDim: 10, layout: 'half' })).toThrow(ShapeError);
      expect(() => rope(x, 0, { headDim: 6, layout: 'half' })).toThrow('x must be [B, T, H, 6] or [B, T, H·6], got [2, 3, 4, 8]');
      expect(() => rope(engine.zeros([2, 3, 20]), 0, { headDim: 8, layout: 'half' })).toThrow(ShapeError);
      expect(() => rope(engine.zeros([6, 8]), 0, { headDim: 8, layout: 'half' })).toThrow(ShapeError);
      expect(() => rope(engine.zeros([2, 3, 4, 8], { dtype: 'i32' }), 0, { headDim: 8, layout: 'half' })).toThrow(DTypeError);
      expect(() => rope(x, engine.zeros([3]), { headDim: 8, layout: 'half' })).toThrow(DTypeError);
      expect(() => rope(x, engine.tensor(Int32Array.from([0, 1]), [2]), { headDim: 8, layout: 'half' })).toThrow(ShapeError);
      expect(() => rope(x, engine.zeros([3, 3], { dtype: 'i32' }), { headDim: 8, layout: 'half' })).toThrow('positions for x [2, 3, 4, 8] must be [2, 3]');
      expect(() => rope(x, 0, { headDim: 8, layout: 'half', invFreq: engine.zeros([8]) })).toThrow('invFreq for rotaryDim 8 must be [4], got [8]');
      expect(() => rope(x, 0, { headDim: 8, layout: 'half', invFreq: engine.zeros([4], { dtype: 'i32' }) })).toThrow(DTypeError);
      expect(() => rope(x, 0.5, { headDim: 8, layout: 'half' })).toThrow(RangeError);
      expect(() => rope(x, 2 ** 24, { headDim: 8, layout: 'half' })).toThrow(RangeError);
      expect(() => rope(x, 0, { headDim: 8, layout: 'half', theta: 0 })).toThrow(RangeError);
      expect(() => rope(x, 0, { headDim: 8, layout: 'rotate' as RopeLayout })).toThrow(RangeError);
    });
  });
});
