// Strict safetensors reader for the browser and Node (no Node-only APIs here).
//
// Layout (FORMATS.md §4): u64 little-endian N, N bytes of UTF-8 JSON header, then the data buffer.
// The reader works in two steps so that a loader can stream tensors one at a time:
//   const header = await readSafetensorsHeader(source, 'model.safetensors');   // reads only 8 + N bytes
//   for (const entry of header.tensors) { const t = await readTensor(source, header, entry.name); ... }
// Validation follows the reference parser (huggingface/safetensors `tensor.rs`) and is stricter where
// JavaScript needs it: every integer is a safe integer written as a plain integer literal, duplicate JSON
// keys are refused at every level (JSON.parse would silently keep the last one), and tensor names are
// kept in Maps so that `__proto__` or `constructor` are plain data.

import {
  DuplicateNameError,
  FileReadError,
  FileTooSmallError,
  FormatError,
  HeaderLengthError,
  HeaderParseError,
  IncompleteFileError,
  MetadataError,
  OffsetError,
  TensorNotFoundError,
  TensorShapeError,
  TensorSizeError,
  TrailingDataError,
  UnsupportedDtypeError,
  quoteName,
} from './errors.ts';
import { readExactly, type ByteSource } from './byteSource.ts';
import { JsonNumber, StrictJsonError, decodeUtf8Strict, describeJson, nonNegativeIntegerProblem, parseStrictJson, type JsonValue } from './strictJson.ts';

// Sources are defined in byteSource.ts; re-exported because every reader of this format needs one.
export { blobSource, bytesSource, type BlobLike, type ByteSource } from './byteSource.ts';

// ---------------------------------------------------------------------------------------------------------------
// Dtypes

/** The dtypes tabtune reads and writes. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'U8';

export const SUPPORTED_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'U8'];

/** Bytes per element of each supported dtype. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({ F32: 4, F16: 2, BF16: 2, U8: 1 });

/** The reference header size cap (100 MB); a header longer than this is refused before it is read. */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

export function isSupportedDtype(value: unknown): value is SafetensorsDtype {
  return value === 'F32' || value === 'F16' || value === 'BF16' || value === 'U8';
}

/** A dtype for a message: bare when it looks like a dtype, JSON-quoted otherwise. */
export function dtypeText(dtype: string): string {
  return /^[A-Za-z0-9_]{1,24}$/.test(dtype) ? dtype : quoteName(dtype);
}

/** "unsupported dtype X in tensor Y (supported: ...)". */
export function unsupportedDtypeMessage(dtype: string, tensor: string): string {
  return `unsupported dtype ${dtypeText(dtype)} in tensor ${quoteName(tensor)} (supported: ${SUPPORTED_DTYPES.join(', ')})`;
}

// ---------------------------------------------------------------------------------------------------------------
// Header

/** One tensor's validated header entry. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly elementCount: number;
  /** [begin, end) relative to the start of the data buffer, as written in the header. */
  readonly dataOffsets: readonly [number, number];
  /** Absolute position of the first byte in the file (8 + N + begin). */
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly file: string;
  /** N: the JSON header's length in bytes (padding included). */
  readonly headerLength: number;
  /** 8 + N: where the data buffer starts. */
  readonly dataStart: number;
  readonly dataLength: number;
  /** 8 + N + dataLength, which the validation checked equals the source's size. */
  readonly fileSize: number;
  /** Entries in data order (sorted by offsets), which is the order to stream them in. */
  readonly tensors: readonly SafetensorsEntry[];
  readonly byName: ReadonlyMap<string, SafetensorsEntry>;
  /** `__metadata__`, or an empty map when absent. */
  readonly metadata: ReadonlyMap<string, string>;
}

export interface ReadHeaderOptions {
  /** Header size cap in bytes; at most (and by default) {@link SAFETENSORS_MAX_HEADER_BYTES}. */
  maxHeaderBytes?: number;
}

