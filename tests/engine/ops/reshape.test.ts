import { describe, expect, it } from 'vitest';
import { DestroyedTensorError, ShapeError } from '../../../src/engine/errors.ts';
import { matmul } from '../../../src/engine/ops/matmul.ts';
import { reshape } from '../../../src/engine/ops/reshape.ts';
import { testEngine } from '../../helpers/gpu.ts';

const engine = await testEngine();

describe('reshape', () => {
  it('views the same buffer under a new shape, inferring -1', async () => {
    await engine.scope(async () => {
      const x = engine.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const y = reshape(x, [3, -1]);
      expect(y.shape).toEqual([3, 2]);
      expect(y.buffer).toBe(x.buffer);
      expect(Array.from(await y.read())).toEqual([1, 2, 3, 4, 5, 6]);
    });
  });

  it('passes gradients back in the original shape', async () => {
    await engine.scope(async () => {
      const x = engine.tensor([1, 2, 3, 4, 5, 6], [2, 3], { requiresGrad: true });
      const flat = reshape(x, [1, 6]);
      const loss = matmul(flat, engine.tensor([1, 2, 3, 4, 5, 6], [6, 1]));
      engine.backward(loss);
      expect(x.grad!.shape).toEqual([2, 3]);
      expect(Array.from(await x.grad!.read())).toEqual([1, 2, 3, 4, 5, 6]);
    });
  });

  it('keeps the base buffer alive while a view lives, and frees it after both are gone', () => {
    const inUse = engine.gpu.pool.stats().bytesInUse;
    const x = engine.zeros([4, 4]);
    const view = reshape(x, [16]);
    x.dispose();
    expect(view.isDestroyed).toBe(false);
    expect(engine.gpu.pool.stats().bytesInUse).toBeGreaterThan(inUse);
    view.dispose();
    expect(engine.gpu.pool.stats().bytesInUse).toBe(inUse);
    expect(() => reshape(view, [16])).toThrow(DestroyedTensorError);
  });

  it('refuses shapes with another element count', () => {
    engine.scope(() => {
      const x = engine.zeros([2, 3]);
      expect(() => reshape(x, [4, 2])).toThrow(ShapeError);
      expect(() => reshape(x, [-1, -1])).toThrow(ShapeError);
      expect(() => reshape(x, [4, -1])).toThrow('cannot view [2, 3] (6 elements) as [4, -1]');
    });
  });
});
