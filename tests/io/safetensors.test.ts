import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DuplicateNameError,
  FileReadError,
  FormatError,
  HeaderLengthError,
  HeaderParseError,
  IncompleteFileError,
  MetadataError,
  OffsetError,
  TensorNotFoundError,
  TensorShapeError,
  TensorSizeError,
  UnsupportedDtypeError,
  quoteName,
} from '../../src/io/errors.ts';
import { openNodeFileSource, withNodeFileSource } from '../../src/io/nodeFileSource.ts';
import {
  bfloat16BitsToFloat32,
  blobSource,
  bytesSource,
  float16BitsToFloat32,
  readSafetensors,
  readSafetensorsHeader,
  readTensor,
  readTensorBytes,
  type ByteSource,
  type SafetensorsDtype,
} from '../../src/io/safetensors.ts';
import { parseStrictJson } from '../../src/io/strictJson.ts';
import {
  encodeSafetensors,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  float32ToBfloat16,
  float32ToBfloat16Bits,
  float32ToFloat16,
  float32ToFloat16Bits,
  writeSafetensors,
  type SafetensorsTensorInput,
} from '../../src/io/safetensorsWriter.ts';
import { rng } from '../helpers/numeric.ts';
import { badFileCases, entry, rawFile, validFile } from '../fixtures/safetensors/badFiles.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/safetensors/', import.meta.url));