const METADATA_KEY = '__metadata__';

/**
 * Read and validate the header: reads the 8-byte prefix and then exactly N more bytes, after checking N against
 * the cap and the file size. Also checks the data layout against the source's size, so the returned offsets can
 * be read without further checks.
 */
export async function readSafetensorsHeader(source: ByteSource, fileName: string, options: ReadHeaderOptions = {}): Promise<SafetensorsHeader> {
  const size = source.size;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new FileReadError(fileName, `the source reports an invalid size (${String(size)})`, { field: 'size' });
  }
  const requested = options.maxHeaderBytes ?? SAFETENSORS_MAX_HEADER_BYTES;
  if (!Number.isSafeInteger(requested) || requested < 0) throw new RangeError(`maxHeaderBytes must be a non-negative integer, not ${requested}`);
  const cap = Math.min(requested, SAFETENSORS_MAX_HEADER_BYTES);
  if (size < 8) {
    throw new FileTooSmallError(fileName, `file is too small (${size} bytes): a safetensors file starts with an 8-byte header length`, {
      field: 'header length',
    });
  }
  const prefix = await readExactly(source, fileName, 0, 8, 'header length');
  const headerLength = headerLengthFromPrefix(prefix, fileName, size, cap);
  const headerBytes = await readExactly(source, fileName, 8, headerLength, 'header');
  return parseSafetensorsHeader(headerBytes, fileName, size);
}

/** Decode and check the u64 header length N from the first 8 bytes. */
export function headerLengthFromPrefix(prefix: Uint8Array, fileName: string, fileSize: number, cap = SAFETENSORS_MAX_HEADER_BYTES): number {
  const low = (prefix[0] | (prefix[1] << 8) | (prefix[2] << 16) | (prefix[3] << 24)) >>> 0;
  const high = (prefix[4] | (prefix[5] << 8) | (prefix[6] << 16) | (prefix[7] << 24)) >>> 0;
  if (high !== 0 || low > cap) {
    const declared = ((BigInt(high) << 32n) | BigInt(low)).toString();
    throw new HeaderLengthError(fileName, `header length ${declared} is over the ${cap}-byte cap; refused without reading it`, {
      field: 'header length',
    });
  }
  if (low > fileSize - 8) {
    throw new HeaderLengthError(
      fileName,
      `header length ${low} runs past the end of the file (${fileSize} bytes, so at most ${fileSize - 8} header bytes)`,
      { field: 'header length' },
    );
  }
  return low;
}

interface RawEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  elementCount: number;
  begin: number;
  end: number;
}

