// The state-dict layout of a bitsandbytes Linear4bit layer, produced from and parsed into a QuantState.
// Tensors are plain records {dtype, shape, bytes} (little-endian bytes) keyed by full name, ready for a
// safetensors writer or coming from a reader. For a layer with prefix P (e.g. "model.layers.0.mlp.up_proj."):
//   P + "weight"                                    U8  [ceil(n/2), 1]  packed codes
//   P + "weight.absmax"                             F32 [blocks]        (U8 [blocks] codes when double-quantized)
//   P + "weight.quant_map"                          F32 [16]
//   P + "weight.nested_absmax"                      F32 [ceil(blocks/256)]   double quantization only
//   P + "weight.nested_quant_map"                   F32 [256]                double quantization only
//   P + "weight.quant_state.bitsandbytes__nf4"      U8  [len]  UTF-8 JSON (…__fp4 for FP4)
// The JSON is what bitsandbytes' pack_dict_to_tensor writes: Python's json.dumps of
// {quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype, nested_offset]}, in that order,
// with ", " and ": " separators and Python's float repr for the offset, so the bytes are identical.

import { isQuantType } from './codebooks.ts';
import {
  checkBlocksize,
  checkNestedBlocksize,
  checkQuantType,
  checkShape,
  ElementCountError,
  QuantDTypeError,
  QuantStateFormatError,
  TruncatedTensorError,
  UnknownQuantTypeError,
  validateQuantState,
  type QuantState,
} from './quantState.ts';

export type BnbDtype = 'U8' | 'F32' | 'F16' | 'BF16';

export interface TensorRecord {
  dtype: BnbDtype;
  shape: number[];
  bytes: Uint8Array;
}

export type TensorRecords = Record<string, TensorRecord>;

const QUANT_STATE_KEY = 'weight.quant_state.bitsandbytes__';
const DTYPE_BYTES: Record<BnbDtype, number> = { U8: 1, F32: 4, F16: 2, BF16: 2 };

/** Python's repr() of a float (what json.dumps writes): shortest round-trip digits, exponent form outside [1e-4, 1e16). */
export function pythonFloatRepr(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  const sign = value < 0 ? '-' : '';
  const [mantissa, exponentText] = Math.abs(value).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const exponent = Number(exponentText);
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, '0');
    const fraction = digits.slice(exponent + 1);
    return `${sign}${whole}.${fraction || '0'}`;
  }
  const shownMantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const magnitude = String(Math.abs(exponent)).padStart(2, '0');
  return `${sign}${shownMantissa}e${exponent < 0 ? '-' : '+'}${magnitude}`;
}

/** The quant-state JSON text, byte-identical to bitsandbytes' QuantState.as_dict(packed=True). */
export function quantStateJson(state: QuantState): string {
  const fields = [
    `"quant_type": ${JSON.stringify(state.quantType)}`,
    `"blocksize": ${state.blocksize}`,
    `"dtype": ${JSON.stringify(state.dtype)}`,
    `"shape": [${state.shape.join(', ')}]`,
  ];
  if (state.nested) {
    fields.push(`"nested_blocksize": ${state.nested.blocksize}`, `"nested_dtype": "float32"`, `"nested_offset": ${pythonFloatRepr(state.nested.offset)}`);
  }
  return `{${fields.join(', ')}}`;
}

