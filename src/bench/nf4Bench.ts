// NF4 against f32 at the same shapes: the fused dequant-matmul (linear4bit) against matmul with the
// f32 weight, for a training batch (GEMM, many rows) and for decoding (GEMV, one row), with and
// without double quantization. In training NF4 buys memory, not speed: a ratio near 1 is the goal.

import type { Engine } from '../engine/engine.ts';
import { linear4bit } from '../engine/ops/linear4bit.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { quantizeOnGpu } from '../quant/gpuQuantize.ts';
import { medianMsPerCall } from './timing.ts';

export interface Nf4Result {
  name: string;
  rows: number;
  outFeatures: number;
  inFeatures: number;
  doubleQuant: boolean;
  f32Ms: number;
  nf4Ms: number;
  f32Gflops: number;
  nf4Gflops: number;
  /** Weight bytes streamed per second by the NF4 kernel (packed codes + absmax), for GEMV. */
  nf4WeightGBps: number;
  /** nf4Ms / f32Ms: below 1 means NF4 is faster. */
  timeRatio: number;
}

export async function runNf4Benchmarks(
  engine: Engine,
  options: { quick: boolean; tokens: number; log: (line: string) => void },
): Promise<Nf4Result[]> {
  const shapes = options.quick
    ? [{ name: 'MLP up 1536×576', outFeatures: 1536, inFeatures: 576 }]
    : [
        { name: 'MLP up 1536×576', outFeatures: 1536, inFeatures: 576 },
        { name: 'Llama-1B MLP up 8192×2048', outFeatures: 8192, inFeatures: 2048 },
      ];
  const results: Nf4Result[] = [];
  for (const shape of shapes) {
    for (const rows of [options.tokens, 1]) {
      for (const doubleQuant of [false, true]) {
        const result = await engine.scope(async () => {
          const { outFeatures, inFeatures } = shape;
          const weight = engine.full([outFeatures, inFeatures], 0.02);
          const quantized = await quantizeOnGpu(engine, weight, { doubleQuant, name: shape.name });
          const x = engine.full([rows, inFeatures], 0.5);
          const f32Ms = await medianMsPerCall(engine.gpu, () => matmul(x, weight, { transposeB: true }).dispose());
          const nf4Ms = await medianMsPerCall(engine.gpu, () => linear4bit(x, quantized).dispose());
          const { packed, state } = quantized.bytes;
          quantized.dispose();
          const flop = 2 * rows * outFeatures * inFeatures;
          return {
            name: shape.name,
            rows,
            outFeatures,
            inFeatures,
            doubleQuant,
            f32Ms,
            nf4Ms,
            f32Gflops: flop / (f32Ms * 1e6),
            nf4Gflops: flop / (nf4Ms * 1e6),
            nf4WeightGBps: (packed + state) / (nf4Ms * 1e6),
            timeRatio: nf4Ms / f32Ms,
          };
        });
        results.push(result);
        options.log(
          `nf4 ${result.name} rows=${rows}${doubleQuant ? ' double-quant' : ''}: f32 ${result.f32Gflops.toFixed(2)} GFLOP/s, nf4 ${result.nf4Gflops.toFixed(2)} GFLOP/s (time ×${result.timeRatio.toFixed(2)})`,
        );
      }
    }
  }
  return results;
}
