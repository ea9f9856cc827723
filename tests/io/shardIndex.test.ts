import { describe, expect, it } from 'vitest';
import { DuplicateNameError, FormatError, ShardIndexError, quoteName } from '../../src/io/errors.ts';
import { bytesSource, readSafetensorsHeader, type SafetensorsHeader } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensorsWriter.ts';
import { SHARD_INDEX_FILE, checkShardHeaders, parseShardIndex, shardNameProblem } from '../../src/io/shardIndex.ts';

const FILE = SHARD_INDEX_FILE;

function expectIndexError(
  run: () => unknown,
  errorClass: abstract new (...args: never[]) => FormatError,
  expected: { file?: string; tensor?: string; field?: string; says?: RegExp },
): FormatError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a typed error').toBeInstanceOf(errorClass);
  const error = caught as FormatError;
  const file = expected.file ?? FILE;
  expect(error.file).toBe(file);
  expect(error.message.startsWith(`${quoteName(file)}: `)).toBe(true);
  if (expected.tensor !== undefined) {
    expect(error.tensor).toBe(expected.tensor);
    expect(error.message).toContain(quoteName(expected.tensor));
  }
  if (expected.field !== undefined) {
    expect(error.field).toBe(expected.field);
    expect(error.message).toContain(expected.field);
  }
  if (expected.says) expect(error.message).toMatch(expected.says);
  return error;
}

const index = (weightMap: string, metadata = '{"total_size":24}') => `{"metadata":${metadata},"weight_map":${weightMap}}`;

