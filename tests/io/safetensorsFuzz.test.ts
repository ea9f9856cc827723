// Byte-mutation fuzzing of the safetensors reader and the shard-index parser (seeded, so failures reproduce):
// nothing may throw except our typed FormatErrors (naming the file), no read may reach past the end of the source,
// every accepted file must satisfy the layout invariants, and no case may take long. Plus a property test of the
// writer: random valid tensors round-trip bit for bit.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FormatError, quoteName } from '../../src/io/errors.ts';
import { DTYPE_BYTES, bytesSource, readSafetensorsHeader, readTensor, readTensorBytes, type ByteSource, type SafetensorsDtype } from '../../src/io/safetensors.ts';
import { writeSafetensors, type SafetensorsTensorInput } from '../../src/io/safetensorsWriter.ts';
import { parseShardIndex } from '../../src/io/shardIndex.ts';
import { rng } from '../helpers/numeric.ts';
import { badFileCases, validFile } from '../fixtures/safetensors/badFiles.ts';

const FILE = 'fuzz.safetensors';
const encoder = new TextEncoder();

type Random = () => number;
const int = (random: Random, n: number) => Math.floor(random() * n);
const pick = <T>(random: Random, items: readonly T[]): T => items[int(random, items.length)];

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

function withLength(n: bigint): Uint8Array {
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, n, true);
  return prefix;
}

/** header bytes and data, when the length prefix is plausible. */
function split(bytes: Uint8Array): { header: Uint8Array; data: Uint8Array } | null {
  if (bytes.byteLength < 8) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(bytes.byteLength - 8)) return null;
  return { header: bytes.subarray(8, 8 + Number(n)), data: bytes.subarray(8 + Number(n)) };
}

/** Rebuild a file around a new header, fixing the length prefix (and sometimes re-padding to 8). */
function join(header: Uint8Array, data: Uint8Array, random: Random): Uint8Array {
  let h = header;
  if (random() < 0.5) {
    h = new Uint8Array(Math.ceil(header.byteLength / 8) * 8).fill(0x20);
    h.set(header);
  }
  return concat(withLength(BigInt(h.byteLength)), h, data);
}

const NUMBERS = ['-1', '0', '1', '2', '3', '4', '8', '1.5', '2.0', '1e3', '9007199254740991', '9007199254740992', '18446744073709551615', '-0', '4294967296', '00', '', '1e400', '"4"', 'null', '[]'];
const VALUES = ['"F64"', '"F16"', '"BF16"', '"U8"', '"F32"', '"I32"', '"__proto__"', '"__metadata__"', '"constructor"', '""', '"\\ud800"', '"dtype"', '"shape"', '"data_offsets"', '{}', '[]', 'null', '1', 'true', '{"a":"b"}', '[0,0]'];
const SIGNIFICANT = '{}[]":,-.0123456789eE \\tnul'.split('');

/** Spans of ASCII digit runs (with an optional minus) and of string literals in the header bytes. */
function tokens(header: Uint8Array): { numbers: [number, number][]; strings: [number, number][] } {
  const numbers: [number, number][] = [];
  const strings: [number, number][] = [];
  let i = 0;
  while (i < header.length) {
    const c = header[i];
    if (c === 0x22) {
      let j = i + 1;
      while (j < header.length && header[j] !== 0x22) j += header[j] === 0x5c ? 2 : 1;
      strings.push([i, Math.min(j + 1, header.length)]);
      i = j + 1;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < header.length && header[j] >= 0x30 && header[j] <= 0x39) j++;
      numbers.push([i, j]);
      i = j;
    } else i++;
  }
  return { numbers, strings };
}

function replaceSpan(header: Uint8Array, span: [number, number], text: string): Uint8Array {
  return concat(header.subarray(0, span[0]), encoder.encode(text), header.subarray(span[1]));
}

