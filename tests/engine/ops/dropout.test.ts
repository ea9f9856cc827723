import { describe, expect, it } from 'vitest';
import { DTypeError } from '../../../src/engine/errors.ts';
import { dropout } from '../../../src/engine/ops/dropout.ts';
import {
  dropoutBackwardReference,
  dropoutMaskReference,
  dropoutReference,
  philox4x32,
} from '../../../src/engine/reference/dropout.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

/** The GPU's keep mask for n elements: dropout of a tensor of ones, compared with 0. */
async function gpuMask(n: number, p: number, seed: number, offset: number): Promise<Uint8Array> {
  return engine.scope(async () => {
    const y = await dropout(engine.full([n], 1), p, seed, offset).read();
    return Uint8Array.from(y, (value) => (value !== 0 ? 1 : 0));
  });
}

function countDifferences(a: Uint8Array, b: Uint8Array): number {
  let differences = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differences++;
  return differences;
}

describe('dropout', () => {
  it('Philox-4x32-10 reproduces the Random123 known-answer vectors', () => {
    const hex = (words: Uint32Array) => Array.from(words, (w) => w.toString(16).padStart(8, '0')).join(' ');
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    const ones = 0xffffffff;
    expect(hex(philox4x32([ones, ones, ones, ones], [ones, ones]))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe(
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    );
  });

  it.each([
    { n: 1, p: 0.5, seed: 1, offset: 0 },
    { n: 1000, p: 0.1, seed: 42, offset: 7 },
    { n: 4099, p: 0.9, seed: 2 ** 40 + 3, offset: 2 ** 32 - 1000 }, // counter carries into the high word
    { n: 777, p: 0.3, seed: 0, offset: 2 ** 52 },
  ])('GPU forward and backward match the reference mask bit for bit: %o', async ({ n, p, seed, offset }) => {
    const random = rng(n + seed);
    const x = randomArray(n, random, 2);
    const dOut = randomArray(n, random);
    await engine.scope(async () => {
      const xt = engine.tensor(toF32(x), [n], { requiresGrad: true });
      const y = dropout(xt, p, seed, offset);
      const values = await y.read();
      const mask = dropoutMaskReference(n, p, seed, offset);
      // x is never exactly 0 here, so a zero output means a dropped element.
      expect(Array.from(values, (v) => (v !== 0 ? 1 : 0))).toEqual(Array.from(mask));
      expectClose(values, dropoutReference(x, p, seed, offset), 1e-6, 'y');
      engine.backward(y, engine.tensor(toF32(dOut), [n]));
      expectClose(await xt.grad!.read(), dropoutBackwardReference(dOut, p, seed, offset), 1e-6, 'dx');
    });
  });

  it('the same seed and offset repeat the mask; another seed or offset changes it', async () => {
    const n = 4096;
    const base = await gpuMask(n, 0.5, 123, 0);
    expect(countDifferences(base, await gpuMask(n, 0.5, 123, 0))).toBe(0);
    // Independent masks differ in about half the positions (σ = 32 here).
    for (const other of [await gpuMask(n, 0.5, 124, 0), await gpuMask(n, 0.5, 123, n)]) {
      expect(Math.abs(countDifferences(base, other) - n / 2)).toBeLessThan(6 * 32);
    }
    // Counters are absolute: a call at offset k sees the mask of elements k.. of a call at offset 0.
    const shifted = await gpuMask(n - 100, 0.5, 123, 100);
    expect(countDifferences(shifted, base.subarray(100))).toBe(0);
  });

  it.each([0.1, 0.5, 0.95])('keeps a fraction 1 − p of 100k elements (p = %f)', async (p) => {
    const n = 100_000;
    const mask = await gpuMask(n, p, 99, 0);
    const kept = mask.reduce((sum, bit) => sum + bit, 0) / n;
    const sigma = Math.sqrt((p * (1 - p)) / n);
    expect(Math.abs(kept - (1 - p))).toBeLessThan(5 * sigma);
    // Neighbouring elements are independent: P(both kept) ≈ (1 − p)².
    let pairs = 0;
    for (let i = 1; i < n; i++) pairs += mask[i] & mask[i - 1];
    const pairSigma = Math.sqrt(((1 - p) ** 2 * (1 - (1 - p) ** 2)) / n);
    expect(Math.abs(pairs / (n - 1) - (1 - p) ** 2)).toBeLessThan(6 * pairSigma);
  });

  it('p = 0 is the identity and dispatches nothing', () => {
    engine.scope(() => {
      const x = engine.zeros([5], { requiresGrad: true });
      const dispatches = engine.gpu.counters.dispatches;
      expect(dropout(x, 0, 1, 0)).toBe(x);
      expect(engine.gpu.counters.dispatches).toBe(dispatches);
    });
  });

  it('reference gradient agrees with central finite differences', () => {
    const random = rng(5);
    const x = randomArray(50, random);
    const weights = randomArray(50, random);
    const analytic = dropoutBackwardReference(weights, 0.4, 8, 3);
    expectClose(numericGradient((v) => dot(dropoutReference(v, 0.4, 8, 3), weights), x), analytic, 1e-6, 'dx');
  });

  it('rejects bad p, seed, offset and dtype', () => {
    engine.scope(() => {
      const x = engine.zeros([4]);
      for (const p of [-0.1, 1, 1.5, NaN]) expect(() => dropout(x, p, 0, 0)).toThrow(RangeError);
      expect(() => dropout(x, 0.5, -1, 0)).toThrow(RangeError);
      expect(() => dropout(x, 0.5, 1.5, 0)).toThrow(RangeError);
      expect(() => dropout(x, 0.5, 0, 2 ** 53)).toThrow(RangeError);
      expect(() => dropout(engine.zeros([4], { dtype: 'i32' }), 0.5, 0, 0)).toThrow(DTypeError);
    });
  });
});
