// safetensors writer: deterministic output that the strict reader accepts.
// Header: `{"__metadata__":{...},"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]},...}` with tensors in the
// order given, padded with spaces so that 8 + N is a multiple of 8. Also float32 → float16 / bfloat16 encoding
// with round-to-nearest-even, for writing half-precision tensors.

import {
  DuplicateNameError,
  FormatError,
  HeaderLengthError,
  HeaderParseError,
  MetadataError,
  TensorShapeError,
  TensorSizeError,
  UnsupportedDtypeError,
  quoteName,
} from './errors.ts';
import { DTYPE_BYTES, SAFETENSORS_MAX_HEADER_BYTES, isSupportedDtype, unsupportedDtypeMessage, type SafetensorsDtype } from './safetensors.ts';

/**
 * A tensor to write. `data` by dtype: F32 → Float32Array; F16 and BF16 → Float32Array (encoded here with
 * round-to-nearest-even) or Uint16Array (bit patterns, written as they are); U8 → Uint8Array.
 */
export interface SafetensorsTensorInput {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: Float32Array | Uint16Array | Uint8Array;
}

export type SafetensorsMetadataInput = Readonly<Record<string, string>> | ReadonlyMap<string, string>;

export interface WriteSafetensorsOptions {
  /** The name the errors give the file being written. */
  fileName?: string;
}

/** A file as a header and data chunks, to write or stream without one big copy. */
export interface EncodedSafetensors {
  /** The 8-byte length prefix and the padded JSON header. */
  readonly header: Uint8Array;
  /** One chunk per tensor, in file order. F32 and U8 chunks on little-endian hosts are views of the input arrays. */
  readonly chunks: readonly Uint8Array[];
  readonly byteLength: number;
}

const DEFAULT_FILE_NAME = 'output.safetensors';
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function kindOf(value: unknown): string {
  return Object.prototype.toString.call(value).slice(8, -1);
}

/** Well-formed UTF-16 (no lone surrogates), so the UTF-8 encoding keeps the exact string. */
function isWellFormed(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c > 0xdbff) return false;
    const next = text.charCodeAt(i + 1);
    if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
    i++;
  }
  return true;
}

function metadataEntries(file: string, metadata: SafetensorsMetadataInput | undefined): [string, string][] {
  if (metadata === undefined) return [];
  if (metadata === null || typeof metadata !== 'object') {
    throw new MetadataError(file, `__metadata__ must be an object or Map of strings, not ${metadata === null ? 'null' : typeof metadata}`, {
      field: '__metadata__',
    });
  }
  const entries: [unknown, unknown][] = metadata instanceof Map ? [...metadata.entries()] : Object.entries(metadata);
  const seen = new Set<string>();
  for (const [key, value] of entries) {
    if (typeof key !== 'string' || !isWellFormed(key)) {
      throw new MetadataError(file, `__metadata__ has a key that is not a well-formed string`, { field: '__metadata__' });
    }
    const field = `__metadata__.${key}`;
    if (typeof value !== 'string') {
      throw new MetadataError(file, `${field} is ${value === null ? 'null' : typeof value}; metadata values must be strings`, { field });
    }
    if (!isWellFormed(value)) throw new MetadataError(file, `${field} is not a well-formed string (lone surrogate)`, { field });
    if (seen.has(key)) throw new DuplicateNameError(file, `duplicate key ${quoteName(key)} in __metadata__`, { field });
    seen.add(key);
  }
  return entries as [string, string][];
}

