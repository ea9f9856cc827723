// Per-kernel profiles (Gpu.profileKernels, for the benchmarks): every dispatch of the profiled work is timed by GPU
// timestamps and counted under its kernel, results are unchanged, dispatches past the capacity run untimed.

import { describe, expect, it } from 'vitest';
import { add } from '../../src/engine/ops/arithmetic.ts';
import { matmul } from '../../src/engine/ops/matmul.ts';
import { matmulReference } from '../../src/engine/reference/matmul.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, randomArray, rng, toF32 } from '../helpers/numeric.ts';

const engine = await testEngine();
const random = rng(5);

describe('kernel profiles', () => {
  it('times each dispatch under its kernel, and the work computes what it computes unprofiled', async () => {
    // This adapter has timestamp-query (SwiftShader and real GPUs do); without it there is nothing to test.
    expect(engine.gpu.info.features.timestampQuery).toBe(true);
    const [M, K, N] = [33, 40, 17];
    const a = randomArray(M * K, random);
    const b = randomArray(K * N, random);
    let product: Float32Array | null = null;
    const before = engine.gpu.counters.dispatches;
    const profile = await engine.gpu.profileKernels(() =>
      engine.scope(async () => {
        const A = engine.tensor(toF32(a), [M, K]);
        const B = engine.tensor(toF32(b), [K, N]);
        const C = matmul(A, B);
        const D = add(add(C, C), matmul(A, B));
        product = (await D.read()) as Float32Array;
      }),
    );
    const dispatched = engine.gpu.counters.dispatches - before;
    expect(profile).not.toBeNull();
    const { kernels, untimed } = profile!;
    expect(untimed).toBe(0);
    expect(kernels.reduce((sum, k) => sum + k.dispatches, 0)).toBe(dispatched);
    const matmuls = kernels.filter((k) => k.kernel.startsWith('matmul:'));
    const adds = kernels.filter((k) => k.kernel.startsWith('broadcast:'));
    expect(matmuls.reduce((sum, k) => sum + k.dispatches, 0)).toBe(2);
    expect(adds.reduce((sum, k) => sum + k.dispatches, 0)).toBe(2);
    for (const kernel of kernels) expect(kernel.ms, kernel.kernel).toBeGreaterThan(0);
    expect(kernels.map((k) => k.ms)).toEqual([...kernels.map((k) => k.ms)].sort((x, y) => y - x));
    // 3 · A·B, in float64.
    const dims = { batch: 1, M, N, K, transposeA: false, transposeB: false, aShared: false, bShared: false };
    const reference = matmulReference(a, b, dims).map((v) => 3 * v);
    expectClose(product!, reference, 1e-5, 'profiled work');
    console.info(`profile: ${kernels.map((k) => `${k.kernel} ×${k.dispatches} ${k.ms.toFixed(3)} ms`).join(', ')}`);
  });

  it('runs dispatches past the capacity untimed, and refuses a capacity out of range', async () => {
    const profile = await engine.gpu.profileKernels(
      () =>
        engine.scope(async () => {
          let x = engine.tensor(toF32(randomArray(100, random)), [100]);
          for (let i = 0; i < 5; i++) x = add(x, x);
          await x.read();
        }),
      2,
    );
    expect(profile!.kernels.reduce((sum, k) => sum + k.dispatches, 0)).toBe(2);
    expect(profile!.untimed).toBe(3);
    await expect(engine.gpu.profileKernels(async () => {}, 0)).rejects.toThrow(RangeError);
    await expect(engine.gpu.profileKernels(async () => {}, 4097)).rejects.toThrow(RangeError);
  });
});
