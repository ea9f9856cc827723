// What QLoRA saves: a 4-bit base holds about an eighth of the f32 bytes, plus a small quantization state.

import { expect, it } from 'vitest';
import { quantizeOnGpu, TABLE_LENGTH } from '../../src/quant/gpuQuantize.ts';
import { testEngine } from '../helpers/gpu.ts';
import { randomArray, rng } from '../helpers/numeric.ts';

it('memory accounting shows the 4-bit weight and its quantization state apart', async () => {
  const engine = await testEngine();
  const [out, inp] = [128, 256];
  const weight = engine.tensor(Float32Array.from(randomArray(out * inp, rng(3))), [out, inp], { category: 'frozenWeights' });
  const f32Bytes = engine.memory().frozenWeights;
  expect(f32Bytes).toBe(out * inp * 4);

  for (const doubleQuant of [false, true]) {
    const before = engine.memory();
    const quantized = await quantizeOnGpu(engine, weight, { doubleQuant });
    const after = engine.memory();
    const packed = after.frozenWeights - before.frozenWeights;
    const state = after.quantState - before.quantState;
    expect(packed).toBe((out * inp) / 2);
    expect(state).toBeGreaterThan(0);
    // absmax: one f32 per block of 64 (0.5 bit/weight), or with double quantization one byte per
    // block plus an f32 per 256 blocks; both plus the code tables (16 + 256 f32).
    const blocks = (out * inp) / 64;
    const tables = TABLE_LENGTH * 4;
    expect(state).toBe(doubleQuant ? blocks + Math.ceil(blocks / 256) * 4 + tables : blocks * 4 + tables);
    expect(f32Bytes / (packed + state)).toBeGreaterThan(6.5);
    quantized.dispose();
    expect(engine.memory()).toEqual(before);
  }
  weight.dispose();
});