/**
 * Validate the N header bytes of a file of `fileSize` bytes (8 + N + data). Synchronous core of
 * {@link readSafetensorsHeader}, for callers that already hold the bytes.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileName: string, fileSize: number): SafetensorsHeader {
  const headerLength = headerBytes.byteLength;
  const text = decodeUtf8Strict(headerBytes);
  if (text === null) throw new HeaderParseError(fileName, 'header is not valid UTF-8', { field: 'header' });

  let root: JsonValue;
  try {
    root = parseStrictJson(text);
  } catch (error) {
    if (!(error instanceof StrictJsonError)) throw error;
    throw jsonErrorToFormatError(fileName, error);
  }
  if (!(root instanceof Map)) {
    throw new HeaderParseError(fileName, `header is ${describeJson(root)}, not a JSON object`, { field: 'header' });
  }
  if (text.charCodeAt(0) !== 0x7b) {
    throw new HeaderParseError(fileName, "header does not start with '{'", { field: 'header' });
  }

  let metadata: ReadonlyMap<string, string> = new Map();
  const raw: RawEntry[] = [];
  for (const [key, value] of root) {
    if (key === METADATA_KEY) metadata = parseMetadata(fileName, value);
    else raw.push(parseEntry(fileName, key, value));
  }

  // Offsets contiguous from 0, in (begin, end) order as the reference sorts them.
  const sorted = raw.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  let previous: RawEntry | undefined;
  for (const entry of sorted) {
    const offsets = `data_offsets [${entry.begin}, ${entry.end}]`;
    if (entry.begin < expected && previous) {
      throw new OffsetError(
        fileName,
        `tensor ${quoteName(entry.name)} ${offsets} overlaps tensor ${quoteName(previous.name)} [${previous.begin}, ${previous.end}]`,
        { tensor: entry.name, field: 'data_offsets' },
      );
    }
    if (entry.begin > expected) {
      const detail = previous
        ? `leaves a gap of ${entry.begin - expected} bytes after tensor ${quoteName(previous.name)}, which ends at ${expected}`
        : `does not start at 0: the data buffer must begin with a tensor`;
      throw new OffsetError(fileName, `tensor ${quoteName(entry.name)} ${offsets} ${detail}`, { tensor: entry.name, field: 'data_offsets' });
    }
    expected = entry.end;
    previous = entry;
  }
  const dataLength = expected;
  const dataStart = 8 + headerLength;
  const available = fileSize - dataStart;
  if (available < dataLength) {
    const first = sorted.find((entry) => entry.end > available) as RawEntry;
    throw new IncompleteFileError(
      fileName,
      `file cut short: tensor ${quoteName(first.name)} data_offsets [${first.begin}, ${first.end}] run past the end of the data, ` +
        `which holds only ${Math.max(0, available)} of the ${dataLength} bytes the header declares`,
      { tensor: first.name, field: 'data_offsets' },
    );
  }
  if (available > dataLength) {
    throw new TrailingDataError(
      fileName,
      `${available - dataLength} bytes of trailing data after the last tensor` +
        (previous ? ` (${quoteName(previous.name)} ends at data offset ${dataLength})` : ' (the header declares no tensor data)'),
      { field: 'data', tensor: previous?.name },
    );
  }

  const tensors: SafetensorsEntry[] = sorted.map((entry) =>
    Object.freeze({
      name: entry.name,
      dtype: entry.dtype,
      shape: Object.freeze(entry.shape),
      elementCount: entry.elementCount,
      dataOffsets: Object.freeze([entry.begin, entry.end] as [number, number]),
      byteOffset: dataStart + entry.begin,
      byteLength: entry.end - entry.begin,
    }),
  );
  const byName = new Map<string, SafetensorsEntry>();
  for (const entry of tensors) byName.set(entry.name, entry);
  return Object.freeze({
    file: fileName,
    headerLength,
    dataStart,
    dataLength,
    fileSize: dataStart + dataLength,
    tensors: Object.freeze(tensors),
    byName,
    metadata,
  });
}

function jsonErrorToFormatError(fileName: string, error: StrictJsonError): FormatError {
  if (error.kind === 'syntax') {
    const tensor = topTensor(error.path);
    const where = tensor === undefined ? '' : ` (in the entry of tensor ${quoteName(tensor)})`;
    return new HeaderParseError(fileName, `header is not valid JSON${where}: ${error.detail}`, { field: 'header', tensor });
  }
  const key = error.key as string;
  const path = error.path;
  if (path.length === 0) {
    if (key === METADATA_KEY) return new DuplicateNameError(fileName, `duplicate ${METADATA_KEY} in the header`, { field: METADATA_KEY });
    return new DuplicateNameError(fileName, `duplicate tensor name ${quoteName(key)} in the header`, { tensor: key });
  }
  if (path[0] === METADATA_KEY) {
    const field = [...path, key].join('.');
    return new DuplicateNameError(fileName, `duplicate key ${quoteName(key)} in ${path.join('.')} (${field})`, { field });
  }
  return new DuplicateNameError(fileName, `duplicate field ${quoteName(key)} in the entry of tensor ${quoteName(path[0])}`, {
    tensor: path[0],
    field: [...path.slice(1), key].join('.'),
  });
}

function topTensor(path: readonly string[]): string | undefined {
  return path.length > 0 && path[0] !== METADATA_KEY ? path[0] : undefined;
}

function parseMetadata(fileName: string, value: JsonValue): ReadonlyMap<string, string> {
  const metadata = new Map<string, string>();
  if (value === null) return metadata; // the reference accepts an explicit null
  if (!(value instanceof Map)) {
    throw new MetadataError(fileName, `${METADATA_KEY} is ${describeJson(value)}, not an object of strings`, { field: METADATA_KEY });
  }
  for (const [key, item] of value) {
    if (typeof item !== 'string') {
      throw new MetadataError(fileName, `${METADATA_KEY}.${key} is ${describeJson(item)}; metadata values must be strings`, {
        field: `${METADATA_KEY}.${key}`,
      });
    }
    metadata.set(key, item);
  }
  return metadata;
}

function parseEntry(fileName: string, name: string, value: JsonValue): RawEntry {
  const tensor = quoteName(name);
  if (!(value instanceof Map)) {
    throw new HeaderParseError(fileName, `the entry of tensor ${tensor} is ${describeJson(value)}, not an object`, { tensor: name });
  }
  // Unknown fields are ignored, as the reference does; the three below are required.
  const dtype = value.get('dtype');
  if (dtype === undefined) throw new HeaderParseError(fileName, `tensor ${tensor} has no dtype`, { tensor: name, field: 'dtype' });
  if (typeof dtype !== 'string') {
    throw new HeaderParseError(fileName, `dtype of tensor ${tensor} is ${describeJson(dtype)}, not a string`, { tensor: name, field: 'dtype' });
  }
  if (!isSupportedDtype(dtype)) throw new UnsupportedDtypeError(fileName, unsupportedDtypeMessage(dtype, name), { tensor: name, field: 'dtype' });

  const shapeValue = value.get('shape');
  if (shapeValue === undefined) throw new HeaderParseError(fileName, `tensor ${tensor} has no shape`, { tensor: name, field: 'shape' });
  if (!Array.isArray(shapeValue)) {
    throw new TensorShapeError(fileName, `shape of tensor ${tensor} is ${describeJson(shapeValue)}, not an array`, { tensor: name, field: 'shape' });
  }
  const shape: number[] = [];
  let elementCount = 1;
  for (let i = 0; i < shapeValue.length; i++) {
    const problem = nonNegativeIntegerProblem(shapeValue[i]);
    if (problem !== null) {
      throw new TensorShapeError(fileName, `shape[${i}] of tensor ${tensor} ${problem}`, { tensor: name, field: `shape[${i}]` });
    }
    const dim = (shapeValue[i] as JsonNumber).value;
    shape.push(dim);
    elementCount *= dim;
    if (!Number.isSafeInteger(elementCount)) {
      throw new TensorShapeError(fileName, `the element count of tensor ${tensor} (shape [${shapeText(shapeValue)}]) overflows 2^53 − 1`, {
        tensor: name,
        field: 'shape',
      });
    }
  }
  const expectedBytes = elementCount * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(expectedBytes)) {
    throw new TensorShapeError(fileName, `the byte size of tensor ${tensor} (shape [${shape.join(', ')}], ${elementCount} × ${DTYPE_BYTES[dtype]} bytes) overflows 2^53 − 1`, {
      tensor: name,
      field: 'shape',
    });
  }

  const offsetsValue = value.get('data_offsets');
  if (offsetsValue === undefined) throw new HeaderParseError(fileName, `tensor ${tensor} has no data_offsets`, { tensor: name, field: 'data_offsets' });
  if (!Array.isArray(offsetsValue) || offsetsValue.length !== 2) {
    const what = Array.isArray(offsetsValue) ? `an array of ${offsetsValue.length}` : describeJson(offsetsValue);
    throw new OffsetError(fileName, `data_offsets of tensor ${tensor} is ${what}, not [begin, end]`, { tensor: name, field: 'data_offsets' });
  }
  for (let i = 0; i < 2; i++) {
    const problem = nonNegativeIntegerProblem(offsetsValue[i]);
    if (problem !== null) {
      throw new OffsetError(fileName, `data_offsets[${i}] of tensor ${tensor} ${problem}`, { tensor: name, field: `data_offsets[${i}]` });
    }
  }
  const begin = (offsetsValue[0] as JsonNumber).value;
  const end = (offsetsValue[1] as JsonNumber).value;
  if (end < begin) {
    throw new OffsetError(fileName, `data_offsets of tensor ${tensor} end before they begin ([${begin}, ${end}])`, { tensor: name, field: 'data_offsets' });
  }
  if (end - begin !== expectedBytes) {
    throw new TensorSizeError(
      fileName,
      `tensor ${tensor} has ${end - begin} bytes (data_offsets [${begin}, ${end}]) but ${dtype} shape [${shape.join(', ')}] needs ${expectedBytes}`,
      { tensor: name, field: 'data_offsets' },
    );
  }
  return { name, dtype, shape, elementCount, begin, end };
}

function shapeText(items: readonly JsonValue[]): string {
  const text = items.map((item) => (item instanceof JsonNumber ? item.text : describeJson(item))).join(', ');
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor data

/** NaN or ±Inf found in a float tensor: the tensor still loads, and the caller reports this. */
export interface NonFiniteWarning {
  readonly file: string;
  readonly tensor: string;
  readonly nan: number;
  readonly posInf: number;
  readonly negInf: number;
  readonly message: string;
}