/** One random mutation; some keep the length prefix consistent so that deeper checks are reached. */
function mutate(bytes: Uint8Array, random: Random): Uint8Array {
  const out = bytes.slice();
  const parts = split(bytes);
  const kind = int(random, 12);
  switch (kind) {
    case 0: // random byte, biased to the header
      if (out.length) out[parts && random() < 0.7 ? 8 + int(random, Math.max(1, parts.header.length)) : int(random, out.length)] = int(random, 256);
      return out;
    case 1: // one bit
      if (out.length) out[int(random, out.length)] ^= 1 << int(random, 8);
      return out;
    case 2: // truncate
      return out.subarray(0, int(random, out.length + 1));
    case 3: // extend
      return concat(out, Uint8Array.from({ length: 1 + int(random, 64) }, () => int(random, 256)));
    case 4: { // header length prefix
      if (out.length < 8) return out;
      const view = new DataView(out.buffer);
      const current = view.getBigUint64(0, true);
      const choices = [
        () => current + BigInt(int(random, 17) - 8),
        () => BigInt(int(random, 2 ** 32)),
        () => BigInt(int(random, 2 ** 32)) << 32n,
        () => 2n ** 64n - 1n - BigInt(int(random, 4)),
        () => 0n,
        () => 100_000_000n + BigInt(int(random, 3) - 1),
      ];
      let next = pick(random, choices)();
      if (next < 0n) next = 0n;
      view.setBigUint64(0, next & (2n ** 64n - 1n), true);
      return out;
    }
    case 5: // a JSON-significant character over a header byte, prefix unchanged
      if (parts && parts.header.length) out[8 + int(random, parts.header.length)] = pick(random, SIGNIFICANT).charCodeAt(0);
      return out;
    case 6: { // insert a character into the header, prefix fixed
      if (!parts) return out;
      const at = int(random, parts.header.length + 1);
      return join(concat(parts.header.subarray(0, at), encoder.encode(pick(random, SIGNIFICANT)), parts.header.subarray(at)), parts.data, random);
    }
    case 7: { // delete a run of header bytes, prefix fixed
      if (!parts || !parts.header.length) return out;
      const at = int(random, parts.header.length);
      const end = Math.min(parts.header.length, at + 1 + int(random, 8));
      return join(concat(parts.header.subarray(0, at), parts.header.subarray(end)), parts.data, random);
    }
    case 8: { // replace a number (shape entry, offset) with a nasty literal, prefix fixed
      if (!parts) return out;
      const { numbers } = tokens(parts.header);
      if (!numbers.length) return out;
      return join(replaceSpan(parts.header, pick(random, numbers), pick(random, NUMBERS)), parts.data, random);
    }
    case 9: { // replace a string (name, dtype, key) or a number with another value, prefix fixed
      if (!parts) return out;
      const { numbers, strings } = tokens(parts.header);
      const spans = [...strings, ...numbers];
      if (!spans.length) return out;
      return join(replaceSpan(parts.header, pick(random, spans), pick(random, VALUES)), parts.data, random);
    }
    case 10: { // duplicate a `"name":{...}` entry (or any string key) into the header, prefix fixed
      if (!parts) return out;
      const text = new TextDecoder().decode(parts.header);
      const match = [...text.matchAll(/"[^"]*":\{[^{}]*\}/g)];
      if (!match.length) return out;
      const m = pick(random, match);
      const at = text.indexOf('{') + 1;
      const newText = `${text.slice(0, at)}${m[0]},${text.slice(at)}`;
      return join(encoder.encode(newText), parts.data, random);
    }
    default: { // grow or shrink the data section by a few bytes
      if (!parts) return out;
      const delta = int(random, 9) - 4;
      const data = delta >= 0 ? concat(parts.data, new Uint8Array(delta)) : parts.data.subarray(0, Math.max(0, parts.data.length + delta));
      return concat(withLength(BigInt(parts.header.length)), parts.header, data);
    }
  }
}

// A stall shows up as the test's timeout; no wall-clock assertions (speed belongs in benchmarks).
interface Outcome {
  result: string;
}

/** Read header and every tensor; any non-FormatError escapes to fail the test. */
async function readAll(bytes: Uint8Array): Promise<Outcome> {
  const inner = bytesSource(bytes);
  const badReads: string[] = [];
  const source: ByteSource = {
    size: inner.size,
    read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > inner.size) badReads.push(`${offset}+${length}`);
      return inner.read(offset, length);
    },
  };
  let result: string;
  try {
    const header = await readSafetensorsHeader(source, FILE);
    // Invariants of an accepted file.
    expect(header.fileSize).toBe(bytes.byteLength);
    let expected = 0;
    for (const t of header.tensors) {
      expect(t.dataOffsets[0]).toBe(expected);
      expect(t.byteLength).toBe(t.elementCount * DTYPE_BYTES[t.dtype]);
      expect(t.shape.reduce((p, d) => p * d, 1)).toBe(t.elementCount);
      expected = t.dataOffsets[1];
    }
    expect(expected).toBe(header.dataLength);
    for (const t of header.tensors) {
      const loaded = await readTensor(source, header, t.name);
      expect(loaded.data.length).toBe(t.elementCount);
    }
    result = 'ok';
  } catch (error) {
    if (!(error instanceof FormatError)) throw error;
    expect(error.file).toBe(FILE);
    expect(error.message.startsWith(`${quoteName(FILE)}: `)).toBe(true);
    if (error.tensor !== undefined) expect(error.message).toContain(quoteName(error.tensor));
    result = error.name;
  }
  expect(badReads).toEqual([]);
  return { result };
}

