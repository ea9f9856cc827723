// Zip archives of named files, for downloads (an adapter's two files, a merged model's folder) and for adapter
// files picked by the user. Writing uses fflate's zipSync (text files deflated, weights stored: f32 values do
// not compress enough to be worth the time). Reading is done here, over the central directory, so that every
// problem becomes a ZipFormatError naming the archive and the entry, sizes are checked before anything is
// inflated (no zip bombs), names are checked as relative paths (no `..`, no absolute paths), and every entry's
// CRC-32 is verified (fflate's unzipSync checks none); fflate only inflates.
//
// Supported: stored (method 0) and deflated (method 8) entries, UTF-8 or ASCII names, ZIP64 sizes and offsets.
// Refused: encryption, other methods, multi-disk archives, duplicate names. Written archives are plain ZIP
// (fflate writes no ZIP64), so an archive over 4 GiB is refused with a clear error before anything is built.

import { inflateSync, zipSync, type Zippable } from 'fflate';
import { FormatError, quoteName } from './errors.ts';
import { fileNameProblem } from './sources/types.ts';

/** A zip archive that is malformed, uses something this reader does not support, or is too large. */
export class ZipFormatError extends FormatError {}

/** Largest value of a plain (non-ZIP64) size or offset field. */
const ZIP32_LIMIT = 0xffffffff;
/** Default cap on the sum of the entries' sizes when reading (picked adapter files are far smaller). */
export const DEFAULT_MAX_UNZIPPED_BYTES = 2 * 1024 ** 3;

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_END = 0x06054b50;
const SIG_END64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const END_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;

/** Files deflated when written; everything else (weights, ONNX) is stored. */
const DEFLATED = /\.(json|txt|jinja|md|model)$/i;

/** Whether `bytes` starts like a zip archive (a local file header, or the end record of an empty archive). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  if (bytes.byteLength < 4 || bytes[0] !== 0x50 || bytes[1] !== 0x4b) return false;
  return (bytes[2] === 3 && bytes[3] === 4) || (bytes[2] === 5 && bytes[3] === 6);
}

/**
 * A zip archive holding `files` (name → bytes) in the given order. Names must be plain relative paths
 * (`folder/file.json`). Refused when the archive would pass the 4 GiB a plain zip can address.
 */
export function writeZip(files: Iterable<readonly [string, Uint8Array]>, archiveName = 'the archive'): Uint8Array {
  const entries: Zippable = {};
  let total = END_SIZE;
  for (const [name, data] of files) {
    const problem = fileNameProblem(name);
    if (problem !== null) throw new ZipFormatError(archiveName, `entry name ${quoteName(String(name))} ${problem}`, { field: name });
    if (Object.hasOwn(entries, name)) throw new ZipFormatError(archiveName, `entry ${quoteName(name)} is given twice`, { field: name });
    const nameBytes = new TextEncoder().encode(name).byteLength;
    total += LOCAL_SIZE + CENTRAL_SIZE + 2 * nameBytes + data.byteLength;
    if (data.byteLength > ZIP32_LIMIT || total > ZIP32_LIMIT) {
      throw new ZipFormatError(
        archiveName,
        `would be larger than 4 GiB (entry ${quoteName(name)} brings it to ${total} bytes), more than a zip without ZIP64 holds`,
        { field: name },
      );
    }
    entries[name] = [data, { level: DEFLATED.test(name) ? 6 : 0 }];
  }
  return zipSync(entries, { mtime: new Date() });
}

export interface ReadZipOptions {
  /** Cap on the sum of the entries' uncompressed sizes (default 2 GiB), checked before inflating anything. */
  maxBytes?: number;
}

interface CentralEntry {
  name: string;
  flags: number;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

/**
 * The files of a zip archive, name → bytes, in archive order. Folder entries (names ending in `/`) are left
 * out; every other problem is a ZipFormatError naming `archiveName` and, as `field`, the entry or record.
 */
export function readZip(bytes: Uint8Array, archiveName: string, options: ReadZipOptions = {}): Map<string, Uint8Array> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_UNZIPPED_BYTES;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (detail: string, field: string): never => {
    throw new ZipFormatError(archiveName, detail, { field });
  };
  const { count, directoryOffset, directorySize } = readEnd(view, fail);
  if (directoryOffset + directorySize > bytes.byteLength) fail('is cut short: its central directory runs past the end of the file', 'central directory');