function f32Record(values: Float32Array): TensorRecord {
  return { dtype: 'F32', shape: [values.length], bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** The state-dict tensors of one layer; `prefix` ends with "." (or is empty). */
export function bnbTensorsFromState(prefix: string, state: QuantState): TensorRecords {
  validateQuantState(`${prefix}weight`, state);
  const records: TensorRecords = {};
  records[`${prefix}weight`] = { dtype: 'U8', shape: [state.packed.length, 1], bytes: state.packed };
  if (state.nested) {
    records[`${prefix}weight.absmax`] = { dtype: 'U8', shape: [state.nested.codes.length], bytes: state.nested.codes };
  } else {
    records[`${prefix}weight.absmax`] = f32Record(state.absmax!);
  }
  records[`${prefix}weight.quant_map`] = f32Record(state.quantMap);
  if (state.nested) {
    records[`${prefix}weight.nested_absmax`] = f32Record(state.nested.absmax2);
    records[`${prefix}weight.nested_quant_map`] = f32Record(state.nested.map);
  }
  const json = new TextEncoder().encode(quantStateJson(state));
  records[`${prefix}${QUANT_STATE_KEY}${state.quantType}`] = { dtype: 'U8', shape: [json.length], bytes: json };
  return records;
}

export interface BnbLayer {
  /** Module prefix, ending with "." unless empty. */
  prefix: string;
  /** The suffix of the quant-state key: "nf4", "fp4", or something unknown (which parsing rejects). */
  quantType: string;
}

/** The bitsandbytes 4-bit layers among tensor names (those with a weight.quant_state.bitsandbytes__* tensor). */
export function findBnbLayers(names: Iterable<string>): BnbLayer[] {
  const layers: BnbLayer[] = [];
  for (const name of names) {
    const at = name.lastIndexOf(QUANT_STATE_KEY);
    if (at < 0 || (at > 0 && name[at - 1] !== '.')) continue;
    layers.push({ prefix: name.slice(0, at), quantType: name.slice(at + QUANT_STATE_KEY.length) });
  }
  return layers;
}

function recordOf(records: TensorRecords | ReadonlyMap<string, TensorRecord>, name: string): TensorRecord | undefined {
  return records instanceof Map ? records.get(name) : (records as TensorRecords)[name];
}

function requireRecord(records: TensorRecords | ReadonlyMap<string, TensorRecord>, name: string, tensor: string): TensorRecord {
  const record = recordOf(records, name);
  if (!record) throw new QuantStateFormatError(tensor, `the bitsandbytes state has no tensor ${JSON.stringify(name)}`);
  return record;
}

function floatsOf(record: TensorRecord, name: string, tensor: string): Float32Array {
  if (record.dtype !== 'F32') throw new QuantDTypeError(tensor, `${JSON.stringify(name)} is ${record.dtype}, bitsandbytes stores it as F32`);
  const count = Math.floor(record.bytes.length / 4);
  return new Float32Array(record.bytes.buffer.slice(record.bytes.byteOffset, record.bytes.byteOffset + count * 4));
}

function bytesOf(record: TensorRecord, name: string, tensor: string): Uint8Array {
  if (record.dtype !== 'U8') throw new QuantDTypeError(tensor, `${JSON.stringify(name)} is ${record.dtype}, bitsandbytes stores it as U8`);
  return record.bytes;
}

function parseJson(bytes: Uint8Array, tensor: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw new QuantStateFormatError(tensor, `the quant-state JSON cannot be read (${error instanceof Error ? error.message : String(error)})`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new QuantStateFormatError(tensor, 'the quant state is not a JSON object');
  return parsed as Record<string, unknown>;
}

/**
 * Read one layer's QuantState from its state-dict tensors (a file written by bitsandbytes or by
 * bnbTensorsFromState). Every problem is a typed error naming the layer's weight.
 */
export function quantStateFromBnbTensors(prefix: string, records: TensorRecords | ReadonlyMap<string, TensorRecord>): QuantState {
  const tensor = `${prefix}weight`;
  const names = records instanceof Map ? [...records.keys()] : Object.keys(records);
  const stateKeys = names.filter((name) => name.startsWith(`${prefix}${QUANT_STATE_KEY}`));
  if (stateKeys.length !== 1) {
    throw new QuantStateFormatError(tensor, `expected one ${JSON.stringify(`${prefix}${QUANT_STATE_KEY}*`)} tensor, found ${stateKeys.length}`);
  }
  const suffix = stateKeys[0].slice(`${prefix}${QUANT_STATE_KEY}`.length);
  if (!isQuantType(suffix)) throw new UnknownQuantTypeError(tensor, `unknown quant type ${JSON.stringify(suffix)} in ${JSON.stringify(stateKeys[0])}`);
  const json = parseJson(bytesOf(requireRecord(records, stateKeys[0], tensor), stateKeys[0], tensor), tensor);

  const quantType = checkQuantType(tensor, json.quant_type);
  if (quantType !== suffix) throw new QuantStateFormatError(tensor, `quant_type ${JSON.stringify(quantType)} disagrees with the key suffix ${JSON.stringify(suffix)}`);
  const blocksize = checkBlocksize(tensor, json.blocksize);
  const shape = checkShape(tensor, json.shape);
  if (typeof json.dtype !== 'string') throw new QuantStateFormatError(tensor, 'the quant state has no dtype string');
  const nested = 'nested_blocksize' in json || 'nested_offset' in json;

  const packedName = `${prefix}weight`;
  const packedRecord = requireRecord(records, packedName, tensor);
  if (!(packedRecord.dtype in DTYPE_BYTES)) throw new QuantDTypeError(tensor, `the packed weight has dtype ${String(packedRecord.dtype)}`);
  // Any quant_storage dtype holds the same bytes; n elements need ceil(n / 2) of them.
  const elements = shape.reduce((product, dim) => product * dim, 1);
  const needed = Math.ceil(elements / 2);
  if (packedRecord.bytes.length < needed) {
    throw new TruncatedTensorError(tensor, `the packed weight has ${packedRecord.bytes.length} bytes but shape ${JSON.stringify(shape)} needs ${needed}`);
  }
  // A storage dtype wider than a byte rounds the byte count up to whole elements.
  const allowed = Math.ceil(needed / DTYPE_BYTES[packedRecord.dtype]) * DTYPE_BYTES[packedRecord.dtype];
  if (packedRecord.bytes.length > allowed) {
    throw new ElementCountError(tensor, `the packed weight has ${packedRecord.bytes.length} bytes but shape ${JSON.stringify(shape)} has ${elements} elements, which need ${needed}`);
  }
  const packed = packedRecord.bytes.subarray(0, needed);

  const quantMapName = `${prefix}weight.quant_map`;
  const quantMap = floatsOf(requireRecord(records, quantMapName, tensor), quantMapName, tensor);
  const absmaxName = `${prefix}weight.absmax`;
  const absmaxRecord = requireRecord(records, absmaxName, tensor);
  let state: QuantState;
  if (!nested) {
    state = { quantType, blocksize, shape, dtype: json.dtype, packed, quantMap, absmax: floatsOf(absmaxRecord, absmaxName, tensor), nested: null };
  } else {
    const nestedBlocksize = checkNestedBlocksize(tensor, json.nested_blocksize);
    if (typeof json.nested_offset !== 'number') throw new QuantStateFormatError(tensor, 'the quant state has no numeric nested_offset');
    const absmax2Name = `${prefix}weight.nested_absmax`;
    const mapName = `${prefix}weight.nested_quant_map`;
    state = {
      quantType,
      blocksize,
      shape,
      dtype: json.dtype,
      packed,
      quantMap,
      absmax: null,
      nested: {
        codes: bytesOf(absmaxRecord, absmaxName, tensor),
        absmax2: floatsOf(requireRecord(records, absmax2Name, tensor), absmax2Name, tensor),
        blocksize: nestedBlocksize,
        map: floatsOf(requireRecord(records, mapName, tensor), mapName, tensor),
        offset: Math.fround(json.nested_offset),
      },
    };
  }
  return validateQuantState(tensor, state);
}