function elementCountOf(file: string, name: string, shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw new TensorShapeError(file, `shape of tensor ${quoteName(name)} is not an array`, { tensor: name, field: 'shape' });
  let count = 1;
  for (let i = 0; i < shape.length; i++) {
    const dim = shape[i];
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0 || Object.is(dim, -0)) {
      throw new TensorShapeError(file, `shape[${i}] of tensor ${quoteName(name)} is ${String(dim)}, not a non-negative safe integer`, {
        tensor: name,
        field: `shape[${i}]`,
      });
    }
    count *= dim;
    if (!Number.isSafeInteger(count)) {
      throw new TensorShapeError(file, `the element count of tensor ${quoteName(name)} (shape [${shape.join(', ')}]) overflows 2^53 − 1`, {
        tensor: name,
        field: 'shape',
      });
    }
  }
  return count;
}

/** The little-endian bytes to store for one tensor, after checking the array kind and length. */
function tensorBytes(file: string, tensor: SafetensorsTensorInput, elementCount: number): Uint8Array {
  const { name, dtype, data } = tensor;
  const kind = kindOf(data);
  const length = ArrayBuffer.isView(data) ? (data as { length?: number }).length : undefined;
  const mismatch = (wanted: string): never => {
    throw new TensorSizeError(
      file,
      `tensor ${quoteName(name)} data: ${dtype} with ${elementCount} elements needs ${wanted} of ${elementCount} elements; got ${kind}` +
        (length === undefined ? '' : ` of ${length}`),
      { tensor: name, field: 'data' },
    );
  };
  const view = (array: ArrayBufferView) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  switch (dtype) {
    case 'U8':
      if (kind !== 'Uint8Array' || length !== elementCount) mismatch('a Uint8Array');
      return view(data);
    case 'F32':
      if (kind !== 'Float32Array' || length !== elementCount) mismatch('a Float32Array');
      return LITTLE_ENDIAN_HOST ? view(data) : littleEndian32(data as Float32Array);
    case 'F16':
    case 'BF16': {
      let bits: Uint16Array;
      if (kind === 'Float32Array' && length === elementCount) {
        bits = dtype === 'F16' ? float32ToFloat16Bits(data as Float32Array) : float32ToBfloat16Bits(data as Float32Array);
      } else if (kind === 'Uint16Array' && length === elementCount) bits = data as Uint16Array;
      else return mismatch('a Float32Array or a Uint16Array of bit patterns');
      return LITTLE_ENDIAN_HOST ? view(bits) : littleEndian16(bits);
    }
    default:
      throw new UnsupportedDtypeError(file, unsupportedDtypeMessage(String(dtype), name), { tensor: name, field: 'dtype' });
  }
}

function littleEndian32(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return out;
}