interface LoadedTensorBase {
  readonly entry: SafetensorsEntry;
  readonly name: string;
  readonly shape: readonly number[];
  /** Non-null when a float tensor holds NaN or ±Inf. */
  readonly warning: NonFiniteWarning | null;
}

/** F32, F16 and BF16 tensors, converted exactly to float32. */
export interface LoadedFloatTensor extends LoadedTensorBase {
  readonly dtype: 'F32' | 'F16' | 'BF16';
  readonly data: Float32Array;
}

export interface LoadedByteTensor extends LoadedTensorBase {
  readonly dtype: 'U8';
  readonly data: Uint8Array;
}

export type LoadedTensor = LoadedFloatTensor | LoadedByteTensor;

function entryOf(header: SafetensorsHeader, name: string): SafetensorsEntry {
  const entry = header.byName.get(name);
  if (!entry) throw new TensorNotFoundError(header.file, `no tensor named ${quoteName(name)} in the file`, { tensor: name });
  return entry;
}

/** The raw little-endian bytes of one tensor (a copy the caller owns). */
export async function readTensorBytes(source: ByteSource, header: SafetensorsHeader, name: string): Promise<Uint8Array> {
  const entry = entryOf(header, name);
  if (source.size !== header.fileSize) {
    const detail = `reading tensor ${quoteName(name)}: the source is ${source.size} bytes but its header was read from a file of ${header.fileSize} bytes`;
    if (source.size < header.fileSize) throw new IncompleteFileError(header.file, `file cut short: ${detail}`, { tensor: name, field: 'data' });
    throw new TrailingDataError(header.file, `file changed: ${detail}`, { tensor: name, field: 'data' });
  }
  const bytes = await readExactly(source, header.file, entry.byteOffset, entry.byteLength, 'data', name);
  return bytes.slice(); // own the bytes: in-memory sources return views of the caller's buffer
}