/** Assert a typed error: its class, and that property and message name the file and the tensor / field. */
async function expectFormatError(
  run: () => Promise<unknown> | unknown,
  errorClass: abstract new (...args: never[]) => FormatError,
  expected: { file: string; tensor?: string; field?: string; says?: RegExp },
): Promise<FormatError> {
  let caught: unknown;
  try {
    await run();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a typed error').toBeInstanceOf(errorClass);
  const error = caught as FormatError;
  expect(error).toBeInstanceOf(FormatError);
  expect(error.name).toBe(errorClass.name);
  expect(error.file).toBe(expected.file);
  expect(error.message.startsWith(`${quoteName(expected.file)}: `)).toBe(true);
  if (expected.tensor !== undefined) {
    expect(error.tensor).toBe(expected.tensor);
    expect(error.message).toContain(quoteName(expected.tensor));
  }
  if (expected.field !== undefined) {
    expect(error.field).toBe(expected.field);
    // The message names the field (a `shape[0]` or `__metadata__.step` path, or the field's words).
    expect(error.message).toContain(expected.field);
  }
  if (expected.says) expect(error.message).toMatch(expected.says);
  return error;
}

/** An in-memory source that records every read, to check what the reader asks for. */
function spySource(bytes: Uint8Array): ByteSource & { reads: [number, number][] } {
  const inner = bytesSource(bytes);
  const reads: [number, number][] = [];
  return {
    size: inner.size,
    reads,
    read(offset, length) {
      reads.push([offset, length]);
      return inner.read(offset, length);
    },
  };
}

const bitsOf = (values: Float32Array) => Array.from(new Uint32Array(values.buffer, values.byteOffset, values.length));

describe('safetensors reader: reference fixture written by an independent Python script', async () => {
  const bytes = new Uint8Array(await readFile(join(FIXTURES, 'reference.safetensors')));
  const expected = JSON.parse(await readFile(join(FIXTURES, 'reference.json'), 'utf8')) as {
    metadata: Record<string, string>;
    order: string[];
    tensors: Record<string, { dtype: SafetensorsDtype; shape: number[]; data_offsets: [number, number]; values: number[] }>;
  };
  const expectedTensors = new Map(Object.entries(expected.tensors));

  it('reads the header: entries in data order, offsets, metadata, names like __proto__ as data', async () => {
    const source = spySource(bytes);
    const header = await readSafetensorsHeader(source, 'reference.safetensors');
    // Only the prefix and the header were read.
    expect(source.reads).toEqual([
      [0, 8],
      [8, header.headerLength],
    ]);
    expect(header.headerLength % 8).toBe(0);
    expect(header.fileSize).toBe(bytes.byteLength);
    expect(header.tensors.map((t) => t.name)).toEqual(expected.order);
    for (const [name, want] of expectedTensors) {
      const got = header.byName.get(name);
      expect(got, name).toBeDefined();
      expect(got!.dtype).toBe(want.dtype);
      expect(got!.shape).toEqual(want.shape);
      expect(got!.dataOffsets).toEqual(want.data_offsets);
      expect(got!.byteOffset).toBe(header.dataStart + want.data_offsets[0]);
    }
    expect(Object.fromEntries(header.metadata)).toEqual(expected.metadata);
    expect(header.byName.get('__proto__')?.shape).toEqual([1]);
    expect(header.byName.get('constructor')?.dtype).toBe('U8');
    expect(header.byName.get('toString')).toBeUndefined();
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it('reads every tensor exactly (F32, F16 and BF16 as float32 bits, U8 as bytes), one read per tensor', async () => {
    const source = spySource(bytes);
    const header = await readSafetensorsHeader(source, 'reference.safetensors');
    source.reads.length = 0;
    for (const name of expected.order) {
      const want = expectedTensors.get(name)!;
      const tensor = await readTensor(source, header, name);
      expect(tensor.dtype).toBe(want.dtype);
      expect(tensor.shape).toEqual(want.shape);
      if (tensor.dtype === 'U8') {
        expect(tensor.data).toBeInstanceOf(Uint8Array);
        expect(Array.from(tensor.data)).toEqual(want.values);
      } else {
        expect(tensor.data).toBeInstanceOf(Float32Array);
        expect(bitsOf(tensor.data)).toEqual(want.values);
      }
    }
    const entries = header.tensors;
    expect(source.reads).toEqual(entries.map((e) => [e.byteOffset, e.byteLength]));
  });

  it('loads NaN/Inf data and reports a warning per tensor with counts', async () => {
    const { warnings, tensors } = await readSafetensors(bytesSource(bytes), 'reference.safetensors');
    expect(tensors.size).toBe(expected.order.length);
    const byTensor = new Map(warnings.map((w) => [w.tensor, w]));
    // F32 [[1.5, -0, inf], [-inf, nan, 1e-45]]
    expect(byTensor.get('model.embed_tokens.weight')).toMatchObject({ file: 'reference.safetensors', nan: 1, posInf: 1, negInf: 1 });
    // F16: 70000 overflowed to +inf
    expect(byTensor.get('layers.0.attn.q.weight')).toMatchObject({ nan: 0, posInf: 1, negInf: 0 });
    // BF16 bits 0x7F80 (+inf) and 0x7FC0 (NaN)
    expect(byTensor.get('layers.0.mlp.up.weight')).toMatchObject({ nan: 1, posInf: 1, negInf: 0 });
    expect(byTensor.get('lm_head.weight')).toBeUndefined();
    expect(warnings).toHaveLength(3);
    for (const w of warnings) {
      expect(w.message).toContain('"reference.safetensors"');
      expect(w.message).toContain(quoteName(w.tensor));
    }
  });

  it('reads the same through a Blob source and a Node file source', async () => {
    const viaBlob = await readSafetensors(blobSource(new Blob([bytes])), 'reference.safetensors');
    const viaFile = await withNodeFileSource(join(FIXTURES, 'reference.safetensors'), (source) => readSafetensors(source, 'reference.safetensors'));
    const viaMemory = await readSafetensors(bytesSource(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)), 'reference.safetensors');
    for (const name of expected.order) {
      const want = Array.from(viaMemory.tensors.get(name)!.data);
      expect(Array.from(viaBlob.tensors.get(name)!.data)).toEqual(want);
      expect(Array.from(viaFile.tensors.get(name)!.data)).toEqual(want);
    }
  });

  it('returns a copy: editing a loaded tensor leaves the source bytes alone', async () => {
    const copy = bytes.slice();
    const source = bytesSource(copy);
    const header = await readSafetensorsHeader(source, 'reference.safetensors');
    const raw = await readTensorBytes(source, header, 'quant.absmax');
    raw.fill(9);
    expect(copy).toEqual(bytes);
  });

  it('refuses a tensor name the file does not have, and a source that changed size', async () => {
    const source = bytesSource(bytes);
    const header = await readSafetensorsHeader(source, 'reference.safetensors');
    await expectFormatError(() => readTensor(source, header, 'nope'), TensorNotFoundError, { file: 'reference.safetensors', tensor: 'nope' });
    await expectFormatError(() => readTensor(bytesSource(bytes.subarray(0, bytes.byteLength - 4)), header, 'lm_head.weight'), IncompleteFileError, {
      file: 'reference.safetensors',
      tensor: 'lm_head.weight',
    });
  });
});

describe('safetensors reader: every bad-input row of QUALITY.md for a single file', () => {
  const cases = badFileCases();

  it('covers each row', () => {
    const rows = new Set(cases.map((c) => c.row));
    expect([...rows]).toEqual([
      'file under 8 bytes',
      'header length larger than the cap or than the file, or overflowing',
      'header not UTF-8, not JSON, not an object',
      'unknown dtype, or one we do not support',
      'shape with negative, fractional, non-integer or > 2^53 entries; product overflow',
      'offsets overlapping, leaving gaps, not starting at 0, end < begin, past the end',
      'byte length ≠ shape × dtype size',
      'bytes after the last tensor; file cut short',
      'duplicate tensor names; __metadata__ with non-string values',
    ]);
  });

  it.each(cases.map((c) => [c.id, c] as const))('%s', async (id, c) => {
    const file = `bad-${id}.safetensors`;
    await expectFormatError(
      async () => {
        const source = bytesSource(c.bytes);
        const header = await readSafetensorsHeader(source, file);
        for (const t of header.tensors) await readTensor(source, header, t.name);
      },
      c.error,
      { file, tensor: c.tensor, field: c.field, says: c.says },
    );
  });

  it('refuses a header length over the cap or the file without reading or allocating that length', async () => {
    for (const length of [100_000_001n, 2n ** 64n - 1n, 2n ** 40n, 5000n]) {
      const source = spySource(rawFile('{}', 0, { length }));
      await expect(readSafetensorsHeader(source, 'x.safetensors')).rejects.toBeInstanceOf(HeaderLengthError);
      expect(source.reads).toEqual([[0, 8]]);
    }
  });

  it('applies a smaller cap when asked', async () => {
    const bytes = rawFile(`{"a":${entry('U8', '[1]', '[0,1]')}}`, 1);
    await expect(readSafetensorsHeader(bytesSource(bytes), 'x.safetensors')).resolves.toBeDefined();
    await expectFormatError(() => readSafetensorsHeader(bytesSource(bytes), 'x.safetensors', { maxHeaderBytes: 16 }), HeaderLengthError, {
      file: 'x.safetensors',
      field: 'header length',
      says: /over the 16-byte cap/,
    });
  });

  it('treats __proto__, constructor and prototype names as plain data, in tensors and metadata', async () => {
    const names = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', '__defineGetter__'];
    let offset = 0;
    const parts = names.map((name) => `${JSON.stringify(name)}:${entry('U8', '[1]', `[${offset},${++offset}]`)}`);
    const bytes = rawFile(`{"__metadata__":{"__proto__":"x","constructor":"y"},${parts.join(',')}}`, names.length);
    const { header, tensors } = await readSafetensors(bytesSource(bytes), 'proto.safetensors');
    expect(header.tensors.map((t) => t.name)).toEqual(names);
    expect([...tensors.keys()]).toEqual(names);
    expect(header.metadata.get('__proto__')).toBe('x');
    expect(header.metadata.get('constructor')).toBe('y');
    expect(Object.keys(Object.prototype)).toEqual([]);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('accepts what the reference accepts: unknown entry fields, null metadata, zero tensors, zero-size tensors', async () => {
    const extra = rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"note":{"x":[1,2]}}}`, 4);
    expect((await readSafetensorsHeader(bytesSource(extra), 'x.safetensors')).tensors).toHaveLength(1);
    const nullMeta = rawFile(`{"__metadata__":null}`);
    expect((await readSafetensorsHeader(bytesSource(nullMeta), 'x.safetensors')).metadata.size).toBe(0);
    const empty = rawFile('{}');
    const header = await readSafetensorsHeader(bytesSource(empty), 'x.safetensors');
    expect(header.tensors).toHaveLength(0);
    expect(header.fileSize).toBe(16);
    const zeros = rawFile(`{"z":${entry('F32', '[0,3]', '[0,0]')},"y":${entry('BF16', '[0]', '[0,0]')},"a":${entry('U8', '[2]', '[0,2]')}}`, 2);
    const read = await readSafetensors(bytesSource(zeros), 'x.safetensors');
    expect(read.tensors.get('z')!.data).toEqual(new Float32Array(0));
    expect(read.tensors.get('a')!.data).toEqual(new Uint8Array([0, 0x3f]));
    // Header keys in any order; whitespace and escapes as JSON allows.
    const spaced = rawFile(`{ "b" : ${entry('U8', '[ 1 ]', '[1, 2]')} ,\n\t"\\u0061" : ${entry('U8', '[1]', '[0,1]')} }`, 2);
    expect((await readSafetensorsHeader(bytesSource(spaced), 'x.safetensors')).tensors.map((t) => t.name)).toEqual(['a', 'b']);
  });

  it('wraps a failing source in FileReadError naming the file', async () => {
    const failing: ByteSource = { size: 64, read: () => Promise.reject(new Error('disk on fire')) };
    await expectFormatError(() => readSafetensorsHeader(failing, 'x.safetensors'), FileReadError, {
      file: 'x.safetensors',
      field: 'header length',
      says: /disk on fire/,
    });
    const short: ByteSource = { size: 64, read: (_offset, length) => Promise.resolve(new Uint8Array(Math.min(length, 4))) };
    await expectFormatError(() => readSafetensorsHeader(short, 'x.safetensors'), IncompleteFileError, { file: 'x.safetensors', says: /cut short/ });
  });

  it('reports a missing file from the Node source as FileReadError naming the path', async () => {
    const path = join(tmpdir(), 'tabtune-no-such-file.safetensors');
    await expectFormatError(() => openNodeFileSource(path), FileReadError, { file: path, field: 'file', says: /ENOENT/ });
    await expectFormatError(() => openNodeFileSource(tmpdir()), FileReadError, { file: tmpdir(), says: /not a regular file|EISDIR/ });
  });
});

describe('strict JSON', () => {
  it('parses JSON into Maps with exact number literals', () => {
    const value = parseStrictJson(' {"a":[1,-2.5e3,true,false,null,"x\\u00e9\\ud83d\\ude00\\n"],"b":{}} ');
    expect(value).toBeInstanceOf(Map);
    const a = (value as Map<string, unknown>).get('a') as unknown[];
    expect((a[0] as { text: string }).text).toBe('1');
    expect((a[1] as { text: string; value: number }).value).toBe(-2500);
    expect(a.slice(2)).toEqual([true, false, null, 'xé😀\n']);
  });

  it('agrees with JSON.parse on what is valid', () => {
    const samples = ['{}', '[]', '0', '-0', '01', '1.', '.5', '1e', '1e+', '"\\x"', '"\t"', '[1,]', '{"a":1,}', 'tru', 'nul', '"\\u12"', '{"a" 1}', '[1 2]', '"abc'];
    for (const text of samples) {
      let native = true;
      try {
        JSON.parse(text);
      } catch {
        native = false;
      }
      let strict = true;
      try {
        parseStrictJson(text);
      } catch {
        strict = false;
      }
      expect(strict, text).toBe(native);
    }
  });
});

describe('safetensors writer', () => {
  function sampleTensors(seed: number): SafetensorsTensorInput[] {
    const random = rng(seed);
    const f32 = Float32Array.from({ length: 12 }, () => (random() * 2 - 1) * 100);
    f32[0] = -0;
    f32[1] = 1e-40; // subnormal
    const u8 = Uint8Array.from({ length: 5 }, () => Math.floor(random() * 256));
    const f16 = new Uint16Array([0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00]);
    const bf16 = new Uint16Array([0x0000, 0x8000, 0x0001, 0x007f, 0x0080, 0x3f80, 0x7f7f, 0xff7f, 0x7f80, 0xff80, 0x7fc0]);
    return [
      { name: 'w.f32', dtype: 'F32', shape: [3, 4], data: f32 },
      { name: 'w.u8', dtype: 'U8', shape: [5], data: u8 },
      { name: 'w.f16', dtype: 'F16', shape: [11], data: f16 },
      { name: 'w.bf16', dtype: 'BF16', shape: [1, 11], data: bf16 },
      { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([7]) },
      { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint16Array(0) },
      { name: '__proto__', dtype: 'U8', shape: [1], data: new Uint8Array([3]) },
    ];
  }

  it('round-trips every dtype bit for bit through the reader', async () => {
    const tensors = sampleTensors(1);
    const bytes = writeSafetensors(tensors, { format: 'pt', 'tabtune.version': '0.1' });
    const { header, tensors: read } = await readSafetensors(bytesSource(bytes), 'rt.safetensors');
    expect(header.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name)); // offsets in the given order
    expect(Object.fromEntries(header.metadata)).toEqual({ format: 'pt', 'tabtune.version': '0.1' });
    for (const t of tensors) {
      const got = read.get(t.name)!;
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      if (t.dtype === 'U8') expect(Array.from(got.data)).toEqual(Array.from(t.data));
      else if (t.dtype === 'F32') expect(bitsOf(got.data as Float32Array)).toEqual(bitsOf(t.data as Float32Array));
      else {
        const want = t.dtype === 'F16' ? float16BitsToFloat32(t.data as Uint16Array) : bfloat16BitsToFloat32(t.data as Uint16Array);
        expect(bitsOf(got.data as Float32Array)).toEqual(bitsOf(want));
        // and back to the same half-precision bits
        const again = t.dtype === 'F16' ? float32ToFloat16Bits(got.data as Float32Array) : float32ToBfloat16Bits(got.data as Float32Array);
        expect(Array.from(again)).toEqual(Array.from(t.data));
      }
    }
  });

  it('encodes F16/BF16 from float32 with round-to-nearest-even and the reader gets the rounded values', async () => {
    const values = new Float32Array([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65519, 65520, -0, 2 ** -25, 3 * 2 ** -25]);
    const bytes = writeSafetensors([
      { name: 'h', dtype: 'F16', shape: [values.length], data: values },
      { name: 'b', dtype: 'BF16', shape: [values.length], data: values },
    ]);
    const { tensors } = await readSafetensors(bytesSource(bytes), 'rne.safetensors');
    expect(Array.from(tensors.get('h')!.data)).toEqual([1, 1, 1 + 2 ** -9, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, Infinity, -0, 0, 2 ** -23]);
    expect(Object.is(tensors.get('h')!.data[7], -0)).toBe(true);
    expect(Array.from(tensors.get('b')!.data)).toEqual([1, 1, 1, 1, 1 + 2 ** -6, 65536, 65536, -0, 2 ** -25, 3 * 2 ** -25]);
  });

  it('writes the layout the format specifies: u64 length, space padding to 8, offsets in order, deterministic', () => {
    const bytes = writeSafetensors([{ name: 'a', dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) }], { k: 'v' });
    const json = '{"__metadata__":{"k":"v"},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}';
    const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
    const expected = new Uint8Array(8 + padded.length + 3);
    new DataView(expected.buffer).setUint32(0, padded.length, true);
    expected.set(new TextEncoder().encode(padded), 8);
    expected.set([1, 2, 3], 8 + padded.length);
    expect(bytes).toEqual(expected);
    expect((8 + padded.length) % 8).toBe(0);

    const tensors = sampleTensors(2);
    expect(writeSafetensors(tensors, { a: 'b' })).toEqual(writeSafetensors(sampleTensors(2), new Map([['a', 'b']])));
    const encoded = encodeSafetensors(tensors);
    expect(encoded.header.byteLength % 8).toBe(0);
    expect(encoded.chunks).toHaveLength(tensors.length);
    expect(encoded.byteLength).toBe(writeSafetensors(tensors).byteLength);
    // No metadata block when there is none.
    expect(new TextDecoder().decode(writeSafetensors([]).subarray(8))).toBe('{}      ');
  });

  it('refuses invalid input with typed errors naming the file and the tensor or field', async () => {
    const file = 'out.safetensors';
    const ok = (over: Partial<SafetensorsTensorInput>): SafetensorsTensorInput => ({ name: 'w', dtype: 'F32', shape: [2], data: new Float32Array(2), ...over });
    const write = (tensors: SafetensorsTensorInput[], metadata?: Record<string, string> | Map<string, string>) => () =>
      writeSafetensors(tensors, metadata, { fileName: file });
    await expectFormatError(write([ok({ data: new Float32Array(3) })]), TensorSizeError, { file, tensor: 'w', field: 'data', says: /needs a Float32Array of 2 elements; got Float32Array of 3/ });
    await expectFormatError(write([ok({ data: new Uint8Array(8) })]), TensorSizeError, { file, tensor: 'w', says: /got Uint8Array of 8/ });
    await expectFormatError(write([ok({ dtype: 'U8', data: new Float32Array(2) })]), TensorSizeError, { file, tensor: 'w', says: /needs a Uint8Array/ });
    await expectFormatError(write([ok({ dtype: 'BF16', data: new Uint16Array(4) })]), TensorSizeError, { file, tensor: 'w', says: /Uint16Array/ });
    await expectFormatError(write([ok({}), ok({})]), DuplicateNameError, { file, tensor: 'w', says: /duplicate tensor name "w"/ });
    await expectFormatError(write([ok({ dtype: 'F64' as SafetensorsDtype })]), UnsupportedDtypeError, { file, tensor: 'w', field: 'dtype', says: /unsupported dtype F64 in tensor "w"/ });
    await expectFormatError(write([ok({ shape: [-2] })]), TensorShapeError, { file, tensor: 'w', field: 'shape[0]' });
    await expectFormatError(write([ok({ shape: [0.5, 4] })]), TensorShapeError, { file, tensor: 'w', field: 'shape[0]' });
    await expectFormatError(write([ok({ shape: [NaN] })]), TensorShapeError, { file, tensor: 'w', field: 'shape[0]' });
    await expectFormatError(write([ok({ shape: [2 ** 30, 2 ** 30, 2 ** 30] })]), TensorShapeError, { file, tensor: 'w', field: 'shape', says: /overflows/ });
    await expectFormatError(write([ok({ name: '__metadata__' })]), MetadataError, { file, tensor: '__metadata__' });
    await expectFormatError(write([ok({ name: 'bad\ud800' })]), HeaderParseError, { file, field: 'name' });
    await expectFormatError(write([ok({})], { step: 3 } as unknown as Record<string, string>), MetadataError, { file, field: '__metadata__.step', says: /must be strings/ });
    await expectFormatError(write([ok({})], new Map([['k', null]]) as unknown as Map<string, string>), MetadataError, { file, field: '__metadata__.k' });
  });

  it('writes a file the Node source reads back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tabtune-st-'));
    try {
      const path = join(dir, 'model.safetensors');
      const tensors = sampleTensors(3);
      await writeFile(path, writeSafetensors(tensors));
      const source = await openNodeFileSource(path);
      try {
        const header = await readSafetensorsHeader(source, 'model.safetensors');
        const t = await readTensor(source, header, 'w.f32');
        expect(bitsOf(t.data as Float32Array)).toEqual(bitsOf(tensors[0].data as Float32Array));
      } finally {
        await source.close();
      }
      await expect(source.read(0, 8)).rejects.toBeInstanceOf(FileReadError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ----------------------------------------------------------------------------------------------------------------
// Half-precision conversions against independent oracles

/** float16 bits → value by the IEEE 754 definition, in float64. */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const valueOfBits = (bits: number) => {
  u32[0] = bits;
  return f32[0];
};

/** Nearest float16 to x by distance in float64, ties to the even significand, overflow past 65520 to Inf. */
function f16Oracle(x: number, sortedFinite: { value: number; bits: number }[]): number {
  if (Number.isNaN(x)) return NaN;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = sortedFinite.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (sortedFinite[mid].value <= a) lo = mid;
    else hi = mid;
  }
  const below = sortedFinite[lo];
  const above = sortedFinite[hi];
  if (below.value === a) return sign | below.bits;
  const dBelow = a - below.value;
  const dAbove = above.value - a;
  const pick = dBelow < dAbove ? below : dAbove < dBelow ? above : (below.bits & 1) === 0 ? below : above;
  return sign | pick.bits;
}

/** Nearest bfloat16 by distance in float64, ties to even, values at or past max + ulp/2 to Inf. */
function bf16Oracle(bits: number): number {
  const x = valueOfBits(bits);
  if (Number.isNaN(x)) return NaN;
  const sign = bits & 0x80000000 ? 0x8000 : 0;
  const truncated = (bits >>> 16) & 0x7fff;
  const a = Math.abs(x);
  const belowValue = Math.abs(valueOfBits((truncated << 16) >>> 0));
  if (belowValue === a) return sign | truncated;
  const up = truncated + 1;
  const aboveValue = up === 0x7f80 ? 2 ** 128 : Math.abs(valueOfBits((up << 16) >>> 0));
  const dBelow = a - belowValue;
  const dAbove = aboveValue - a;
  const pick = dBelow < dAbove ? truncated : dAbove < dBelow ? up : (truncated & 1) === 0 ? truncated : up;
  return sign | pick;
}

describe('float16 / bfloat16 conversions', async () => {
  const numpyPairs = (JSON.parse(await readFile(join(FIXTURES, 'f16_rne.json'), 'utf8')) as { pairs: [number, number][] }).pairs;
  const allHalves = Uint16Array.from({ length: 65536 }, (_, i) => i);

  it('decodes all 65536 float16 values exactly (subnormals, ±0, ±Inf, NaN)', () => {
    const decoded = float16BitsToFloat32(allHalves);
    for (let h = 0; h < 65536; h++) {
      const want = f16Value(h);
      if (Number.isNaN(want)) expect(Number.isNaN(decoded[h]), `0x${h.toString(16)}`).toBe(true);
      else if (!Object.is(decoded[h], want)) expect(decoded[h], `0x${h.toString(16)}`).toBe(want);
    }
    expect(Object.is(decoded[0x8000], -0)).toBe(true);
    expect(decoded[0x0001]).toBe(2 ** -24);
    expect(decoded[0x03ff]).toBe(1023 * 2 ** -24);
    expect(decoded[0x7bff]).toBe(65504);
  });

  it('re-encodes every float16 value to the same bits, NaN payloads included', () => {
    const back = float32ToFloat16Bits(float16BitsToFloat32(allHalves));
    let mismatches = 0;
    for (let h = 0; h < 65536; h++) if (back[h] !== h) mismatches++;
    expect(mismatches).toBe(0);
  });

  it('rounds float32 → float16 as numpy does (fixture from the Python script)', () => {
    expect(numpyPairs.length).toBeGreaterThan(9000);
    let checked = 0;
    for (const [bits, half] of numpyPairs) {
      const got = f32BitsToF16Bits(bits);
      if (Number.isNaN(f16Value(half))) expect(Number.isNaN(f16Value(got)), `0x${bits.toString(16)}`).toBe(true);
      else if (got !== half) expect(`0x${got.toString(16)}`, `float32 0x${bits.toString(16)}`).toBe(`0x${half.toString(16)}`);
      checked++;
    }
    expect(checked).toBe(numpyPairs.length);
  });

  it('rounds float32 → float16 to nearest, ties to even, against a search over all float16 values', () => {
    const finite: { value: number; bits: number }[] = [];
    for (let h = 0; h < 0x7c00; h++) finite.push({ value: f16Value(h), bits: h });
    const random = rng(99);
    const samples: number[] = [];
    for (let i = 0; i < 20000; i++) samples.push(Math.floor(random() * 2 ** 32));
    // Exact midpoints between neighbouring float16 values (representable in float32), both signs.
    for (let h = 0; h < 0x7bff; h += 7) {
      f32[0] = (f16Value(h) + f16Value(h + 1)) / 2;
      samples.push(u32[0], (u32[0] | 0x80000000) >>> 0);
    }
    for (const bits of samples) {
      const want = f16Oracle(valueOfBits(bits), finite);
      const got = f32BitsToF16Bits(bits);
      if (Number.isNaN(want)) expect(Number.isNaN(f16Value(got))).toBe(true);
      else if (got !== want) expect(`0x${got.toString(16)}`, `float32 0x${bits.toString(16)}`).toBe(`0x${want.toString(16)}`);
    }
  });

  it('handles float16 edge values: ±0, subnormal ties, max, overflow, Inf, NaN', () => {
    expect(float32ToFloat16(0)).toBe(0x0000);
    expect(float32ToFloat16(-0)).toBe(0x8000);
    expect(float32ToFloat16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float32ToFloat16(2 ** -25)).toBe(0x0000); // tie between 0 and 2^-24 → even (0)
    expect(float32ToFloat16(-(2 ** -25))).toBe(0x8000);
    expect(float32ToFloat16(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 units → 2
    expect(float32ToFloat16(2 ** -25 + 2 ** -40)).toBe(0x0001);
    expect(float32ToFloat16(1e-45)).toBe(0x0000); // float32 subnormal
    expect(float32ToFloat16(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up into the normals
    expect(float32ToFloat16(65504)).toBe(0x7bff);
    expect(float32ToFloat16(65519.996)).toBe(0x7bff);
    expect(float32ToFloat16(65520)).toBe(0x7c00);
    expect(float32ToFloat16(-1e30)).toBe(0xfc00);
    expect(float32ToFloat16(Infinity)).toBe(0x7c00);
    expect(float32ToFloat16(-Infinity)).toBe(0xfc00);
    expect(Number.isNaN(f16Value(float32ToFloat16(NaN)))).toBe(true);
    expect(Number.isNaN(f16Value(f32BitsToF16Bits(0x7f800001)))).toBe(true); // payload below the kept bits stays NaN
    expect(f32BitsToF16Bits(0xffc00000) & 0x8000).toBe(0x8000);
  });

  it('decodes bfloat16 exactly and rounds float32 → bfloat16 to nearest even', () => {
    const decoded = bfloat16BitsToFloat32(allHalves);
    for (let b = 0; b < 65536; b++) {
      const want = valueOfBits((b << 16) >>> 0);
      if (Number.isNaN(want)) expect(Number.isNaN(decoded[b])).toBe(true);
      else if (!Object.is(decoded[b], want)) expect(decoded[b]).toBe(want);
    }
    // Every bfloat16 value encodes back to itself, NaNs stay NaN.
    const back = float32ToBfloat16Bits(decoded);
    for (let b = 0; b < 65536; b++) {
      if (Number.isNaN(decoded[b])) expect(Number.isNaN(valueOfBits((back[b] << 16) >>> 0))).toBe(true);
      else if (back[b] !== b) expect(back[b]).toBe(b);
    }
    const random = rng(7);
    const samples = [0x00008000, 0x00018000, 0x00000001, 0x007fffff, 0x3f808000, 0x3f818000, 0x7f7f8000, 0x7f7fffff, 0xff7f8000, 0x7f7f7fff];
    for (let i = 0; i < 20000; i++) samples.push(Math.floor(random() * 2 ** 32));
    for (const bits of samples) {
      const want = bf16Oracle(bits);
      const got = f32BitsToBf16Bits(bits);
      if (Number.isNaN(want)) expect(Number.isNaN(valueOfBits((got << 16) >>> 0))).toBe(true);
      else if (got !== want) expect(`0x${got.toString(16)}`, `float32 0x${bits.toString(16)}`).toBe(`0x${want.toString(16)}`);
    }
    expect(float32ToBfloat16(-0)).toBe(0x8000);
    expect(f32BitsToBf16Bits(0x00008000)).toBe(0x0000); // subnormal tie → even
    expect(f32BitsToBf16Bits(0x00018000)).toBe(0x0002);
    expect(f32BitsToBf16Bits(0x7f7f8000)).toBe(0x7f80); // max + ulp/2 → Inf
    expect(f32BitsToBf16Bits(0x7f7f7fff)).toBe(0x7f7f);
    expect(float32ToBfloat16(Infinity)).toBe(0x7f80);
    expect(f32BitsToBf16Bits(0x7f800001)).toBe(0x7fc0); // signalling NaN with a low payload → quiet NaN
    expect(f32BitsToBf16Bits(0xffc00000)).toBe(0xffc0);
  });
});

describe('validFile fixture builder', () => {
  it('builds a file the reader accepts (so every bad case differs from a valid one)', async () => {
    const { tensors } = await readSafetensors(bytesSource(validFile()), 'valid.safetensors');
    expect([...tensors.keys()]).toEqual(['a', 'b']);
  });
});

// keep OffsetError imported for the class hierarchy check
describe('error classes', () => {
  it('an incomplete file is an offset error; every class is a FormatError', () => {
    const e = new IncompleteFileError('f', 'x', { tensor: 't', field: 'data_offsets' });
    expect(e).toBeInstanceOf(OffsetError);
    expect(e).toBeInstanceOf(FormatError);
    expect(e.name).toBe('IncompleteFileError');
    expect(e.message).toBe('"f": x');
  });
});