function writerFile(): Uint8Array {
  return writeSafetensors(
    [
      { name: 'a.f32', dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
      { name: 'b.f16', dtype: 'F16', shape: [4], data: Float32Array.from([0.5, -1, 65504, 1e-7]) },
      { name: 'c.bf16', dtype: 'BF16', shape: [2, 1], data: Float32Array.from([3.5, -0]) },
      { name: 'd.u8', dtype: 'U8', shape: [3], data: Uint8Array.from([1, 2, 3]) },
      { name: 'e', dtype: 'F32', shape: [], data: Float32Array.from([9]) },
    ],
    { format: 'pt' },
  );
}

describe('safetensors reader under byte mutation', async () => {
  const reference = new Uint8Array(await readFile(fileURLToPath(new URL('../fixtures/safetensors/reference.safetensors', import.meta.url))));
  const seeds = [reference, writerFile(), validFile(), ...badFileCases().map((c) => c.bytes)];

  it('throws nothing but typed errors and reads nothing past the end (5000 mutants)', async () => {
    const random = rng(20240611);
    const counts = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const base = i % 3 === 0 ? pick(random, seeds) : pick(random, seeds.slice(0, 3));
      let bytes = base;
      const rounds = 1 + int(random, 3);
      for (let r = 0; r < rounds; r++) bytes = mutate(bytes, random);
      let outcome: Outcome;
      try {
        outcome = await readAll(bytes);
      } catch (error) {
        throw new Error(`mutant ${i} (${bytes.byteLength} bytes, base ${seeds.indexOf(base)}): ${String(error)}`, { cause: error });
      }
      counts.set(outcome.result, (counts.get(outcome.result) ?? 0) + 1);
    }
    // The mutants reach deep into validation: accepted files and most error classes all occur.
    const seen = [...counts.keys()].sort();
    for (const name of [
      'ok',
      'FileTooSmallError',
      'HeaderLengthError',
      'HeaderParseError',
      'UnsupportedDtypeError',
      'TensorShapeError',
      'OffsetError',
      'IncompleteFileError',
      'TrailingDataError',
      'TensorSizeError',
      'DuplicateNameError',
      'MetadataError',
    ]) {
      expect(seen, `outcomes: ${JSON.stringify(Object.fromEntries(counts))}`).toContain(name);
    }
  });

  it('never stalls on a maximal hostile header (deep nesting, huge numbers, long names)', async () => {
    const deep = `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`;
    const longName = `{"${'n'.repeat(1_000_000)}":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}`;
    const bigNumber = `{"a":{"dtype":"F32","shape":[${'9'.repeat(100_000)}],"data_offsets":[0,4]}}`;
    const manyKeys = `{${Array.from({ length: 50_000 }, (_, i) => `"t${i}":{"dtype":"U8","shape":[1],"data_offsets":[${i},${i + 1}]}`).join(',')},"t7":{}}`;
    for (const text of [deep, longName, bigNumber, manyKeys]) {
      const header = encoder.encode(text);
      const bytes = concat(withLength(BigInt(header.byteLength)), header, new Uint8Array(8));
      const outcome = await readAll(bytes);
      expect(outcome.result).not.toBe('ok');
    }
  });
});

