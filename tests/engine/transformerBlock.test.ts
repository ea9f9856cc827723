// Composition: a two-layer Llama-style transformer built from the engine's ops trains on the GPU.
// It must learn a deterministic next-token rule, and each steady-state step must record into at most
// two command buffers, read back only the loss, and allocate no new GPU buffers.

import { expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { swiglu } from '../../src/engine/ops/activation.ts';
import { add } from '../../src/engine/ops/arithmetic.ts';
import { attention } from '../../src/engine/ops/attention.ts';
import { crossEntropy } from '../../src/engine/ops/crossEntropy.ts';
import { embedding } from '../../src/engine/ops/embedding.ts';
import { matmul } from '../../src/engine/ops/matmul.ts';
import { reshape } from '../../src/engine/ops/reshape.ts';
import { rmsNorm } from '../../src/engine/ops/rmsnorm.ts';
import { rope } from '../../src/engine/ops/rope.ts';
import type { Tensor } from '../../src/engine/tensor.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { testEngine } from '../helpers/gpu.ts';
import { randomArray, rng } from '../helpers/numeric.ts';

// Dimensions: vocabulary V, width C, heads H (KVH key/value heads) of size D, MLP width F, batch B, tokens T.
const V = 24, C = 32, H = 4, KVH = 2, D = 8, F = 64, B = 2, T = 12, LAYERS = 2;

interface Layer {
  attnNorm: Tensor; wq: Tensor; wk: Tensor; wv: Tensor; wo: Tensor;
  mlpNorm: Tensor; wGate: Tensor; wUp: Tensor; wDown: Tensor;
}

function makeParams(engine: Engine) {
  const random = rng(42);
  const param = (shape: number[], scale: number) =>
    engine.tensor(Float32Array.from(randomArray(shape.reduce((p, x) => p * x, 1), random, scale)), shape, { requiresGrad: true });
  const ones = (n: number) => engine.tensor(new Float32Array(n).fill(1), [n], { requiresGrad: true });
  const layers: Layer[] = Array.from({ length: LAYERS }, () => ({
    attnNorm: ones(C),
    wq: param([H * D, C], 0.3), wk: param([KVH * D, C], 0.3), wv: param([KVH * D, C], 0.3), wo: param([C, H * D], 0.3),
    mlpNorm: ones(C),
    wGate: param([F, C], 0.3), wUp: param([F, C], 0.3), wDown: param([C, F], 0.2),
  }));
  return { embed: param([V, C], 1), finalNorm: ones(C), layers };
}

type Params = ReturnType<typeof makeParams>;

const linear = (x: Tensor, w: Tensor) => matmul(x, w, { transposeB: true });

function forwardLoss(params: Params, ids: Tensor, targets: Tensor): Tensor {
  let x = embedding(ids, params.embed); // [B, T, C]
  for (const layer of params.layers) {
    const h = rmsNorm(x, layer.attnNorm);
    const q = rope(reshape(linear(h, layer.wq), [B, T, H, D]), 0, { headDim: D, layout: 'half' });
    const k = rope(reshape(linear(h, layer.wk), [B, T, KVH, D]), 0, { headDim: D, layout: 'half' });
    const v = reshape(linear(h, layer.wv), [B, T, KVH, D]);
    x = add(x, linear(reshape(attention(q, k, v), [B, T, H * D]), layer.wo));
    const m = rmsNorm(x, layer.mlpNorm);
    x = add(x, linear(swiglu(linear(m, layer.wGate), linear(m, layer.wUp)), layer.wDown));
  }
  const logits = linear(rmsNorm(x, params.finalNorm), params.embed); // tied head: [B, T, V]
  return crossEntropy(reshape(logits, [B * T, V]), targets);
}

it('a two-layer transformer block trains on the GPU: loss falls, steps stay lean', async () => {
  const engine = await testEngine();
  const gpu = engine.gpu;
  const params = makeParams(engine);
  const trainable = [params.embed, params.finalNorm, ...params.layers.flatMap((layer) => Object.values(layer))];
  const optimizer = new AdamW(trainable, { weightDecay: 0, maxGradNorm: 1 });

  // Next token = (5·token + 3) mod V: learnable from the current token alone.
  const sequence = (start: number) => Array.from({ length: T + 1 }, (_, t) => t).reduce<number[]>((s, t) => (t === 0 ? [start] : [...s, (5 * s[t - 1] + 3) % V]), []);
  const batch = (step: number) => {
    const rows = Array.from({ length: B }, (_, b) => sequence((step * B + b) % V));
    return {
      ids: Int32Array.from(rows.flatMap((row) => row.slice(0, T))),
      targets: Int32Array.from(rows.flatMap((row) => row.slice(1))),
    };
  };

  const losses: number[] = [];
  let allocationsAfterWarmup = 0;
  let bindGroupsAfterWarmup = 0;
  for (let step = 0; step < 40; step++) {
    const { ids, targets } = batch(step);
    const before = { ...gpu.counters };
    const loss = await engine.scope(async () => {
      const idsTensor = engine.tensor(ids, [B, T]);
      const targetTensor = engine.tensor(targets, [B * T]);
      const loss = forwardLoss(params, idsTensor, targetTensor);
      engine.backward(loss);
      optimizer.step(2e-2);
      return (await loss.read())[0];
    });
    losses.push(loss);
    if (step === 1) {
      allocationsAfterWarmup = gpu.pool.stats().allocations;
      bindGroupsAfterWarmup = gpu.bindGroups.misses;
    }
    if (step >= 2) {
      // Forward, backward and the optimizer update go into one command buffer (the uploads of ids and
      // targets come first, with nothing pending to flush); the loss is the only readback.
      expect(gpu.counters.submits - before.submits).toBe(1);
      expect(gpu.counters.readbacks - before.readbacks).toBe(1);
      expect(gpu.pool.stats().allocations).toBe(allocationsAfterWarmup);
      expect(gpu.bindGroups.misses).toBe(bindGroupsAfterWarmup); // every bind group comes from the cache
    }
  }
  expect(losses.every(Number.isFinite)).toBe(true);
  expect(losses[0]).toBeGreaterThan(Math.log(V) * 0.7); // starts near chance
  const lastFive = losses.slice(-5).reduce((a, b) => a + b) / 5;
  expect(lastFive).toBeLessThan(losses[0] * 0.3);
  optimizer.dispose();
}, 600_000); // about 30 s on an idle 2-core machine; SwiftShader shares the CPU with everything else
