import { describe, expect, it } from 'vitest';
import { bnbTensorsFromState, findBnbLayers, pythonFloatRepr, quantStateFromBnbTensors, quantStateJson, type TensorRecords } from '../../src/quant/bnbLayout.ts';
import { quantize4bit } from '../../src/quant/quantize.ts';
import {
  BlockSizeError,
  ElementCountError,
  expectShape,
  QuantDTypeError,
  QuantStateFormatError,
  TruncatedTensorError,
  UnknownQuantTypeError,
} from '../../src/quant/quantState.ts';
import { BNB_CASES, bitsOf } from '../fixtures/quant/bnbFixtures.ts';

const prefix = 'model.layers.3.mlp.down_proj.';
const json = (records: TensorRecords, key: string) => new TextDecoder().decode(records[key].bytes);

describe('bitsandbytes Linear4bit state-dict layout', () => {
  it('quant-state JSON bytes equal what bitsandbytes writes (json.dumps of the packed quant state)', () => {
    for (const c of BNB_CASES) {
      const state = quantize4bit(c.name, c.input, c.shape, { quantType: c.quantType, blocksize: c.blocksize, doubleQuant: c.doubleQuant });
      expect(quantStateJson(state)).toBe(c.quantStateJson);
    }
  });

  it('writes the keys, dtypes and shapes of a double-quantized nf4 layer', () => {
    const c = BNB_CASES.find((x) => x.name.startsWith('nf4 bs64 double quant'))!;
    const state = quantize4bit(c.name, c.input, c.shape, { quantType: 'nf4', blocksize: 64, doubleQuant: true });
    const records = bnbTensorsFromState(prefix, state);
    const layout = Object.fromEntries(Object.entries(records).map(([k, v]) => [k, `${v.dtype}${JSON.stringify(v.shape)}`]));
    const jsonLength = records[`${prefix}weight.quant_state.bitsandbytes__nf4`].bytes.length;
    expect(layout).toEqual({
      [`${prefix}weight`]: 'U8[768,1]',
      [`${prefix}weight.absmax`]: 'U8[24]',
      [`${prefix}weight.quant_map`]: 'F32[16]',
      [`${prefix}weight.nested_absmax`]: 'F32[1]',
      [`${prefix}weight.nested_quant_map`]: 'F32[256]',
      [`${prefix}weight.quant_state.bitsandbytes__nf4`]: `U8[${jsonLength}]`,
    });
    expect(json(records, `${prefix}weight.quant_state.bitsandbytes__nf4`)).toBe(c.quantStateJson);
    expect(Buffer.from(records[`${prefix}weight`].bytes).equals(Buffer.from(c.packed))).toBe(true);
    expect(Buffer.from(records[`${prefix}weight.absmax`].bytes).equals(Buffer.from(c.nested!.codes))).toBe(true);
  });

  it('writes the keys of a plain fp4 layer', () => {
    const c = BNB_CASES.find((x) => x.name.startsWith('fp4 bs64 odd count'))!;
    const state = quantize4bit(c.name, c.input, c.shape, { quantType: 'fp4', blocksize: 64 });
    const records = bnbTensorsFromState('', state);
    expect(Object.keys(records).sort()).toEqual(['weight', 'weight.absmax', 'weight.quant_map', 'weight.quant_state.bitsandbytes__fp4']);
    expect(records['weight'].shape).toEqual([46, 1]);
    expect(records['weight.absmax']).toMatchObject({ dtype: 'F32', shape: [2] });
    expect(json(records, 'weight.quant_state.bitsandbytes__fp4')).toBe('{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [7, 13]}');
  });

  it('parses what it writes back into the same state, for every fixture', () => {
    for (const c of BNB_CASES) {
      const state = quantize4bit(c.name, c.input, c.shape, { quantType: c.quantType, blocksize: c.blocksize, doubleQuant: c.doubleQuant });
      const records = bnbTensorsFromState(prefix, state);
      const parsed = quantStateFromBnbTensors(prefix, new Map(Object.entries(records)));
      expect(parsed.quantType).toBe(state.quantType);
      expect(parsed.blocksize).toBe(state.blocksize);
      expect(parsed.shape).toEqual(state.shape);
      expect(Buffer.from(parsed.packed).equals(Buffer.from(state.packed))).toBe(true);
      expect(bitsOf(parsed.quantMap)).toEqual(bitsOf(state.quantMap));
      if (state.absmax) expect(bitsOf(parsed.absmax!)).toEqual(bitsOf(state.absmax));
      if (state.nested) {
        expect(Object.is(parsed.nested!.offset, state.nested.offset)).toBe(true);
        expect(bitsOf(parsed.nested!.absmax2)).toEqual(bitsOf(state.nested.absmax2));
        expect(Array.from(parsed.nested!.codes)).toEqual(Array.from(state.nested.codes));
        expect(bitsOf(parsed.nested!.map)).toEqual(bitsOf(state.nested.map));
      }
    }
  });

  it('finds the quantized layers among tensor names', () => {
    expect(
      findBnbLayers([
        'model.embed_tokens.weight',
        'model.layers.0.self_attn.q_proj.weight',
        'model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4',
        'model.layers.0.mlp.up_proj.weight.quant_state.bitsandbytes__fp4',
        'weight.quant_state.bitsandbytes__int8',
        'model.xweight.quant_state.bitsandbytes__nf4',
      ]),
    ).toEqual([
      { prefix: 'model.layers.0.self_attn.q_proj.', quantType: 'nf4' },
      { prefix: 'model.layers.0.mlp.up_proj.', quantType: 'fp4' },
      { prefix: '', quantType: 'int8' },
    ]);
  });

  it("formats floats like Python's repr", () => {
    const cases: [number, string][] = [
      [1e-5, '1e-05'], [1.5e-7, '1.5e-07'], [0.0001, '0.0001'], [1e16, '1e+16'], [123, '123.0'], [1e15, '1000000000000000.0'],
      [0.1, '0.1'], [-2.5e-10, '-2.5e-10'], [3.4028234663852886e38, '3.4028234663852886e+38'],
      [Math.fround(0.012345678), '0.012345678173005581'], [0.5, '0.5'], [-0, '-0.0'], [12345678901234567, '1.2345678901234568e+16'],
      [1.2345e-300, '1.2345e-300'], [5e-324, '5e-324'],
    ];
    for (const [value, text] of cases) expect(pythonFloatRepr(value)).toBe(text);
  });
});

