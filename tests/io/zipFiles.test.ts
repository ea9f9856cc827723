// Zip archives: what writeZip builds, readZip and fflate's own reader read back byte for byte; archives fflate
// writes (deflated at another level, stored) read here too; ZIP64 records are understood; and every kind of bad
// archive is a ZipFormatError naming the archive and the entry or record.

import { unzipSync, zipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { crc32, looksLikeZip, readZip, writeZip, ZipFormatError } from '../../src/io/zipFiles.ts';

const text = (s: string) => new TextEncoder().encode(s);

/** Deterministic pseudo-random bytes (they do not compress). */
function noise(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

const FILES: [string, Uint8Array][] = [
  ['adapter_config.json', text(`{"peft_type": "LORA", "r": 8, "note": "${'repeat '.repeat(200)}ünïcode"}\n`)],
  ['adapter_model.safetensors', noise(10_000)],
  ['folder/nested/empty.txt', new Uint8Array(0)],
  ['ünïcode name.json', text('{}')],
];

function expectZipError(run: () => unknown, message: RegExp, field?: string): void {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ZipFormatError);
    const zipError = error as ZipFormatError;
    expect(zipError.message).toMatch(message);
    expect(zipError.file).toBe('test.zip');
    if (field !== undefined) expect(zipError.field).toBe(field);
    return;
  }
  throw new Error(`expected a ZipFormatError matching ${message}`);
}

/** The offset of the first central directory entry (from the end record of an archive without a comment). */
function centralOffset(zip: Uint8Array): number {
  return new DataView(zip.buffer, zip.byteOffset).getUint32(zip.byteLength - 22 + 16, true);
}

