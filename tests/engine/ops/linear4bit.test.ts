import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { GEMV_MAX_ROWS, linear4bit } from '../../../src/engine/ops/linear4bit.ts';
import { quantizeOnGpu, uploadQuantState } from '../../../src/quant/gpuQuantize.ts';
import type { QuantType } from '../../../src/quant/codebooks.ts';
import { dequantize4bit, quantize4bit } from '../../../src/quant/quantize.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

/** float64 reference of y = x · Wᵀ + b for W [out, in] (the dequantized weight), and its backward. */
function linearReference(x: Float64Array, w: ArrayLike<number>, bias: ArrayLike<number> | null, rows: number, inF: number, outF: number): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let sum = bias ? bias[o] : 0;
      for (let i = 0; i < inF; i++) sum += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = sum;
    }
  }
  return y;
}

function linearBackwardReference(dy: Float64Array, w: ArrayLike<number>, rows: number, inF: number, outF: number) {
  const dx = new Float64Array(rows * inF);
  const db = new Float64Array(outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      const g = dy[r * outF + o];
      db[o] += g;
      for (let i = 0; i < inF; i++) dx[r * inF + i] += g * w[o * inF + i];
    }
  }
  return { dx, db };
}

interface Case {
  outF: number;
  inF: number;
  blocksize: number;
  quantType: QuantType;
  doubleQuant: boolean;
  bias: boolean;
  /** leading shapes of x */
  leads: number[][];
}

// In-features not a multiple of the block size (blocks span rows), odd sizes, rows on both sides of the
// GEMV / GEMM switch and of the 64-row tile, out-features beyond one 64-wide tile.
const cases: Case[] = [
  { outF: 37, inF: 45, blocksize: 32, quantType: 'nf4', doubleQuant: false, bias: true, leads: [[1], [3], [17], [70]] },
  { outF: 70, inF: 33, blocksize: 64, quantType: 'fp4', doubleQuant: true, bias: false, leads: [[1], [GEMV_MAX_ROWS], [GEMV_MAX_ROWS + 1], [2, 32]] },
  { outF: 130, inF: 96, blocksize: 128, quantType: 'nf4', doubleQuant: true, bias: true, leads: [[2], [67]] },
  { outF: 9, inF: 7, blocksize: 32, quantType: 'fp4', doubleQuant: false, bias: true, leads: [[5], [3, 6]] },
];

describe('linear4bit', () => {
  it.each(cases)('fused kernels match CPU dequantize-then-matmul: %o', async (c) => {
    const random = rng(c.outF * 131 + c.inF);
    const wData = toF32(randomArray(c.outF * c.inF, random, 0.2));
    const state = quantize4bit('w', wData, [c.outF, c.inF], { quantType: c.quantType, blocksize: c.blocksize, doubleQuant: c.doubleQuant });
    const w = dequantize4bit(state);
    const biasData = randomArray(c.outF, random);

    const weight = uploadQuantState(engine, `case ${c.outF}x${c.inF}`, state);
    try {
      for (const lead of c.leads) {
        const rows = lead.reduce((p, d) => p * d, 1);
        const xData = randomArray(rows * c.inF, random);
        const dyData = randomArray(rows * c.outF, random);
        await engine.scope(async () => {
          const x = engine.tensor(toF32(xData), [...lead, c.inF], { requiresGrad: true });
          const bias = c.bias ? engine.tensor(toF32(biasData), [c.outF], { requiresGrad: true }) : null;
          const y = linear4bit(x, weight, bias);
          expect(y.shape).toEqual([...lead, c.outF]);
          expectClose(await y.read(), linearReference(xData, w, c.bias ? biasData : null, rows, c.inF, c.outF), 1e-4, `y rows=${rows}`);

          engine.backward(y, engine.tensor(toF32(dyData), y.shape));
          const { dx, db } = linearBackwardReference(dyData, w, rows, c.inF, c.outF);
          expectClose(await x.grad!.read(), dx, 1e-4, `dx rows=${rows}`);
          if (bias) expectClose(await bias.grad!.read(), db, 1e-5, `dbias rows=${rows}`);
        });
      }
    } finally {
      weight.dispose();
    }
  });

  it('works on a weight quantized on the GPU, and records nothing when no input needs a gradient', async () => {
    const random = rng(5);
    const [outF, inF] = [24, 40];
    const wData = toF32(randomArray(outF * inF, random));
    const w = dequantize4bit(quantize4bit('w', wData, [outF, inF], { blocksize: 32, doubleQuant: true }));
    const xData = randomArray(20 * inF, random);
    await engine.scope(async () => {
      const weight = await quantizeOnGpu(engine, engine.tensor(wData, [outF, inF], { name: 'gpu.w' }), { blocksize: 32, doubleQuant: true });
      const x = engine.tensor(toF32(xData), [20, inF]);
      const y = linear4bit(x, weight);
      expect(y.requiresGrad).toBe(false);
      expectClose(await y.read(), linearReference(xData, w, null, 20, inF, outF), 1e-4, 'y');
      weight.dispose();
    });
  });

  it('reference gradients agree with central finite differences', () => {
    const random = rng(11);
    const [rows, inF, outF] = [3, 7, 5];
    const w = randomArray(outF * inF, random);
    const bias = randomArray(outF, random);
    const x = randomArray(rows * inF, random);
    const weights = randomArray(rows * outF, random);
    const { dx, db } = linearBackwardReference(weights, w, rows, inF, outF);
    expectClose(numericGradient((probe) => dot(linearReference(probe, w, bias, rows, inF, outF), weights), x), dx, 1e-6, 'dx');
    expectClose(numericGradient((probe) => dot(linearReference(x, w, probe, rows, inF, outF), weights), bias), db, 1e-6, 'db');
  });

  it('rejects bad input with typed errors', async () => {
    const state = quantize4bit('w', new Float32Array(6 * 40).fill(0.25), [6, 40], { blocksize: 32 });
    await engine.scope(async () => {
      const weight = uploadQuantState(engine, 'layers.9.gate_proj.weight', state);
      expect(() => linear4bit(engine.zeros([2, 41]), weight)).toThrow(ShapeError);
      expect(() => linear4bit(engine.zeros([2, 41]), weight)).toThrow('layers.9.gate_proj.weight');
      expect(() => linear4bit(engine.zeros([2, 40]), weight, engine.zeros([5]))).toThrow(ShapeError);
      expect(() => linear4bit(engine.zeros([2, 40], { dtype: 'i32' }), weight)).toThrow(DTypeError);
      weight.dispose();
      expect(() => linear4bit(engine.zeros([2, 40]), weight)).toThrow('disposed');
    });
  });
});
