// Attention forward and forward+backward at SmolLM2-135M's shape (9 query heads over 3 kv heads,
// head dim 64, causal, one sequence of `tokens`), for both kernel sets: 'tiled' (the real-GPU
// default) and 'direct' (one thread per row, the software-adapter default).
// FLOPs count the algorithm's products over the visible (query, key) pairs only: 2 forward
// (Q·Kᵀ, P·V) and 5 backward (dP = dO·Vᵀ, dV, dQ, dK, and recomputing S once), 2 FLOPs per
// multiply-add; the kernels recompute S once more and dP twice, which is not counted.

import type { Engine } from '../engine/engine.ts';
import { attention, chooseAttentionKernel, type AttentionKernel } from '../engine/ops/attention.ts';
import { medianMsPerCall } from './timing.ts';

export interface AttentionBenchResult {
  kernel: AttentionKernel;
  /** Whether the engine picks this kernel set on this device. */
  chosen: boolean;
  B: number;
  T: number;
  S: number;
  H: number;
  KVH: number;
  D: number;
  forwardMs: number;
  forwardGflops: number;
  /** attention() then engine.backward() with q, k and v all needing gradients. */
  trainMs: number;
  trainGflops: number;
}

const SHAPE = { B: 1, H: 9, KVH: 3, D: 64 };

export async function runAttentionBenchmarks(
  engine: Engine,
  options: { quick: boolean; tokens: number; log: (line: string) => void },
): Promise<AttentionBenchResult[]> {
  const { B, H, KVH, D } = SHAPE;
  const T = options.tokens;
  const S = T;
  const pairs = (B * T * (T + 1)) / 2; // causal, no cache
  const gflops = (products: number, ms: number) => (products * 2 * pairs * H * D) / (ms * 1e6);
  const samples = options.quick ? 3 : 7;
  const results: AttentionBenchResult[] = [];
  for (const kernel of ['tiled', 'direct'] as AttentionKernel[]) {
    const result = await engine.scope(async () => {
      const q = engine.full([B, T, H, D], 0.01, { requiresGrad: true });
      const k = engine.full([B, S, KVH, D], 0.02, { requiresGrad: true });
      const v = engine.full([B, S, KVH, D], 0.03, { requiresGrad: true });
      const dOut = engine.full([B, T, H, D], 1);
      const forwardMs = await medianMsPerCall(
        engine.gpu,
        () => engine.noGrad(() => engine.scope(() => void attention(q, k, v, { kernel }))),
        { samples },
      );
      const trainMs = await medianMsPerCall(
        engine.gpu,
        () =>
          engine.scope(() => {
            engine.backward(attention(q, k, v, { kernel }), dOut);
            for (const tensor of [q, k, v]) {
              tensor.grad?.release();
              tensor.grad = null;
            }
          }),
        { samples },
      );
      return {
        kernel,
        chosen: kernel === chooseAttentionKernel(engine.gpu.info.software),
        B,
        T,
        S,
        H,
        KVH,
        D,
        forwardMs,
        forwardGflops: gflops(2, forwardMs),
        trainMs,
        trainGflops: gflops(7, trainMs),
      };
    });
    results.push(result);
    options.log(
      `attention ${kernel}${result.chosen ? ' (chosen)' : ''} ${B}×${T}, ${H}/${KVH} heads, D ${D}: forward ${result.forwardMs.toFixed(3)} ms ` +
        `(${result.forwardGflops.toFixed(2)} GFLOP/s), forward+backward ${result.trainMs.toFixed(3)} ms (${result.trainGflops.toFixed(2)} GFLOP/s)`,
    );
  }
  return results;
}