describe('model.safetensors.index.json', () => {
  it('parses the hub layout: shards sorted, tensors grouped, total size', () => {
    const text = index(
      `{"lm_head.weight":"model-00002-of-00002.safetensors","model.embed_tokens.weight":"model-00001-of-00002.safetensors",` +
        `"model.norm.weight":"model-00002-of-00002.safetensors","__proto__":"model-00001-of-00002.safetensors"}`,
      '{"total_size":2200000000,"total_parameters":1100000000}',
    );
    for (const input of [text, new TextEncoder().encode(text), new TextEncoder().encode(text).buffer]) {
      const parsed = parseShardIndex(input);
      expect(parsed.file).toBe(FILE);
      expect(parsed.totalSize).toBe(2_200_000_000);
      expect(parsed.shards).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
      expect(parsed.weightMap.get('__proto__')).toBe('model-00001-of-00002.safetensors');
      expect(parsed.weightMap.size).toBe(4);
      expect(parsed.tensorsByShard.get('model-00002-of-00002.safetensors')).toEqual(['lm_head.weight', 'model.norm.weight']);
      expect(parsed.tensorsByShard.get('model-00001-of-00002.safetensors')).toEqual(['model.embed_tokens.weight', '__proto__']);
    }
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it('orders shards by name, which for hub names is their number', () => {
    const names = ['model-00010-of-00012.safetensors', 'model-00002-of-00012.safetensors', 'model-00001-of-00012.safetensors'];
    const parsed = parseShardIndex(index(`{${names.map((n, i) => `"t${i}":"${n}"`).join(',')}}`, '{}'));
    expect(parsed.shards).toEqual([names[2], names[1], names[0]]);
    expect(parsed.totalSize).toBeUndefined();
  });

  it('accepts a missing or null metadata and a total_size written as a float', () => {
    expect(parseShardIndex('{"weight_map":{"a":"m.safetensors"}}').totalSize).toBeUndefined();
    expect(parseShardIndex(index('{"a":"m.safetensors"}', 'null')).totalSize).toBeUndefined();
    expect(parseShardIndex(index('{"a":"m.safetensors"}', '{"total_size":123.0}')).totalSize).toBe(123);
  });

  const unsafeNames: [string, RegExp][] = [
    ['../model.safetensors', /path separator|'\.\.'/],
    ['..', /'\.\.'/],
    ['model..safetensors', /'\.\.'/],
    ['sub/model.safetensors', /path separator/],
    ['sub\\model.safetensors', /path separator/],
    ['/etc/passwd', /path separator/],
    ['C:\\model.safetensors', /URL or a drive path/],
    ['C:model.safetensors', /URL or a drive path/],
    ['https://evil.example/model.safetensors', /URL/],
    ['file:///etc/model.safetensors', /URL/],
    ['javascript:alert(1).safetensors', /URL/],
    ['%2e%2e%2fmodel.safetensors', /characters other than/],
    ['.hidden.safetensors', /starts with '\.'/],
    ['model.bin', /does not end in \.safetensors/],
    ['pytorch_model-00001-of-00002.bin', /does not end in \.safetensors/],
    ['', /is empty/],
    ['model\u0000.safetensors', /characters other than/],
    ['mo del.safetensors', /characters other than/],
    [`${'a'.repeat(300)}.safetensors`, /longer than 255/],
  ];

  it.each(unsafeNames)('refuses the shard name %j', (name, says) => {
    const error = expectIndexError(() => parseShardIndex(index(`{"model.layers.0.weight":${JSON.stringify(name)}}`)), ShardIndexError, {
      tensor: 'model.layers.0.weight',
      field: 'weight_map',
      says,
    });
    expect(error.message).toContain(quoteName(name));
    expect(shardNameProblem(name)).not.toBeNull();
  });

  it('accepts plain shard names', () => {
    for (const name of ['model.safetensors', 'model-00001-of-00002.safetensors', 'adapter_model.safetensors', 'w+1.safetensors']) {
      expect(shardNameProblem(name), name).toBeNull();
    }
  });

  it('refuses a tensor mapped twice', () => {
    expectIndexError(() => parseShardIndex(index('{"w":"a.safetensors","w":"b.safetensors"}')), DuplicateNameError, {
      tensor: 'w',
      field: 'weight_map',
      says: /tensor "w" is mapped twice/,
    });
    // The same name spelled with an escape is the same tensor.
    expectIndexError(() => parseShardIndex(index('{"w":"a.safetensors","\\u0077":"a.safetensors"}')), DuplicateNameError, { tensor: 'w' });
    expectIndexError(() => parseShardIndex('{"weight_map":{"a":"m.safetensors"},"weight_map":{}}'), DuplicateNameError, { field: 'weight_map' });
  });

  it('refuses shard names that are not strings', () => {
    for (const [value, says] of [
      ['1', /is the number 1, not a file name/],
      ['null', /is null/],
      ['["a.safetensors"]', /is an array/],
      ['{"file":"a.safetensors"}', /is an object/],
      ['true', /is a boolean/],
    ] as const) {
      expectIndexError(() => parseShardIndex(index(`{"w":${value}}`)), ShardIndexError, { tensor: 'w', field: 'weight_map', says });
    }
  });

  it('refuses an index that is not UTF-8, not JSON, not an object, or lacks a usable weight_map', () => {
    expectIndexError(() => parseShardIndex(new Uint8Array([0x7b, 0xff, 0x7d])), ShardIndexError, { field: 'index', says: /not valid UTF-8/ });
    expectIndexError(() => parseShardIndex('{"weight_map":'), ShardIndexError, { field: 'index', says: /not valid JSON/ });
    expectIndexError(() => parseShardIndex('[]'), ShardIndexError, { field: 'index', says: /an array, not a JSON object/ });
    expectIndexError(() => parseShardIndex('{"metadata":{}}'), ShardIndexError, { field: 'weight_map', says: /no weight_map/ });
    expectIndexError(() => parseShardIndex('{"weight_map":[]}'), ShardIndexError, { field: 'weight_map', says: /is an array, not an object/ });
    expectIndexError(() => parseShardIndex('{"weight_map":{}}'), ShardIndexError, { field: 'weight_map', says: /empty/ });
    expectIndexError(() => parseShardIndex('{"metadata":[],"weight_map":{"a":"m.safetensors"}}'), ShardIndexError, { field: 'metadata' });
    expectIndexError(() => parseShardIndex('x', 'sub/custom.index.json'), ShardIndexError, { file: 'sub/custom.index.json', field: 'index' });
  });

  it('refuses a total_size that is not a non-negative safe integer', () => {
    for (const total of ['-1', '"24"', '1.5', '1e300', '9007199254740993', '[]']) {
      expectIndexError(() => parseShardIndex(index('{"a":"m.safetensors"}', `{"total_size":${total}}`)), ShardIndexError, {
        field: 'metadata.total_size',
      });
    }
  });

  it('refuses an index over the size cap before parsing it', () => {
    const huge = new Uint8Array(64 * 1024 * 1024 + 1);
    expectIndexError(() => parseShardIndex(huge), ShardIndexError, { field: 'file size', says: /over the/ });
  });
});

describe('shard headers against the index', async () => {
  const u8 = (name: string) => ({ name, dtype: 'U8' as const, shape: [1], data: new Uint8Array([1]) });
  async function headerOf(file: string, names: string[]): Promise<SafetensorsHeader> {
    return readSafetensorsHeader(bytesSource(writeSafetensors(names.map(u8))), file);
  }
  const parsed = parseShardIndex(index('{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"}'));
  const s1 = await headerOf('s1.safetensors', ['a', 'b']);
  const s2 = await headerOf('s2.safetensors', ['c']);

  it('accepts shards that hold exactly what the index maps to them', () => {
    expect(() => checkShardHeaders(parsed, new Map([['s1.safetensors', s1], ['s2.safetensors', s2]]))).not.toThrow();
  });

  it('refuses a missing shard, an unlisted shard, a tensor in two shards, a misplaced or absent tensor', async () => {
    expectIndexError(() => checkShardHeaders(parsed, new Map([['s1.safetensors', s1]])), ShardIndexError, { field: 'weight_map', says: /shard "s2\.safetensors" named in weight_map is missing/ });
    const extra = await headerOf('s3.safetensors', ['d']);
    expectIndexError(() => checkShardHeaders(parsed, new Map([['s1.safetensors', s1], ['s2.safetensors', s2], ['s3.safetensors', extra]])), ShardIndexError, {
      says: /shard "s3\.safetensors" is not named in the index's weight_map/,
    });
    const twice = await headerOf('s2.safetensors', ['c', 'a']);
    expectIndexError(() => checkShardHeaders(parsed, new Map([['s1.safetensors', s1], ['s2.safetensors', twice]])), DuplicateNameError, {
      tensor: 'a',
      says: /tensor "a" is in two shards, "s1\.safetensors" and "s2\.safetensors"/,
    });
    const misplaced = await headerOf('s2.safetensors', ['c', 'z']);
    expectIndexError(() => checkShardHeaders(parsed, new Map([['s1.safetensors', s1], ['s2.safetensors', misplaced]])), ShardIndexError, {
      tensor: 'z',
      says: /holds tensor "z", which weight_map does not list/,
    });
    const partial = await headerOf('s1.safetensors', ['a']);
    expectIndexError(() => checkShardHeaders(parsed, new Map([['s1.safetensors', partial], ['s2.safetensors', s2]])), ShardIndexError, {
      tensor: 'b',
      says: /weight_map maps tensor "b" to shard "s1\.safetensors", which does not hold it/,
    });
  });
});