function littleEndian16(data: Uint16Array): Uint8Array {
  const out = new Uint8Array(data.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setUint16(i * 2, data[i], true);
  return out;
}

/** Validate and lay out a file: the header bytes and one data chunk per tensor. */
export function encodeSafetensors(
  tensors: readonly SafetensorsTensorInput[],
  metadata?: SafetensorsMetadataInput,
  options: WriteSafetensorsOptions = {},
): EncodedSafetensors {
  const file = options.fileName ?? DEFAULT_FILE_NAME;
  if (!Array.isArray(tensors)) throw new FormatError(file, 'tensors must be an array', { field: 'tensors' });
  const parts: string[] = [];
  const meta = metadataEntries(file, metadata);
  if (meta.length > 0) {
    parts.push(`"__metadata__":{${meta.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`).join(',')}}`);
  }
  const names = new Set<string>();
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const tensor of tensors) {
    const name = tensor?.name;
    if (typeof name !== 'string' || !isWellFormed(name)) {
      throw new HeaderParseError(file, `tensor #${chunks.length} has a name that is not a well-formed string`, { field: 'name' });
    }
    if (name === '__metadata__') {
      throw new MetadataError(file, `"__metadata__" is reserved for the metadata block and cannot name a tensor`, { tensor: name });
    }
    if (names.has(name)) throw new DuplicateNameError(file, `duplicate tensor name ${quoteName(name)}`, { tensor: name });
    names.add(name);
    const dtype: unknown = tensor.dtype;
    if (!isSupportedDtype(dtype)) {
      throw new UnsupportedDtypeError(file, unsupportedDtypeMessage(String(dtype), name), { tensor: name, field: 'dtype' });
    }
    const elementCount = elementCountOf(file, name, tensor.shape);
    const byteLength = elementCount * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(byteLength) || !Number.isSafeInteger(offset + byteLength)) {
      throw new TensorShapeError(file, `tensor ${quoteName(name)} makes the data larger than 2^53 − 1 bytes`, { tensor: name, field: 'shape' });
    }
    const bytes = tensorBytes(file, tensor, elementCount);
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${tensor.shape.join(',')}],"data_offsets":[${offset},${offset + byteLength}]}`,
    );
    chunks.push(bytes);
    offset += byteLength;
  }

  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLength = Math.ceil(json.byteLength / 8) * 8;
  if (headerLength > SAFETENSORS_MAX_HEADER_BYTES) {
    throw new HeaderLengthError(file, `header would be ${headerLength} bytes, over the ${SAFETENSORS_MAX_HEADER_BYTES}-byte cap readers apply`, {
      field: 'header length',
    });
  }
  const header = new Uint8Array(8 + headerLength);
  const view = new DataView(header.buffer);
  view.setUint32(0, headerLength, true);
  view.setUint32(4, 0, true);
  header.set(json, 8);
  header.fill(0x20, 8 + json.byteLength);
  return { header, chunks, byteLength: header.byteLength + offset };
}

/** A whole safetensors file in one buffer. Refuses invalid input with typed errors; deterministic output. */
export function writeSafetensors(
  tensors: readonly SafetensorsTensorInput[],
  metadata?: SafetensorsMetadataInput,
  options: WriteSafetensorsOptions = {},
): Uint8Array {
  const encoded = encodeSafetensors(tensors, metadata, options);
  const out = new Uint8Array(encoded.byteLength);
  out.set(encoded.header, 0);
  let at = encoded.header.byteLength;
  for (const chunk of encoded.chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// float32 → float16 / bfloat16, round to nearest, ties to even

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 bit pattern → float16 bit pattern, round-to-nearest-even; overflow → ±Inf; NaN stays NaN (payload kept where it fits). */
export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) {
    if (mantissa === 0) return sign | 0x7c00;
    const payload = mantissa >>> 13;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  if (exponent >= 143) return sign | 0x7c00; // ≥ 2^16: beyond the float16 range
  if (exponent >= 113) {
    // Normal float16 (the rounding may carry into the exponent, up to Inf for values ≥ 65520).
    let half = ((exponent - 112) << 10) | (mantissa >>> 13);
    const rest = mantissa & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
    return sign | half;
  }
  // Subnormal float16 (units of 2^-24) or zero: value = significand × 2^(exponent − 150).
  if (exponent < 102) return sign; // below 2^-25: rounds to zero (2^-25 itself is a tie to even zero, handled below)
  const significand = mantissa | 0x800000;
  const shift = 126 - exponent; // 14 … 24
  let half = significand >>> shift;
  const rest = significand & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
  return sign | half;
}

/** float32 bit pattern → bfloat16 bit pattern, round-to-nearest-even; NaN stays NaN (quiet). */
export function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff;
  const rounded = (bits >>> 0) + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** float32 value → float16 bits (the value is first taken as float32). */
export function float32ToFloat16(value: number): number {
  scratchF32[0] = value;
  return f32BitsToF16Bits(scratchU32[0]);
}

/** float32 value → bfloat16 bits (the value is first taken as float32). */
export function float32ToBfloat16(value: number): number {
  scratchF32[0] = value;
  return f32BitsToBf16Bits(scratchU32[0]);
}

export function float32ToFloat16Bits(data: Float32Array): Uint16Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f32BitsToF16Bits(bits[i]);
  return out;
}

export function float32ToBfloat16Bits(data: Float32Array): Uint16Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f32BitsToBf16Bits(bits[i]);
  return out;
}