/**
 * One tensor as a typed array: F32 → Float32Array, F16 and BF16 → Float32Array (exact conversion), U8 → Uint8Array.
 * Reads only that tensor's bytes, so a loader can stream a model one tensor at a time.
 */
export async function readTensor(source: ByteSource, header: SafetensorsHeader, name: string): Promise<LoadedTensor> {
  const entry = entryOf(header, name);
  const bytes = await readTensorBytes(source, header, name);
  const base = { entry, name: entry.name, shape: entry.shape };
  if (entry.dtype === 'U8') return { ...base, dtype: 'U8', data: bytes, warning: null };
  const data = decodeFloatTensor(bytes, entry.dtype, entry.elementCount);
  return { ...base, dtype: entry.dtype, data, warning: nonFiniteWarning(header.file, entry.name, data) };
}

/** Every tensor of a file, read one after the other, with the NaN/Inf warnings collected. */
export async function readSafetensors(
  source: ByteSource,
  fileName: string,
  options: ReadHeaderOptions = {},
): Promise<{ header: SafetensorsHeader; tensors: Map<string, LoadedTensor>; warnings: NonFiniteWarning[] }> {
  const header = await readSafetensorsHeader(source, fileName, options);
  const tensors = new Map<string, LoadedTensor>();
  const warnings: NonFiniteWarning[] = [];
  for (const entry of header.tensors) {
    const tensor = await readTensor(source, header, entry.name);
    tensors.set(entry.name, tensor);
    if (tensor.warning) warnings.push(tensor.warning);
  }
  return { header, tensors, warnings };
}

