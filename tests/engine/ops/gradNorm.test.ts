import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { clipScale, gradNorm, nonFiniteFlag } from '../../../src/engine/ops/gradNorm.ts';
import { clipScaleReference, gradNormBackwardReference, gradNormReference } from '../../../src/engine/reference/gradNorm.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

describe('gradNorm', () => {
  it.each([[[1]], [[1000]], [[65537]], [[1, 1000, 65537, 4096, 4097, 0, 3]]])(
    'the global L2 norm of tensors of sizes %o matches the float64 reference',
    async (sizes) => {
      const random = rng(sizes.reduce((a, b) => a + b, 0));
      const grads = sizes.map((size) => randomArray(size, random, 3));
      await engine.scope(async () => {
        const norm = gradNorm(grads.map((g) => engine.tensor(toF32(g), [g.length])));
        expect(norm.shape).toEqual([]);
        expectClose(await norm.toArray(), [gradNormReference(grads)], 1e-5, 'norm');
      });
    },
  );

  it('is deterministic: the same gradients give the same bits', async () => {
    const random = rng(17);
    const grads = [randomArray(70_001, random), randomArray(333, random)];
    const run = () =>
      engine.scope(async () => Array.from(await gradNorm(grads.map((g) => engine.tensor(toF32(g), [g.length]))).read()));
    expect(await run()).toEqual(await run());
  });

  it('clipScale is min(1, maxNorm / (norm + 1e-6)) as clip_grad_norm_', async () => {
    await engine.scope(async () => {
      for (const [norm, maxNorm] of [[10, 1], [0.5, 1], [1, 1], [0, 0.3], [Infinity, 1], [3e4, 5]]) {
        const [scale] = await clipScale(engine.tensor([norm], []), maxNorm).toArray();
        expectClose([scale], [clipScaleReference(Math.fround(norm), maxNorm)], 1e-6, `scale for norm ${norm}`);
      }
      const [nanScale] = await clipScale(engine.tensor([NaN], []), 1).toArray();
      expect(Number.isNaN(nanScale)).toBe(true);
    });
  });

  it('flags a NaN or infinite norm, including one that comes from NaN or overflowing gradients', async () => {
    await engine.scope(async () => {
      const flag = async (t: ReturnType<typeof engine.tensor>) => (await nonFiniteFlag(t).toArray())[0];
      expect(await flag(engine.tensor([NaN], []))).toBe(1);
      expect(await flag(engine.tensor([Infinity], [1]))).toBe(1);
      expect(await flag(engine.tensor([-Infinity], []))).toBe(1);
      expect(await flag(engine.tensor([3.4e38], []))).toBe(0);
      expect(await flag(engine.tensor([0], []))).toBe(0);

      const clean = randomArray(5000, rng(1));
      const poisoned = Float32Array.from(clean);
      poisoned[4321] = NaN;
      const huge = Float32Array.from(clean);
      huge[7] = 1e30;
      expect(await flag(gradNorm([engine.tensor(toF32(clean), [5000])]))).toBe(0);
      expect(await flag(gradNorm([engine.tensor(toF32(clean), [5000]), engine.tensor(poisoned, [5000])]))).toBe(1);
      expect(await flag(gradNorm([engine.tensor(huge, [5000])]))).toBe(1);
      expect(nonFiniteFlag(engine.tensor([1], [])).dtype).toBe('u32');
    });
  });

  it('reference gradient of the norm agrees with central finite differences', () => {
    const random = rng(9);
    const a = randomArray(7, random);
    const b = randomArray(4, random);
    const [dA, dB] = gradNormBackwardReference([a, b]);
    expectClose(numericGradient((x) => gradNormReference([x, b]), a), dA, 1e-6, 'dA');
    expectClose(numericGradient((x) => gradNormReference([a, x]), b), dB, 1e-6, 'dB');
  });

  it('rejects bad input with typed errors', () => {
    engine.scope(() => {
      expect(() => gradNorm([])).toThrow(ShapeError);
      expect(() => gradNorm([engine.zeros([3], { dtype: 'i32' })])).toThrow(DTypeError);
      expect(() => clipScale(engine.zeros([2]), 1)).toThrow(ShapeError);
      expect(() => clipScale(engine.zeros([]), 0)).toThrow(RangeError);
      expect(() => nonFiniteFlag(engine.zeros([3]))).toThrow(ShapeError);
    });
  });
});