  const entries: CentralEntry[] = [];
  let at = directoryOffset;
  let total = 0;
  for (let index = 0; index < count; index++) {
    if (at + CENTRAL_SIZE > bytes.byteLength || view.getUint32(at, true) !== SIG_CENTRAL) fail(`central directory entry ${index + 1} of ${count} is damaged`, 'central directory');
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    const end = at + CENTRAL_SIZE + nameLength + extraLength + commentLength;
    if (end > bytes.byteLength) fail(`central directory entry ${index + 1} of ${count} runs past the end of the file`, 'central directory');
    const flags = view.getUint16(at + 8, true);
    const name = decodeName(bytes.subarray(at + CENTRAL_SIZE, at + CENTRAL_SIZE + nameLength), (flags & 0x800) !== 0);
    const entry: CentralEntry = {
      name,
      flags,
      method: view.getUint16(at + 10, true),
      crc: view.getUint32(at + 16, true),
      compressedSize: view.getUint32(at + 20, true),
      size: view.getUint32(at + 24, true),
      localOffset: view.getUint32(at + 42, true),
    };
    readZip64Extra(view, at + CENTRAL_SIZE + nameLength, extraLength, entry, fail);
    at = end;
    if (name.endsWith('/')) continue; // a folder
    const problem = fileNameProblem(name);
    if (problem !== null) fail(`entry name ${quoteName(name)} ${problem}; refused`, name);
    if (entries.some((other) => other.name === name)) fail(`holds ${quoteName(name)} twice`, name);
    if ((flags & 1) !== 0) fail(`entry ${quoteName(name)} is encrypted; encrypted archives are not supported`, name);
    if (entry.method !== 0 && entry.method !== 8) fail(`entry ${quoteName(name)} uses compression method ${entry.method}; only stored (0) and deflate (8) are supported`, name);
    if (entry.method === 0 && entry.compressedSize !== entry.size) fail(`entry ${quoteName(name)} is stored but its sizes differ (${entry.compressedSize} and ${entry.size})`, name);
    total += entry.size;
    if (total > maxBytes) fail(`unpacks to more than ${maxBytes} bytes (at entry ${quoteName(name)}); refused`, name);
    entries.push(entry);
  }

  const files = new Map<string, Uint8Array>();
  for (const entry of entries) files.set(entry.name, readEntry(bytes, view, entry, fail));
  return files;
}

/** The end of central directory record (and its ZIP64 form when the plain one is saturated). */
function readEnd(view: DataView, fail: (detail: string, field: string) => never): { count: number; directoryOffset: number; directorySize: number } {
  const length = view.byteLength;
  if (length < END_SIZE) fail(`is not a zip archive (${length} bytes, shorter than the smallest archive)`, 'end of central directory');
  let end = -1;
  // The record is followed by a comment of at most 65535 bytes.
  for (let at = length - END_SIZE; at >= Math.max(0, length - END_SIZE - 0xffff); at--) {
    if (view.getUint32(at, true) === SIG_END && at + END_SIZE + view.getUint16(at + 20, true) === length) {
      end = at;
      break;
    }
  }
  if (end < 0) fail('is not a zip archive (no end of central directory record; the file may be cut short)', 'end of central directory');
  if (view.getUint16(end + 4, true) !== 0 || view.getUint16(end + 6, true) !== 0) fail('is part of a multi-disk archive, which is not supported', 'end of central directory');
  let count = view.getUint16(end + 10, true);
  let directorySize = view.getUint32(end + 12, true);
  let directoryOffset = view.getUint32(end + 16, true);
  if (count === 0xffff || directorySize === ZIP32_LIMIT || directoryOffset === ZIP32_LIMIT) {
    const locator = end - 20;
    if (locator < 0 || view.getUint32(locator, true) !== SIG_LOCATOR64) fail('has saturated size fields but no ZIP64 locator', 'end of central directory');
    const end64 = safeNumber(view.getBigUint64(locator + 8, true));
    if (end64 + 56 > locator || view.getUint32(end64, true) !== SIG_END64) fail('has a damaged ZIP64 end of central directory record', 'end of central directory');
    count = safeNumber(view.getBigUint64(end64 + 32, true));
    directorySize = safeNumber(view.getBigUint64(end64 + 40, true));
    directoryOffset = safeNumber(view.getBigUint64(end64 + 48, true));
  }
  return { count, directoryOffset, directorySize };
}