describe('parsing rejects bad states with typed errors naming the layer', () => {
  const c = BNB_CASES.find((x) => x.name.startsWith('nf4 bs32 blocks span rows'))!;
  const plain = () => bnbTensorsFromState(prefix, quantize4bit('w', c.input, c.shape, { quantType: 'nf4', blocksize: 32 }));
  const nested = () => bnbTensorsFromState(prefix, quantize4bit('w', c.input, c.shape, { quantType: 'nf4', blocksize: 32, doubleQuant: true }));
  const stateKey = `${prefix}weight.quant_state.bitsandbytes__nf4`;
  const withJson = (records: TensorRecords, text: string) => ({ ...records, [stateKey]: { dtype: 'U8' as const, shape: [text.length], bytes: new TextEncoder().encode(text) } });
  const expectError = (records: TensorRecords, type: new (...args: never[]) => Error, message?: RegExp) => {
    const attempt = () => quantStateFromBnbTensors(prefix, records);
    expect(attempt).toThrow(type);
    expect(attempt).toThrow(`${prefix}weight`);
    if (message) expect(attempt).toThrow(message);
  };

  it('truncated packed weight', () => {
    const records = plain();
    records[`${prefix}weight`] = { ...records[`${prefix}weight`], bytes: records[`${prefix}weight`].bytes.subarray(0, 100) };
    expectError(records, TruncatedTensorError, /100 bytes/);
  });

  it('element count that is not what the state says', () => {
    expectError(withJson(plain(), '{"quant_type": "nf4", "blocksize": 32, "dtype": "float32", "shape": [5, 40]}'), ElementCountError);
    expectError(withJson(plain(), '{"quant_type": "nf4", "blocksize": 32, "dtype": "float32", "shape": [5, 50]}'), TruncatedTensorError);
  });

  it('block size not a power of two in range', () => {
    expectError(withJson(plain(), '{"quant_type": "nf4", "blocksize": 48, "dtype": "float32", "shape": [5, 45]}'), BlockSizeError, /48/);
    expectError(withJson(plain(), '{"quant_type": "nf4", "blocksize": 8192, "dtype": "float32", "shape": [5, 45]}'), BlockSizeError);
  });

  it('unknown quant type, in the key or in the JSON', () => {
    const records = plain();
    const moved = { ...records, [`${prefix}weight.quant_state.bitsandbytes__int4`]: records[stateKey] };
    delete (moved as TensorRecords)[stateKey];
    expectError(moved, UnknownQuantTypeError, /int4/);
    expectError(withJson(plain(), '{"quant_type": "af4", "blocksize": 32, "dtype": "float32", "shape": [5, 45]}'), UnknownQuantTypeError, /af4/);
  });

  it('missing tensors, bad JSON, wrong dtypes, short nested parts', () => {
    const records = nested();
    delete records[`${prefix}weight.nested_absmax`];
    expectError(records, QuantStateFormatError, /nested_absmax/);
    expectError(withJson(plain(), '{"quant_type": "nf4", '), QuantStateFormatError);
    const wrongDtype = plain();
    wrongDtype[`${prefix}weight.absmax`] = { ...wrongDtype[`${prefix}weight.absmax`], dtype: 'F16' };
    expectError(wrongDtype, QuantDTypeError, /F16/);
    const shortCodes = nested();
    shortCodes[`${prefix}weight.absmax`] = { ...shortCodes[`${prefix}weight.absmax`], bytes: shortCodes[`${prefix}weight.absmax`].bytes.subarray(0, 3) };
    expectError(shortCodes, TruncatedTensorError);
  });

  it('a state whose shape is not the one the model needs', () => {
    const state = quantStateFromBnbTensors(prefix, plain());
    expect(() => expectShape(`${prefix}weight`, state, [45, 5])).toThrow(ElementCountError);
    expect(() => expectShape(`${prefix}weight`, state, [45, 5])).toThrow(`${prefix}weight`);
    expect(() => expectShape(`${prefix}weight`, state, [5, 45])).not.toThrow();
  });
});
