import { describe, expect, it } from 'vitest';
import { EngineError, ShapeError } from '../../src/engine/errors.ts';
import { matmul } from '../../src/engine/ops/matmul.ts';
import { testEngine } from '../helpers/gpu.ts';

const engine = await testEngine();
const gpu = engine.gpu;

describe('tape and backward', () => {
  it('accumulates gradients of leaves across backward calls until they are cleared', async () => {
    const w = engine.tensor([1, 2, 3, 4], [2, 2], { requiresGrad: true });
    for (let i = 0; i < 2; i++) {
      engine.scope(() => {
        const x = engine.tensor([1, 1], [1, 2]);
        engine.backward(matmul(matmul(x, w), engine.tensor([1, 1], [2, 1])));
      });
    }
    // d(Σ x·W)/dW = xᵀ·1 = ones; twice.
    expect(Array.from(await w.grad!.read())).toEqual([2, 2, 2, 2]);
    w.dispose();
  });

  it('records no backward work for inputs that need no gradient (frozen weights)', () => {
    engine.scope(() => {
      const frozen = engine.tensor(new Float32Array(16).fill(1), [4, 4]);
      const x = engine.tensor(new Float32Array(8).fill(1), [2, 4], { requiresGrad: true });
      const y = matmul(x, frozen);
      const dY = engine.full([2, 4], 1);
      const before = gpu.counters.dispatches;
      engine.backward(y, dY);
      // dX is one matmul; no dW is computed.
      expect(gpu.counters.dispatches - before).toBe(1);
      expect(frozen.grad).toBeNull();
      expect(x.grad).not.toBeNull();
    });
  });

  it('does not record anything when no input requires a gradient, or under noGrad', () => {
    engine.scope(() => {
      const a = engine.zeros([2, 2]);
      const w = engine.zeros([2, 2], { requiresGrad: true });
      expect(matmul(a, a).requiresGrad).toBe(false);
      expect(engine.noGrad(() => matmul(a, w)).requiresGrad).toBe(false);
      expect(matmul(a, w).requiresGrad).toBe(true);
      engine.clearTape();
    });
  });

  it('sums the gradient when one tensor feeds two inputs', async () => {
    await engine.scope(async () => {
      const x = engine.tensor([1, 2, 3, 4], [2, 2], { requiresGrad: true });
      engine.backward(matmul(x, x), engine.full([2, 2], 1));
      // d(Σ X·X)/dX = 1·Xᵀ + Xᵀ·1 = [[3, 7], [3, 7]] + [[4, 4], [6, 6]]
      expect(Array.from(await x.grad!.read())).toEqual([7, 11, 9, 13]);
    });
  });

  it('releases saved activations as soon as backward has used them', () => {
    engine.scope(() => {
      const w = engine.tensor(new Float32Array(64).fill(0.5), [8, 8], { requiresGrad: true });
      const h1 = matmul(engine.full([4, 8], 1), w);
      const h2 = matmul(h1, w);
      const loss = matmul(matmul(engine.full([1, 4], 1), h2), engine.full([8, 1], 1));
      expect(h1.isDestroyed).toBe(false);
      engine.backward(loss);
      expect(h1.isDestroyed).toBe(true); // saved for h2's backward, freed once it ran
      expect(h2.isDestroyed).toBe(true);
      expect(w.isDestroyed).toBe(false);
      expect(loss.isDestroyed).toBe(false);
    });
  });

  it('keep() lets an activation outlive backward and its scope', async () => {
    const kept = engine.scope(() => {
      const w = engine.tensor([2], [1, 1], { requiresGrad: true });
      const h = engine.keep(matmul(engine.full([1, 1], 3), w));
      engine.backward(matmul(h, w));
      return h;
    });
    expect(Array.from(await kept.read())).toEqual([6]);
    kept.dispose();
    expect(kept.isDestroyed).toBe(true);
  });

  it('refuses backward from a non-scalar without a gradient, or from a constant', () => {
    engine.scope(() => {
      const w = engine.zeros([2, 2], { requiresGrad: true });
      expect(() => engine.backward(matmul(w, w))).toThrow(ShapeError);
      expect(() => engine.backward(engine.zeros([1]))).toThrow(EngineError);
      engine.clearTape();
    });
  });
});

describe('scopes', () => {
  it('releases temporaries and keeps what the scope returns', () => {
    const inUse = gpu.pool.stats().bytesInUse;
    const [result, temporary] = engine.scope(() => {
      const t = engine.zeros([1000]);
      return [engine.zeros([10]), { t }] as const;
    });
    expect(result.isDestroyed).toBe(false);
    expect(temporary.t.isDestroyed).toBe(false); // returned inside an object literal: also kept
    result.dispose();
    temporary.t.dispose();
    expect(gpu.pool.stats().bytesInUse).toBe(inUse);

    const inner = engine.scope(() => engine.scope(() => engine.zeros([4])));
    expect(inner.isDestroyed).toBe(false);
    inner.dispose();
    let leaked: ReturnType<typeof engine.zeros> | undefined;
    engine.scope(() => {
      leaked = engine.zeros([4]);
    });
    expect(leaked!.isDestroyed).toBe(true);
  });
});

describe('memory accounting', () => {
  it('reports live bytes per category: weights, gradients, optimizer state, activations', async () => {
    const { AdamW } = await import('../../src/train/adamw.ts');
    const start = engine.memory();
    const frozen = engine.zeros([8, 4], { category: 'frozenWeights' });
    const adapter = engine.zeros([4, 2], { category: 'adapters', requiresGrad: true });
    const optimizer = new AdamW([adapter]);
    let duringStep = engine.memory();
    engine.scope(() => {
      const h = matmul(engine.full([3, 8], 1), frozen); // [3, 4]: activation
      engine.backward(matmul(matmul(engine.full([1, 3], 1), h), adapter), engine.full([1, 2], 1));
      duringStep = engine.memory();
    });
    const after = engine.memory();
    expect(after.frozenWeights - start.frozenWeights).toBe(8 * 4 * 4);
    expect(after.adapters - start.adapters).toBe(4 * 2 * 4);
    expect(after.optimizerState - start.optimizerState).toBe(2 * 4 * 2 * 4);
    expect(after.gradients - start.gradients).toBe(4 * 2 * 4); // adapter.grad survives the scope
    expect(duringStep.activations).toBeGreaterThan(after.activations);
    expect(after.total).toBe(Object.entries(after).filter(([k]) => k !== 'total').reduce((sum, [, v]) => sum + v, 0));
    optimizer.dispose();
    adapter.dispose();
    frozen.dispose();
    expect(engine.memory()).toEqual(start);
  });
});