/** Count NaN and ±Inf; null when every value is finite. */
export function nonFiniteWarning(file: string, tensor: string, data: Float32Array): NonFiniteWarning | null {
  let nan = 0;
  let posInf = 0;
  let negInf = 0;
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (x - x === 0) continue; // finite
    if (x !== x) nan++;
    else if (x > 0) posInf++;
    else negInf++;
  }
  if (nan + posInf + negInf === 0) return null;
  const parts = [nan && `${nan} NaN`, posInf && `${posInf} +Inf`, negInf && `${negInf} −Inf`].filter(Boolean).join(', ');
  return {
    file,
    tensor,
    nan,
    posInf,
    negInf,
    message: `${quoteName(file)}: tensor ${quoteName(tensor)} holds ${parts} of ${data.length} values`,
  };
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Decode little-endian F32/F16/BF16 bytes into float32 values (exact: every F16 and BF16 value is a float32). */
export function decodeFloatTensor(bytes: Uint8Array, dtype: 'F32' | 'F16' | 'BF16', elementCount: number): Float32Array {
  const out = new Float32Array(elementCount);
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN_HOST) new Uint8Array(out.buffer).set(bytes.subarray(0, elementCount * 4));
    else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < elementCount; i++) out[i] = view.getFloat32(i * 4, true);
    }
    return out;
  }
  const bits = new Uint32Array(out.buffer);
  if (dtype === 'BF16') {
    for (let i = 0, j = 0; i < elementCount; i++, j += 2) bits[i] = ((bytes[j] | (bytes[j + 1] << 8)) << 16) >>> 0;
    return out;
  }
  const table = f16Table();
  for (let i = 0, j = 0; i < elementCount; i++, j += 2) bits[i] = table[bytes[j] | (bytes[j + 1] << 8)];
  return out;
}

let F16_TO_F32_BITS: Uint32Array | null = null;

/** float32 bit patterns of all 65536 float16 values (NaN payloads kept). */
function f16Table(): Uint32Array {
  if (F16_TO_F32_BITS) return F16_TO_F32_BITS;
  const table = new Uint32Array(65536);
  const scratch = new Float32Array(1);
  const scratchBits = new Uint32Array(scratch.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) {
      scratch[0] = mantissa * 2 ** -24; // zero or subnormal: exact in float32
      table[h] = (sign | scratchBits[0]) >>> 0;
    } else if (exponent === 31) {
      table[h] = (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
    } else {
      table[h] = (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
    }
  }
  F16_TO_F32_BITS = table;
  return table;
}

/** float16 bit patterns → float32 values, exactly. */
export function float16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  const table = f16Table();
  for (let i = 0; i < bits.length; i++) outBits[i] = table[bits[i]];
  return out;
}

/** bfloat16 bit patterns → float32 values, exactly. */
export function bfloat16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = (bits[i] << 16) >>> 0;
  return out;
}
