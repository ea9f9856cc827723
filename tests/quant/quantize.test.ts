import { describe, expect, it } from 'vitest';
import { code4bit, codebook, DYNAMIC_MAP, NF4_CODE } from '../../src/quant/codebooks.ts';
import { absmaxMean, codeAt, dequantize4bit, dequantizeAbsmax, doubleQuantize, quantize4bit } from '../../src/quant/quantize.ts';
import {
  BlockSizeError,
  ElementCountError,
  NonFiniteWeightError,
  TruncatedTensorError,
  UnknownQuantTypeError,
  validateQuantState,
  type QuantState,
} from '../../src/quant/quantState.ts';
import { BNB_CASES, bitsOf, differingBytes } from '../fixtures/quant/bnbFixtures.ts';

function quantizeCase(c: (typeof BNB_CASES)[number]): QuantState {
  return quantize4bit(c.name, c.input, c.shape, { quantType: c.quantType, blocksize: c.blocksize, doubleQuant: c.doubleQuant });
}

describe('CPU 4-bit quantization vs the independent bitsandbytes fixtures', () => {
  it('covers the required cases', () => {
    const names = BNB_CASES.map((c) => c.name).join(' | ');
    for (const needle of ['odd count', 'tail', 'special blocks', 'all-zero', 'double quant', 'nf4', 'fp4']) expect(names).toContain(needle);
    expect(new Set(BNB_CASES.map((c) => c.blocksize))).toEqual(new Set([32, 64, 128, 256, 512, 1024, 2048, 4096]));
  });

  it.each(BNB_CASES.map((c) => [c.name, c] as const))('%s: packed bytes, absmax and nested parts are identical', (_, c) => {
    const state = quantizeCase(c);
    expect(state.packed.length).toBe(Math.ceil(c.input.length / 2));
    expect(differingBytes(state.packed, c.packed)).toBe('');
    expect(Buffer.from(state.packed).equals(Buffer.from(c.packed))).toBe(true);
    if (!c.nested) {
      expect(bitsOf(state.absmax!)).toEqual(bitsOf(c.absmax));
      expect(state.nested).toBeNull();
    } else {
      expect(state.absmax).toBeNull();
      const nested = state.nested!;
      expect(nested.blocksize).toBe(256);
      expect(Object.is(nested.offset, c.nested.offset)).toBe(true);
      expect(differingBytes(nested.codes, c.nested.codes)).toBe('');
      expect(bitsOf(nested.absmax2)).toEqual(bitsOf(c.nested.absmax2));
      expect(bitsOf(dequantizeAbsmax(state))).toEqual(bitsOf(c.nested.dequantizedAbsmax));
    }
    if (c.dequantized) expect(bitsOf(dequantize4bit(state))).toEqual(bitsOf(c.dequantized));
  });

  it('dequantized values equal code[q] · absmax to the last bit', () => {
    for (const c of BNB_CASES) {
      const state = quantizeCase(c);
      const absmax = dequantizeAbsmax(state);
      const values = dequantize4bit(state);
      const code = codebook(c.quantType);
      for (let i = 0; i < values.length; i++) {
        const expected = Math.fround(code[codeAt(state.packed, i)] * absmax[Math.floor(i / c.blocksize)]);
        if (!Object.is(values[i], expected)) expect.fail(`${c.name}: element ${i} is ${values[i]}, expected ${expected}`);
      }
    }
  });
});