describe('shard index parser under mutation', () => {
  const valid =
    '{"metadata":{"total_size":1024},"weight_map":{"lm_head.weight":"model-00002-of-00002.safetensors",' +
    '"model.embed_tokens.weight":"model-00001-of-00002.safetensors","model.norm.weight":"model-00002-of-00002.safetensors"}}';
  const pieces = ['..', '/', '\\', 'https://x/', ':', '"', '{', '}', '[', ']', ',', '1', '-1', 'null', '"a":"b"', '\\u0000', '%2f', '\u00e9', '\ud800'];

  it('throws nothing but typed errors on 3000 mutated indexes', () => {
    const random = rng(77);
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      let text = valid;
      for (let r = 1 + int(random, 3); r > 0; r--) {
        const at = int(random, text.length + 1);
        const op = int(random, 4);
        const piece = pick(random, pieces);
        if (op === 3) {
          // map a tensor a second time (maybe to another shard) at the start of weight_map
          const key = text.indexOf('"weight_map":{');
          if (key >= 0) {
            const at2 = key + '"weight_map":{'.length;
            const name = pick(random, ['lm_head.weight', 'model.norm.weight', 'new.weight']);
            text = `${text.slice(0, at2)}"${name}":"model-00001-of-00002.safetensors",${text.slice(at2)}`;
          }
        } else if (op === 0) text = text.slice(0, at) + piece + text.slice(at);
        else if (op === 1) text = text.slice(0, at) + text.slice(at + 1 + int(random, 6));
        else text = text.slice(0, at) + piece + text.slice(at + piece.length);
      }
      const input = random() < 0.5 ? text : encoder.encode(text);
      let result = 'ok';
      try {
        const parsed = parseShardIndex(input, 'fuzz.index.json');
        for (const shard of parsed.shards) expect(shard).toMatch(/^[A-Za-z0-9_+-][A-Za-z0-9._+-]*\.safetensors$/);
        for (const shard of parsed.shards) expect(shard.includes('..')).toBe(false);
      } catch (error) {
        if (!(error instanceof FormatError)) throw new Error(`mutant ${i} ${JSON.stringify(text)}: ${String(error)}`, { cause: error });
        expect(error.file).toBe('fuzz.index.json');
        result = error.name;
      }
      counts.set(result, (counts.get(result) ?? 0) + 1);
    }
    expect([...counts.keys()]).toEqual(expect.arrayContaining(['ok', 'ShardIndexError', 'DuplicateNameError']));
  });
});

describe('writer property test', () => {
  it('round-trips 300 random files bit for bit, deterministically', async () => {
    const random = rng(4242);
    const dtypes: SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'U8'];
    const nameChars = ['a', 'b', '.', '_', '0', 'é', '权', '😀', '"', '\\', '\n', ' ', '/', '\u0000'];
    for (let iteration = 0; iteration < 300; iteration++) {
      const tensors: SafetensorsTensorInput[] = [];
      const names = new Set<string>();
      const count = int(random, 6);
      for (let t = 0; t < count; t++) {
        let name = '';
        for (let k = int(random, 6); k > 0; k--) name += pick(random, nameChars);
        if (names.has(name) || name === '__metadata__') continue;
        names.add(name);
        const dtype = pick(random, dtypes);
        const shape = Array.from({ length: int(random, 4) }, () => int(random, 4));
        const n = shape.reduce((p, d) => p * d, 1);
        const bits = Uint32Array.from({ length: n }, () => Math.floor(random() * 2 ** 32));
        const data =
          dtype === 'U8'
            ? Uint8Array.from(bits, (b) => b & 0xff)
            : dtype === 'F32'
              ? new Float32Array(bits.buffer)
              : random() < 0.5
                ? Uint16Array.from(bits, (b) => b & 0xffff)
                : new Float32Array(bits.buffer);
        tensors.push({ name, dtype, shape, data });
      }
      const metadata: Record<string, string> = {};
      for (let k = int(random, 3); k > 0; k--) metadata[`k${k}${pick(random, nameChars)}`] = pick(random, nameChars).repeat(int(random, 4));
      const bytes = writeSafetensors(tensors, metadata);
      expect(writeSafetensors(tensors, metadata)).toEqual(bytes);
      expect(new DataView(bytes.buffer).getUint32(0, true) % 8).toBe(0);
      const source = bytesSource(bytes);
      const header = await readSafetensorsHeader(source, FILE);
      expect(header.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
      expect(Object.fromEntries(header.metadata)).toEqual(metadata);
      for (const t of tensors) {
        const raw = await readTensorBytes(source, header, t.name);
        // Expected stored bytes: U8/F32 as given; F16/BF16 from Uint16Array as given.
        if (!(t.data instanceof Float32Array && t.dtype !== 'F32')) {
          expect(raw).toEqual(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        }
        const loaded = await readTensor(source, header, t.name);
        expect(loaded.shape).toEqual(t.shape);
        expect(loaded.data.length).toBe(t.shape.reduce((p, d) => p * d, 1));
      }
    }
  });
});