describe('writeZip and readZip', () => {
  it('round-trips names and bytes exactly, and fflate reads the same files', () => {
    const zip = writeZip(FILES, 'test.zip');
    expect(looksLikeZip(zip)).toBe(true);
    const back = readZip(zip, 'test.zip');
    expect([...back.keys()]).toEqual(FILES.map(([name]) => name));
    for (const [name, bytes] of FILES) expect(Buffer.from(back.get(name)!).equals(Buffer.from(bytes))).toBe(true);
    const theirs = unzipSync(zip);
    for (const [name, bytes] of FILES) expect(Buffer.from(theirs[name]).equals(Buffer.from(bytes))).toBe(true);
    // The JSON is deflated (it repeats), the weights are stored (1 local + 1 central header each, plus the data).
    const json = FILES[0][1].byteLength;
    expect(zip.byteLength).toBeLessThan(json + 10_000 + 1000);
  });

  it('reads archives fflate writes, deflated at its highest level or stored', () => {
    for (const level of [9, 0] as const) {
      const zip = zipSync(Object.fromEntries(FILES.map(([name, bytes]) => [name, [bytes, { level }]])));
      const back = readZip(zip, 'test.zip');
      for (const [name, bytes] of FILES) expect(Buffer.from(back.get(name)!).equals(Buffer.from(bytes))).toBe(true);
    }
  });

  it('leaves folder entries out and reads an empty archive as no files', () => {
    const zip = zipSync({ 'dir/': new Uint8Array(0), 'dir/a.json': text('[]') });
    expect([...readZip(zip, 'test.zip').keys()]).toEqual(['dir/a.json']);
    expect(readZip(zipSync({}), 'test.zip').size).toBe(0);
  });

  it('computes the standard CRC-32', () => {
    expect(crc32(text('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  it('refuses names that are not plain relative paths, and duplicates, when writing', () => {
    expectZipError(() => writeZip([['../evil.json', text('{}')]], 'test.zip'), /"\.\.\/evil\.json" has a "\.\." segment/, '../evil.json');
    expectZipError(() => writeZip([['/abs.json', text('{}')]], 'test.zip'), /absolute path/);
    expectZipError(() => writeZip([['a.json', text('1')], ['a.json', text('2')]], 'test.zip'), /"a\.json" is given twice/, 'a.json');
  });
});

describe('readZip refuses bad archives by name', () => {
  it('a text file, an empty file and a truncated archive', () => {
    expectZipError(() => readZip(text('this is not a zip archive, just some text that is long enough'), 'test.zip'), /not a zip archive \(no end of central directory/, 'end of central directory');
    expectZipError(() => readZip(new Uint8Array(0), 'test.zip'), /not a zip archive \(0 bytes/);
    const zip = writeZip(FILES, 'test.zip');
    expectZipError(() => readZip(zip.subarray(0, zip.byteLength - 10), 'test.zip'), /not a zip archive/);
    // Cut inside the data but with a valid end record moved along: the directory points past the end.
    const cut = new Uint8Array(zip.byteLength - 5000);
    cut.set(zip.subarray(0, 2000));
    cut.set(zip.subarray(zip.byteLength - (cut.byteLength - 2000)), 2000);
    expectZipError(() => readZip(cut, 'test.zip'), /central directory|local header|runs past/);
  });

  it('a damaged entry: its CRC-32 does not match', () => {
    const zip = writeZip([['adapter_model.safetensors', noise(4000)]], 'test.zip');
    const damaged = zip.slice();
    damaged[30 + 'adapter_model.safetensors'.length + 1000] ^= 0xff; // a byte of the stored data
    expectZipError(() => readZip(damaged, 'test.zip'), /entry "adapter_model\.safetensors" is damaged: its CRC-32 is 0x[0-9a-f]{8}, the archive says 0x[0-9a-f]{8}/, 'adapter_model.safetensors');
  });

  it('a deflate stream that is corrupt', () => {
    const zip = writeZip([['a.json', text('{"x": "'.concat('y'.repeat(5000), '"}'))]], 'test.zip');
    const damaged = zip.slice();
    for (let i = 30 + 'a.json'.length + 2; i < 30 + 'a.json'.length + 20; i++) damaged[i] = 0xff;
    expectZipError(() => readZip(damaged, 'test.zip'), /entry "a\.json" (cannot be inflated|unpacks to|is damaged)/, 'a.json');
  });

  it('encryption, an unknown method, an unsafe or repeated name', () => {
    const zip = writeZip([['a.json', text('{}')]], 'test.zip');
    const at = centralOffset(zip);
    const encrypted = zip.slice();
    encrypted[at + 8] |= 1;
    expectZipError(() => readZip(encrypted, 'test.zip'), /"a\.json" is encrypted/, 'a.json');
    const lzma = zip.slice();
    new DataView(lzma.buffer).setUint16(at + 10, 14, true);
    expectZipError(() => readZip(lzma, 'test.zip'), /"a\.json" uses compression method 14/, 'a.json');

    const unsafe = zipSync({ '../a.json': text('{}') });
    expectZipError(() => readZip(unsafe, 'test.zip'), /entry name "\.\.\/a\.json" has a "\.\." segment; refused/, '../a.json');
    // The same name twice: rename the second entry of a two-entry archive to the first's name in its central header.
    const two = zipSync({ 'a.json': [text('{}'), { level: 0 }], 'b.json': [text('{}'), { level: 0 }] });
    const second = centralOffset(two) + 46 + 'a.json'.length;
    two[second + 46] = 'a'.charCodeAt(0);
    expectZipError(() => readZip(two, 'test.zip'), /holds "a\.json" twice/, 'a.json');
  });

  it('an archive that unpacks to more than the cap, before inflating anything', () => {
    const zip = writeZip([['big.bin', new Uint8Array(3000)], ['more.bin', new Uint8Array(3000)]], 'test.zip');
    expectZipError(() => readZip(zip, 'test.zip', { maxBytes: 5000 }), /unpacks to more than 5000 bytes \(at entry "more\.bin"\)/, 'more.bin');
    expect(readZip(zip, 'test.zip', { maxBytes: 6000 }).size).toBe(2);
  });

  it('a multi-disk archive', () => {
    const zip = writeZip([['a.json', text('{}')]], 'test.zip');
    const split = zip.slice();
    new DataView(split.buffer).setUint16(split.byteLength - 22 + 4, 1, true);
    expectZipError(() => readZip(split, 'test.zip'), /multi-disk/);
  });
});

it('reads ZIP64 sizes, offsets and end records', () => {
  // One stored file, written by hand in the ZIP64 layout: the plain fields saturated, the real values in the
  // ZIP64 extra field and the ZIP64 end of central directory record.
  const name = text('adapter.safetensors');
  const data = noise(777, 7);
  const crc = crc32(data);
  const parts: Uint8Array[] = [];
  const record = (size: number, fill: (view: DataView) => void) => {
    const bytes = new Uint8Array(size);
    fill(new DataView(bytes.buffer));
    parts.push(bytes);
    return bytes;
  };
  record(30, (v) => {
    v.setUint32(0, 0x04034b50, true);
    v.setUint16(4, 45, true);
    v.setUint32(14, crc, true);
    v.setUint32(18, data.length, true);
    v.setUint32(22, data.length, true);
    v.setUint16(26, name.length, true);
  });
  parts.push(name, data);
  const central = 30 + name.length + data.length;
  record(46, (v) => {
    v.setUint32(0, 0x02014b50, true);
    v.setUint16(4, 45, true);
    v.setUint16(6, 45, true);
    v.setUint32(16, crc, true);
    v.setUint32(20, 0xffffffff, true);
    v.setUint32(24, 0xffffffff, true);
    v.setUint16(28, name.length, true);
    v.setUint16(30, 4 + 24, true);
    v.setUint32(42, 0xffffffff, true);
  });
  parts.push(name);
  record(28, (v) => {
    v.setUint16(0, 1, true);
    v.setUint16(2, 24, true);
    v.setBigUint64(4, BigInt(data.length), true); // uncompressed
    v.setBigUint64(12, BigInt(data.length), true); // compressed
    v.setBigUint64(20, 0n, true); // local header offset
  });
  const directorySize = 46 + name.length + 28;
  const end64 = central + directorySize;
  record(56, (v) => {
    v.setUint32(0, 0x06064b50, true);
    v.setBigUint64(4, 44n, true);
    v.setBigUint64(24, 1n, true);
    v.setBigUint64(32, 1n, true);
    v.setBigUint64(40, BigInt(directorySize), true);
    v.setBigUint64(48, BigInt(central), true);
  });
  record(20, (v) => {
    v.setUint32(0, 0x07064b50, true);
    v.setBigUint64(8, BigInt(end64), true);
    v.setUint32(16, 1, true);
  });
  record(22, (v) => {
    v.setUint32(0, 0x06054b50, true);
    v.setUint16(8, 0xffff, true);
    v.setUint16(10, 0xffff, true);
    v.setUint32(12, 0xffffffff, true);
    v.setUint32(16, 0xffffffff, true);
  });
  const zip = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    zip.set(part, at);
    at += part.length;
  }
  const files = readZip(zip, 'test.zip');
  expect([...files.keys()]).toEqual(['adapter.safetensors']);
  expect(Buffer.from(files.get('adapter.safetensors')!).equals(Buffer.from(data))).toBe(true);
});
