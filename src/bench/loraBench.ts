// LoRA forward + backward at SmolLM-135M-like shapes (512 tokens, in = out = 576, ranks 8, 16, 64):
// the six low-rank products as ops/lora.ts runs them (shape-fitted tiles, K split over the tokens
// for the weight gradients; the two wide, short-K expansions on the big-tile GEMM) against all six
// run by the big-tile matmul kernel with the same alpha and beta; then the public ops end to end
// (loraAddInto and its backward through the engine).

import type { Engine } from '../engine/engine.ts';
import { loraAddInto, loraProduct, loraProductPlan, type LoraProductShape } from '../engine/ops/lora.ts';
import { matmulInto } from '../engine/ops/matmul.ts';
import type { Tensor } from '../engine/tensor.ts';
import { medianMsPerCall } from './timing.ts';

export interface LoraProductResult {
  name: string;
  M: number;
  N: number;
  K: number;
  /** The lora kernel's tile and K split for this product. */
  plan: string;
  loraMs: number;
  matmulMs: number;
  /** matmulMs / loraMs: above 1 when the lora kernels are faster. */
  speedup: number;
}

export interface LoraBenchResult {
  tokens: number;
  inFeatures: number;
  outFeatures: number;
  rank: number;
  /** The six products of one forward and backward pass, recorded together. */
  loraMs: number;
  matmulMs: number;
  loraGflops: number;
  matmulGflops: number;
  speedup: number;
  /** loraAddInto + engine.backward (x, A and B all needing gradients), the same FLOPs. */
  opMs: number;
  opGflops: number;
  products: LoraProductResult[];
}

const TOKENS = 512;
const FEATURES = 576;

interface Product {
  name: string;
  c: Tensor;
  l: Tensor;
  q: Tensor;
  shape: LoraProductShape;
  alpha: number;
  beta: number;
}

export async function runLoraBenchmarks(
  engine: Engine,
  options: { quick: boolean; log: (line: string) => void },
): Promise<LoraBenchResult[]> {
  const results: LoraBenchResult[] = [];
  const samples = options.quick ? 3 : 7;
  const [T, I, O] = [TOKENS, FEATURES, FEATURES];
  for (const R of options.quick ? [8] : [8, 16, 64]) {
    const s = 16 / R;
    const result = await engine.scope(async () => {
      const x = engine.full([T, I], 0.01, { requiresGrad: true });
      const A = engine.full([R, I], 0.02, { requiresGrad: true });
      const B = engine.full([O, R], 0.03, { requiresGrad: true });
      const dY = engine.full([T, O], 0.01);
      const h = engine.zeros([T, R]);
      const y = engine.zeros([T, O]);
      const g = engine.zeros([T, R]);
      const dx = engine.zeros([T, I]);
      const dA = engine.zeros([R, I]);
      const dB = engine.zeros([O, R]);
      // C = alpha · op(L) · op(Q) + beta · C, as in ops/lora.ts's backward.
      const products: Product[] = [
        { name: 'h = x·Aᵀ', c: h, l: x, q: A, shape: { M: T, N: R, K: I, transposeQ: true }, alpha: 1, beta: 0 },
        { name: 'y += s·h·Bᵀ', c: y, l: h, q: B, shape: { M: T, N: O, K: R, transposeQ: true }, alpha: s, beta: 1 },
        { name: 'g = s·dY·B', c: g, l: dY, q: B, shape: { M: T, N: R, K: O }, alpha: s, beta: 0 },
        { name: 'dx = g·A', c: dx, l: g, q: A, shape: { M: T, N: I, K: R }, alpha: 1, beta: 0 },
        { name: 'dA = gᵀ·x', c: dA, l: g, q: x, shape: { M: R, N: I, K: T, transposeL: true }, alpha: 1, beta: 0 },
        { name: 'dB = s·dYᵀ·h', c: dB, l: dY, q: h, shape: { M: O, N: R, K: T, transposeL: true }, alpha: s, beta: 0 },
      ];
      const viaLora = (p: Product) => loraProduct(p.c, p.l, p.q, p.shape, p.alpha, p.beta);
      const viaMatmul = (p: Product) =>
        matmulInto(p.c, p.l, p.q, { batch: 1, M: p.shape.M, N: p.shape.N, K: p.shape.K, aBatched: false, bBatched: false }, p.shape.transposeL ?? false, p.shape.transposeQ ?? false, p.alpha, p.beta);

      // Bring the GPU's clocks up before the first timing (on an H200 the first product measured
      // otherwise reads several times slower).
      if (results.length === 0) await medianMsPerCall(engine.gpu, () => products.forEach(viaLora), { samples: 1, sampleMs: 200 });

      const perProduct: LoraProductResult[] = [];
      for (const p of products) {
        const loraMs = await medianMsPerCall(engine.gpu, () => viaLora(p), { samples });
        const matmulMs = await medianMsPerCall(engine.gpu, () => viaMatmul(p), { samples });
        const plan = loraProductPlan(p.shape.M, p.shape.N, p.shape.K);
        perProduct.push({
          name: p.name,
          M: p.shape.M,
          N: p.shape.N,
          K: p.shape.K,
          plan: plan.gemm ? 'matmul GEMM 64x64' : `${plan.tileM}x${plan.tileN}x${plan.tileK}${plan.chunks > 1 ? `, ${plan.chunks} chunks` : ''}`,
          loraMs,
          matmulMs,
          speedup: matmulMs / loraMs,
        });
      }
      const loraMs = await medianMsPerCall(engine.gpu, () => products.forEach(viaLora), { samples });
      const matmulMs = await medianMsPerCall(engine.gpu, () => products.forEach(viaMatmul), { samples });

      const base = engine.zeros([T, O]);
      const opMs = await medianMsPerCall(
        engine.gpu,
        () =>
          engine.scope(() => {
            engine.backward(loraAddInto(base, x, A, B, s), dY);
            for (const tensor of [x, A, B]) {
              tensor.grad?.release();
              tensor.grad = null;
            }
          }),
        { samples },
      );
      const flops = products.reduce((sum, p) => sum + 2 * p.shape.M * p.shape.N * p.shape.K, 0);
      const gflops = (ms: number) => flops / (ms * 1e6);
      return {
        tokens: T,
        inFeatures: I,
        outFeatures: O,
        rank: R,
        loraMs,
        matmulMs,
        loraGflops: gflops(loraMs),
        matmulGflops: gflops(matmulMs),
        speedup: matmulMs / loraMs,
        opMs,
        opGflops: gflops(opMs),
        products: perProduct,
      };
    });
    results.push(result);
    options.log(
      `lora r=${R} forward+backward: ${result.loraMs.toFixed(3)} ms (${result.loraGflops.toFixed(2)} GFLOP/s), ` +
        `matmul kernel ${result.matmulMs.toFixed(3)} ms (${result.matmulGflops.toFixed(2)} GFLOP/s), ×${result.speedup.toFixed(2)}; ` +
        `ops end to end ${result.opMs.toFixed(3)} ms`,
    );
  }
  return results;
}
