// matmul GFLOP/s at training shapes: the forward projections, their weight gradients, and LoRA's skinny products.

import type { Engine } from '../engine/engine.ts';
import { chooseMatmulKernel, matmul, type MatmulKernel } from '../engine/ops/matmul.ts';
import { medianMsPerCall } from './timing.ts';

export interface MatmulResult {
  name: string;
  M: number;
  N: number;
  K: number;
  transposeA: boolean;
  transposeB: boolean;
  /** Which kernel the engine chose for this shape on this device. */
  kernel: MatmulKernel;
  ms: number;
  gflops: number;
}

interface Shape {
  name: string;
  M: number;
  N: number;
  K: number;
  transposeA?: boolean;
  transposeB?: boolean;
}

/** Training shapes for a batch of `tokens` rows; the square ones measure the device's ceiling. */
const shapesFor = (tokens: number): Shape[] => [
  { name: 'x·Wᵀ attention projection', M: tokens, N: 576, K: 576, transposeB: true },
  { name: 'x·Wᵀ MLP up', M: tokens, N: 1536, K: 576, transposeB: true },
  { name: 'dYᵀ·x weight gradient', M: 1536, N: 576, K: tokens, transposeA: true },
  { name: 'x·Aᵀ LoRA down (r=8)', M: tokens, N: 8, K: 576, transposeB: true },
  { name: 'square 1024', M: 1024, N: 1024, K: 1024 },
  { name: 'square 2048', M: 2048, N: 2048, K: 2048 },
];

export async function runMatmulBenchmarks(
  engine: Engine,
  options: { quick: boolean; tokens: number; log: (line: string) => void },
): Promise<MatmulResult[]> {
  const results: MatmulResult[] = [];
  // --quick (and software adapters, where 2048³ alone takes minutes) stop at the training shapes.
  const all = shapesFor(options.tokens);
  const shapes = options.quick ? all.slice(0, 4) : all;
  for (const shape of shapes) {
    const transposeA = shape.transposeA ?? false;
    const transposeB = shape.transposeB ?? false;
    const ms = await engine.scope(async () => {
      const a = engine.full(transposeA ? [shape.K, shape.M] : [shape.M, shape.K], 0.01);
      const b = engine.full(transposeB ? [shape.N, shape.K] : [shape.K, shape.N], 0.01);
      return medianMsPerCall(engine.gpu, () => matmul(a, b, { transposeA, transposeB }).dispose(), {
        samples: options.quick ? 3 : 7,
      });
    });
    const gflops = (2 * shape.M * shape.N * shape.K) / (ms * 1e6);
    const kernel = chooseMatmulKernel(engine.gpu.info.software);
    results.push({ name: shape.name, M: shape.M, N: shape.N, K: shape.K, transposeA, transposeB, kernel, ms, gflops });
    options.log(`matmul ${shape.name}: ${gflops.toFixed(2)} GFLOP/s`);
  }
  return results;
}
