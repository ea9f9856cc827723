import { describe, expect, it } from 'vitest';
import { downloadQuantState, quantizeOnGpu, uploadQuantState } from '../../src/quant/gpuQuantize.ts';
import { quantize4bit } from '../../src/quant/quantize.ts';
import { BlockSizeError, QuantDTypeError, QuantStateFormatError, UnknownQuantTypeError } from '../../src/quant/quantState.ts';
import { testEngine } from '../helpers/gpu.ts';
import { rng } from '../helpers/numeric.ts';
import { BNB_CASES, bitsOf, differingBytes } from '../fixtures/quant/bnbFixtures.ts';

const engine = await testEngine();

/** f32 values with every exponent, sign and zero, to exercise the kernel's integer arithmetic. */
function wildValues(n: number, seed: number): Float32Array {
  const random = rng(seed);
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const exponent = Math.floor(random() * 255); // finite only
    const fraction = Math.floor(random() * 0x800000);
    bits[i] = ((random() < 0.5 ? 1 : 0) << 31) | (exponent << 23) | fraction;
    if (random() < 0.03) bits[i] = random() < 0.5 ? 0 : 0x80000000;
  }
  return new Float32Array(bits.buffer);
}

describe('GPU 4-bit quantization', () => {
  it.each(BNB_CASES.map((c) => [c.name, c] as const))('%s: bytes identical to the fixture', async (_, c) => {
    await engine.scope(async () => {
      const weight = engine.tensor(c.input, c.input.length === c.shape[0] * c.shape[1] ? c.shape : [1, c.input.length], { name: 'w' });
      const quantized = await quantizeOnGpu(engine, weight, { quantType: c.quantType, blocksize: c.blocksize, doubleQuant: c.doubleQuant });
      const state = await downloadQuantState(quantized);
      quantized.dispose();
      expect(differingBytes(state.packed, c.packed)).toBe('');
      expect(Buffer.from(state.packed).equals(Buffer.from(c.packed))).toBe(true);
      if (c.nested) {
        expect(Array.from(state.nested!.codes)).toEqual(Array.from(c.nested.codes));
        expect(bitsOf(state.nested!.absmax2)).toEqual(bitsOf(c.nested.absmax2));
        expect(Object.is(state.nested!.offset, c.nested.offset)).toBe(true);
      } else {
        expect(bitsOf(state.absmax!)).toEqual(bitsOf(c.absmax));
      }
    });
  });

  it('matches the CPU reference on values of every magnitude, block by block', async () => {
    for (const [quantType, blocksize, rows, cols, seed] of [
      ['nf4', 32, 37, 29, 1],
      ['fp4', 32, 37, 29, 2],
      ['nf4', 128, 5, 77, 3],
      ['fp4', 64, 3, 41, 4],
    ] as const) {
      const values = wildValues(rows * cols, seed);
      // Some blocks with one huge value among ordinary ones, and some all-subnormal blocks.
      for (let i = 0; i < values.length; i += 97) values[i] = i % 2 ? 3e38 : -1e-41;
      const expected = quantize4bit('w', values, [rows, cols], { quantType, blocksize });
      await engine.scope(async () => {
        const quantized = await quantizeOnGpu(engine, engine.tensor(values, [rows, cols]), { quantType, blocksize, name: 'wild' });
        const state = await downloadQuantState(quantized);
        quantized.dispose();
        expect(differingBytes(state.packed, expected.packed)).toBe('');
        expect(bitsOf(state.absmax!)).toEqual(bitsOf(expected.absmax!));
      });
    }
  });

  it('uploads a QuantState and reads it back unchanged', async () => {
    const c = BNB_CASES.find((x) => x.name.startsWith('nf4 bs32 double quant, special'))!;
    const state = quantize4bit('w', c.input, c.shape, { quantType: 'nf4', blocksize: 32, doubleQuant: true });
    await engine.scope(async () => {
      const quantized = uploadQuantState(engine, 'model.layers.0.q_proj.weight', state);
      expect(quantized.bytes.packed).toBe(Math.ceil(state.packed.length / 4) * 4);
      const back = await downloadQuantState(quantized);
      quantized.dispose();
      expect(Buffer.from(back.packed).equals(Buffer.from(state.packed))).toBe(true);
      expect(Array.from(back.nested!.codes)).toEqual(Array.from(state.nested!.codes));
      expect(bitsOf(back.nested!.map)).toEqual(bitsOf(state.nested!.map));
    });
  });

  it('rejects bad arguments with typed errors naming the tensor', async () => {
    await engine.scope(async () => {
      const weight = engine.zeros([4, 64], { name: 'layers.5.o_proj.weight' });
      await expect(quantizeOnGpu(engine, weight, { blocksize: 96 })).rejects.toThrow(BlockSizeError);
      await expect(quantizeOnGpu(engine, weight, { blocksize: 96 })).rejects.toThrow('layers.5.o_proj.weight');
      await expect(quantizeOnGpu(engine, weight, { quantType: 'nf3' as never })).rejects.toThrow(UnknownQuantTypeError);
      await expect(quantizeOnGpu(engine, engine.zeros([256], { name: 'v' }))).rejects.toThrow(QuantStateFormatError);
      await expect(quantizeOnGpu(engine, engine.zeros([4, 64], { dtype: 'i32', name: 'ids' }))).rejects.toThrow(QuantDTypeError);
    });
  });
});
