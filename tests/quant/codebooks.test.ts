import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  code8bit,
  createDynamicMap,
  DYNAMIC_MAP,
  FP4_CODE,
  FP4_CODE_BY_RANK,
  FP4_THRESHOLDS,
  fp4Code,
  NF4_CODE,
  NF4_THRESHOLDS,
  nf4Code,
} from '../../src/quant/codebooks.ts';
import { FIXTURE_DYNAMIC_MAP, bitsOf } from '../fixtures/quant/bnbFixtures.ts';

describe('codebooks', () => {
  it('NF4 and FP4 tables are the documented bitsandbytes values', () => {
    expect(Array.from(NF4_CODE)).toEqual(
      [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
        -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0].map(Math.fround),
    );
    expect(Array.from(FP4_CODE).map((v) => v * 12)).toEqual([0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3].map((v) => expect.closeTo(v, 5)));
    expect(Object.is(FP4_CODE[8], -0)).toBe(true);
    // the CUDA dequantization literals (dDequantizeFP4Tree) are the same f32 values
    expect(Array.from(FP4_CODE.slice(0, 8))).toEqual([0, 5.208333333e-3, 0.66666667, 1, 0.33333333, 0.5, 0.16666667, 0.25].map(Math.fround));
  });

  it('NF4 thresholds are the f32 midpoints of neighbouring codes', () => {
    for (let i = 0; i < 15; i++) expect(NF4_THRESHOLDS[i]).toBe(Math.fround((NF4_CODE[i] + NF4_CODE[i + 1]) / 2));
  });

  it('FP4 thresholds sit between the codes sorted by magnitude', () => {
    const magnitudes = Array.from(FP4_CODE_BY_RANK, (code) => FP4_CODE[code]);
    for (let i = 0; i < 7; i++) {
      expect(FP4_THRESHOLDS[i]).toBeGreaterThan(magnitudes[i]);
      expect(FP4_THRESHOLDS[i]).toBeLessThan(magnitudes[i + 1]);
      expect(Math.abs(FP4_THRESHOLDS[i] - (magnitudes[i] + magnitudes[i + 1]) / 2)).toBeLessThan(1e-6);
    }
  });

  it('nearest-code rules give the nearest code away from ties', () => {
    const failures: string[] = [];
    for (let t = -1; t <= 1; t += 0.0005) {
      const x = Math.fround(t);
      const nearest = (code: Float32Array) => Math.min(...Array.from(code, (c) => Math.abs(c - x)));
      if (Math.abs(NF4_CODE[nf4Code(x)] - x) > nearest(NF4_CODE) + 1e-7) failures.push(`nf4 ${x}`);
      if (Math.abs(FP4_CODE[fp4Code(x)] - x) > nearest(FP4_CODE) + 1e-6) failures.push(`fp4 ${x}`);
    }
    expect(failures).toEqual([]);
  });

  it('the dynamic map is bitsandbytes create_dynamic_map() as the independent generator computed it', () => {
    expect(DYNAMIC_MAP.length).toBe(256);
    expect(bitsOf(DYNAMIC_MAP)).toEqual(bitsOf(FIXTURE_DYNAMIC_MAP));
    expect(bitsOf(createDynamicMap(true, 7, 8))).toEqual(bitsOf(DYNAMIC_MAP));
    expect(DYNAMIC_MAP[0]).toBe(Math.fround(-0.992968738079071));
    expect(DYNAMIC_MAP[1]).toBe(Math.fround(-0.9789062738418579));
    expect(DYNAMIC_MAP[127]).toBe(0);
    expect(DYNAMIC_MAP[255]).toBe(1);
    for (let i = 1; i < 256; i++) expect(DYNAMIC_MAP[i]).toBeGreaterThan(DYNAMIC_MAP[i - 1]);
  });

  it('8-bit search: exact codes map to themselves, midpoints stay at the search pivot, NaN goes to 0', () => {
    for (let q = 0; q < 256; q++) expect(code8bit(DYNAMIC_MAP, DYNAMIC_MAP[q])).toBe(q);
    for (let q = 0; q < 255; q++) {
      const mid = Math.fround(Math.fround(DYNAMIC_MAP[q] + DYNAMIC_MAP[q + 1]) * 0.5);
      expect([q, q + 1]).toContain(code8bit(DYNAMIC_MAP, mid));
      const above = Math.fround(mid + Math.abs(mid) * 2 ** -20 + 2 ** -149);
      if (above < DYNAMIC_MAP[q + 1]) expect(code8bit(DYNAMIC_MAP, above)).toBe(q + 1);
    }
    expect(code8bit(DYNAMIC_MAP, NaN)).toBe(0);
    expect(code8bit(DYNAMIC_MAP, -5)).toBe(0);
    expect(code8bit(DYNAMIC_MAP, 5)).toBe(255);
  });

  it('the WGSL quantizer carries the same threshold bits as codebooks.ts', () => {
    const source = readFileSync(new URL('../../shaders/quantize_4bit.wgsl', import.meta.url), 'utf8');
    const table = (name: string) =>
      [...source.match(new RegExp(`const ${name} = array<u32, \\d+>\\(([^)]*)\\)`))![1].matchAll(/0x([0-9a-f]{8})u/g)].map((m) => parseInt(m[1], 16));
    expect(table('NF4_THRESHOLDS')).toEqual(bitsOf(NF4_THRESHOLDS));
    expect(table('FP4_THRESHOLDS')).toEqual(bitsOf(FP4_THRESHOLDS));
    const byRank = source.match(/const FP4_CODE_BY_RANK = array<u32, 8>\(([^)]*)\)/)![1].match(/\d+/g)!.map(Number);
    expect(byRank).toEqual(Array.from(FP4_CODE_BY_RANK));
  });
});