/** The ZIP64 extended information field (id 1): the 64-bit values of the fields saturated at 0xFFFFFFFF. */
function readZip64Extra(view: DataView, start: number, length: number, entry: CentralEntry, fail: (detail: string, field: string) => never): void {
  const needed = [entry.size, entry.compressedSize, entry.localOffset].filter((value) => value === ZIP32_LIMIT).length;
  if (needed === 0) return;
  for (let at = start; at + 4 <= start + length; ) {
    const id = view.getUint16(at, true);
    const size = view.getUint16(at + 2, true);
    if (id === 1) {
      if (size < needed * 8) break;
      let field = at + 4;
      const next = () => {
        const value = safeNumber(view.getBigUint64(field, true));
        field += 8;
        return value;
      };
      if (entry.size === ZIP32_LIMIT) entry.size = next();
      if (entry.compressedSize === ZIP32_LIMIT) entry.compressedSize = next();
      if (entry.localOffset === ZIP32_LIMIT) entry.localOffset = next();
      return;
    }
    at += 4 + size;
  }
  fail(`entry ${quoteName(entry.name)} has saturated size fields but no ZIP64 extra field`, entry.name);
}

/** One entry's bytes: located through its local header, inflated when deflated, its size and CRC-32 checked. */
function readEntry(bytes: Uint8Array, view: DataView, entry: CentralEntry, fail: (detail: string, field: string) => never): Uint8Array {
  const { name } = entry;
  const local = entry.localOffset;
  if (local + LOCAL_SIZE > bytes.byteLength || view.getUint32(local, true) !== SIG_LOCAL) fail(`entry ${quoteName(name)} has no local header where the directory says`, name);
  const start = local + LOCAL_SIZE + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
  if (start + entry.compressedSize > bytes.byteLength) fail(`entry ${quoteName(name)} runs past the end of the file (a download cut short?)`, name);
  const raw = bytes.subarray(start, start + entry.compressedSize);
  let data: Uint8Array;
  if (entry.method === 0) {
    data = raw;
  } else {
    const out = new Uint8Array(entry.size);
    try {
      data = inflateSync(raw, { out });
    } catch (error) {
      return fail(`entry ${quoteName(name)} cannot be inflated: ${(error as Error).message}`, name);
    }
  }
  if (data.byteLength !== entry.size) fail(`entry ${quoteName(name)} unpacks to ${data.byteLength} bytes, its header says ${entry.size}`, name);
  const crc = crc32(data);
  if (crc !== entry.crc) fail(`entry ${quoteName(name)} is damaged: its CRC-32 is ${hex(crc)}, the archive says ${hex(entry.crc)}`, name);
  return data;
}

function decodeName(raw: Uint8Array, utf8: boolean): string {
  // Without the UTF-8 flag names are CP437; the names that matter here are ASCII, so only those are decoded as such.
  if (utf8 || raw.every((byte) => byte < 0x80)) return new TextDecoder('utf-8', { fatal: false }).decode(raw);
  return Array.from(raw, (byte) => (byte < 0x80 ? String.fromCharCode(byte) : '\ufffd')).join('');
}

function safeNumber(value: bigint): number {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : Number.MAX_SAFE_INTEGER;
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (ISO 3309, the zip checksum) of `data`. */
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