describe('edge cases of the bitsandbytes rules', () => {
  it('an all-zero block gets code 0 everywhere and dequantizes to zeros, never NaN', () => {
    const data = new Float32Array(64);
    data[5] = -0;
    for (const quantType of ['nf4', 'fp4'] as const) {
      const state = quantize4bit('w', data, [2, 32], { quantType, blocksize: 32 });
      expect(Array.from(state.packed)).toEqual(new Array(32).fill(0));
      expect(Array.from(state.absmax!)).toEqual([0, 0]);
      const values = dequantize4bit(state);
      expect(values.every((v) => v === 0)).toBe(true); // NF4 code 0 is −1.0: −1 · 0 = −0
    }
  });

  it('negative zero gets the code of zero', () => {
    const data = Float32Array.of(-0, 0, 0.5, -1);
    expect(quantize4bit('w', data, [1, 4], { quantType: 'nf4', blocksize: 32 }).packed).toEqual(Uint8Array.of(0x77, 0xc0));
    expect(quantize4bit('w', data, [1, 4], { quantType: 'fp4', blocksize: 32 }).packed).toEqual(Uint8Array.of(0x00, 0x5b));
  });

  it('a value exactly on a threshold takes the lower code; one ulp above takes the upper', () => {
    expect(code4bit('nf4', Math.fround(0.03979014977812767))).toBe(7);
    expect(code4bit('nf4', Math.fround(0.0397901497781277) + 2 ** -28)).toBe(8);
    expect(code4bit('fp4', Math.fround(0.583333))).toBe(0b101);
    expect(code4bit('fp4', Math.fround(-0.583333))).toBe(0b1101);
    expect(code4bit('nf4', NaN)).toBe(0);
    expect(code4bit('fp4', NaN)).toBe(0);
  });

  it('a single huge outlier scales the rest of its block to the zero code', () => {
    const data = Float32Array.from({ length: 64 }, (_, i) => (i === 9 ? 1e30 : Math.sin(i)));
    const state = quantize4bit('w', data, [1, 64], { quantType: 'nf4', blocksize: 64 });
    expect(codeAt(state.packed, 9)).toBe(15);
    for (let i = 0; i < 64; i++) if (i !== 9) expect(codeAt(state.packed, i)).toBe(7);
    expect(dequantize4bit(state)[9]).toBe(Math.fround(1e30));
  });

  it('double quantization stores mean(absmax) as the offset and reproduces every absmax closely', () => {
    const absmax = Float32Array.from({ length: 700 }, (_, i) => 0.01 + 0.005 * Math.abs(Math.sin(i * 1.3)));
    const nested = doubleQuantize(absmax);
    expect(nested.offset).toBe(absmaxMean(absmax));
    expect(nested.codes.length).toBe(700);
    expect(nested.absmax2.length).toBe(3);
    expect(Array.from(nested.map)).toEqual(Array.from(DYNAMIC_MAP));
    const state: QuantState = {
      quantType: 'nf4', blocksize: 64, shape: [700, 64], dtype: 'float32', packed: new Uint8Array(700 * 32),
      quantMap: NF4_CODE, absmax: null, nested,
    };
    const restored = dequantizeAbsmax(state);
    for (let i = 0; i < 700; i++) expect(Math.abs(restored[i] - absmax[i])).toBeLessThan(0.0025 * 0.01 + 1e-7);
  });
});

describe('typed errors naming the tensor', () => {
  const data = new Float32Array(64).fill(0.5);

  it('rejects block sizes that are not powers of two in [32, 4096]', () => {
    for (const blocksize of [0, 16, 48, 100, 8192, 64.5, -64]) {
      const attempt = () => quantize4bit('layers.0.q_proj.weight', data, [1, 64], { blocksize });
      expect(attempt).toThrow(BlockSizeError);
      expect(attempt).toThrow('layers.0.q_proj.weight');
    }
  });

  it('rejects an unknown quant type', () => {
    const attempt = () => quantize4bit('layers.1.k_proj.weight', data, [1, 64], { quantType: 'int4' as never });
    expect(attempt).toThrow(UnknownQuantTypeError);
    expect(attempt).toThrow('layers.1.k_proj.weight');
    expect(attempt).toThrow('"int4"');
  });

  it('rejects data whose element count is not what the shape says', () => {
    const attempt = () => quantize4bit('layers.2.v_proj.weight', data, [3, 64]);
    expect(attempt).toThrow(ElementCountError);
    expect(attempt).toThrow('layers.2.v_proj.weight');
  });

  it('rejects NaN and infinite weights', () => {
    const bad = data.slice();
    bad[7] = Infinity;
    expect(() => quantize4bit('lm.w', bad, [1, 64])).toThrow(NonFiniteWeightError);
    expect(() => quantize4bit('lm.w', bad, [1, 64])).toThrow('element 7');
  });

  it('rejects a truncated packed weight, a short absmax, and states that disagree with the element count', () => {
    const state = quantize4bit('mlp.up.weight', Float32Array.from({ length: 99 }, (_, i) => i - 50), [9, 11], { blocksize: 32 });
    expect(() => validateQuantState('mlp.up.weight', { ...state, packed: state.packed.subarray(0, 49) })).toThrow(TruncatedTensorError);
    expect(() => validateQuantState('mlp.up.weight', { ...state, packed: state.packed.subarray(0, 49) })).toThrow(/mlp\.up\.weight.*packed weight has 49 bytes.*needs 50/);
    expect(() => validateQuantState('mlp.up.weight', { ...state, absmax: state.absmax!.subarray(0, 3) })).toThrow(TruncatedTensorError);
    expect(() => validateQuantState('mlp.up.weight', { ...state, shape: [9, 13] })).toThrow(TruncatedTensorError);
    expect(() => validateQuantState('mlp.up.weight', { ...state, shape: [9, 5] })).toThrow(ElementCountError);
    expect(() => validateQuantState('mlp.up.weight', { ...state, blocksize: 24 })).toThrow(BlockSizeError);
    expect(() => validateQuantState('mlp.up.weight', { ...state, quantType: 'q4_0' as never })).toThrow(UnknownQuantTypeError);
    const nested = quantize4bit('mlp.up.weight', Float32Array.from({ length: 99 }, (_, i) => i - 50), [9, 11], { blocksize: 32, doubleQuant: true });
    expect(() => validateQuantState('mlp.up.weight', { ...nested, nested: { ...nested.nested!, codes: nested.nested!.codes.subarray(0, 2) } })).toThrow(
      TruncatedTensorError,
    );
  });
});
