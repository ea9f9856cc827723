import { describe, expect, it } from 'vitest';
import { u32 } from '../../src/gpu/runtime.ts';
import { testEngine } from '../helpers/gpu.ts';
import { rng } from '../helpers/numeric.ts';

const engine = await testEngine();

const f32ToBits = (value: number) => new Uint32Array(Float32Array.of(value).buffer)[0];
const bitsToF32 = (bits: number) => new Float32Array(Uint32Array.of(bits).buffer)[0];

/** Run the quantizer's integer reciprocal and product on (x, y) bit pairs. */
async function gpuArithmetic(pairs: Uint32Array): Promise<Uint32Array> {
  return engine.scope(async () => {
    const count = pairs.length / 2;
    const input = engine.tensor(pairs, [pairs.length], { dtype: 'u32' });
    const output = engine.empty([pairs.length], { dtype: 'u32' });
    engine.gpu.dispatch(
      { shader: 'quantize_4bit', entryPoint: 'float_arithmetic_check' },
      { params: [u32(count), u32(0), u32(0), u32(0)], bindings: [input.binding, output.binding], workgroups: [Math.ceil(count / 64)] },
    );
    return (await output.read()) as Uint32Array;
  });
}

describe('the GPU quantizer rounds its reciprocal and product exactly like IEEE f32', () => {
  it('agrees with Math.fround on ties, subnormals, overflow and random operands', async () => {
    const random = rng(99);
    const pairs: number[] = [];
    const randomBits = (allowSign: boolean) => {
      const exponent = Math.floor(random() * 255);
      const fraction = Math.floor(random() * 0x800000);
      return (((allowSign && random() < 0.5 ? 1 : 0) << 31) | (exponent << 23) | fraction) >>> 0;
    };
    for (let i = 0; i < 3000; i++) pairs.push(randomBits(true), randomBits(false) || 1);
    // y with few significant bits (1.5 · 2^k, 1.25 · 2^k): x · y has exact ties for odd x significands.
    for (let i = 0; i < 1500; i++) {
      const x = ((random() < 0.5 ? 0x80000000 : 0) | (Math.floor(random() * 254 + 1) << 23) | (Math.floor(random() * 0x400000) * 2 + 1)) >>> 0;
      const y = ((Math.floor(random() * 200 + 20) << 23) | (random() < 0.5 ? 0x400000 : 0x200000)) >>> 0;
      pairs.push(x, y);
    }
    // Subnormal operands and results, zero, the largest values, powers of two.
    const special = [0, 0x80000000, 1, 2, 3, 0x7fffff, 0x800000, 0x800001, 0x7f7fffff, 0x3f800000, 0x00400000, 0x7e800000, 0x7f000000, 0x0c000000, 0x34000000];
    for (const x of special) for (const y of special) if (y !== 0 && y !== 0x80000000) pairs.push(x, y);
    for (let i = 0; i < 500; i++) pairs.push(randomBits(true) & 0x807fffff, (Math.floor(random() * 40 + 100) << 23) | Math.floor(random() * 0x800000));
    const input = Uint32Array.from(pairs);
    const output = await gpuArithmetic(input);
    const failures: string[] = [];
    for (let i = 0; i < input.length / 2 && failures.length < 8; i++) {
      const x = bitsToF32(input[2 * i]);
      const y = bitsToF32(input[2 * i + 1]);
      const reciprocal = f32ToBits(Math.fround(1 / y));
      const product = f32ToBits(Math.fround(x * y));
      if (output[2 * i] !== reciprocal) failures.push(`1/${y}: ${output[2 * i].toString(16)} vs ${reciprocal.toString(16)}`);
      if (output[2 * i + 1] !== product) failures.push(`${x}·${y}: ${output[2 * i + 1].toString(16)} vs ${product.toString(16)}`);
    }
    expect(failures).toEqual([]);
    // the tie cases really were ties
    let ties = 0;
    for (let i = 3000; i < 4500; i++) {
      const exact = bitsToF32(input[2 * i]) * bitsToF32(input[2 * i + 1]);
      if (Math.abs(exact) < 3e38 && Math.abs(exact) > 1e-37 && exact !== Math.fround(exact)) ties++;
    }
    expect(ties).toBeGreaterThan(500);
  });
});
