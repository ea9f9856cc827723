// What an .onnx file asks for and returns, read from its protobuf before any runtime sees it: the graph's inputs
// and outputs (name, element type, dims), so that a file that is not an ONNX model, or a model this runner cannot
// feed, is refused with a message naming the file instead of an opaque runtime error. The runner feeds one
// input, token ids int64 [batch, sequence], and reads logits float [batch, sequence, vocab] (no KV cache), the
// interface of tabtune's own export (src/export/onnxGraph.ts).
//
// Only the fields needed are decoded (field numbers of onnx/onnx.proto); everything else, weights included, is
// skipped by its length, so reading a large file costs one pass over its structure, not a copy.

import { FormatError } from '../../io/errors.ts';

/** The file is not an ONNX model, or not one this runner can generate with. */
export class OnnxFileError extends FormatError {}

/** TensorProto.DataType values, for messages. */
const ELEMENT_TYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
};
const FLOAT = 1;
const INT64 = 7;

export function elementTypeName(type: number): string {
  return ELEMENT_TYPES[type] ?? `type ${type}`;
}

/** A graph input or output. `dims` is null when the file gives no shape; a dim is a size, a symbolic name, or null (unknown). */
export interface OnnxValueInfo {
  name: string;
  /** TensorProto.DataType; 0 when the value is not a tensor. */
  elemType: number;
  dims: (number | string | null)[] | null;
}

export interface OnnxModelInterface {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  /** Graph inputs that are not initializers (what a caller must feed). */
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

/** One field of a message: its number, wire type, and value (a number for varints, a view for length-delimited). */
interface Field {
  number: number;
  wireType: number;
  varint: number;
  bytes: Uint8Array;
}

class Reader {
  constructor(
    private readonly fileName: string,
    private readonly where: string,
  ) {}

  fail(detail: string): never {
    throw new OnnxFileError(this.fileName, `is not an ONNX model: ${detail}, in ${this.where}`);
  }

  /** The fields of one message, in file order; malformed wire data fails. */
  *fields(buffer: Uint8Array): Generator<Field> {
    let at = 0;
    const varint = (): number => {
      let value = 0;
      let scale = 1;
      for (let i = 0; i < 10; i++) {
        if (at >= buffer.length) this.fail('the data ends inside a number');
        const byte = buffer[at++];
        value += (byte & 0x7f) * scale;
        if (byte < 0x80) return value;
        scale *= 128;
      }
      return this.fail('a number runs past 10 bytes');
    };
    while (at < buffer.length) {
      const start = at;
      const tag = varint();
      const number = Math.floor(tag / 8);
      const wireType = tag % 8;
      if (number === 0) this.fail(`its bytes are not protobuf (field number 0 at byte ${start})`);
      if (wireType === VARINT) {
        yield { number, wireType, varint: varint(), bytes: buffer.subarray(0, 0) };
      } else if (wireType === LENGTH_DELIMITED) {
        const length = varint();
        if (length > buffer.length - at) this.fail(`a field of ${length} bytes where ${buffer.length - at} remain`);
        yield { number, wireType, varint: 0, bytes: buffer.subarray(at, at + length) };
        at += length;
      } else if (wireType === FIXED64 || wireType === FIXED32) {
        const size = wireType === FIXED64 ? 8 : 4;
        if (size > buffer.length - at) this.fail('the data ends inside a fixed-size number');
        yield { number, wireType, varint: 0, bytes: buffer.subarray(at, at + size) };
        at += size;
      } else {
        this.fail(`its bytes are not protobuf (wire type ${wireType} at byte ${start})`);
      }
    }
  }

  within(where: string): Reader {
    return new Reader(this.fileName, `${this.where} › ${where}`);
  }
}

const text = new TextDecoder('utf-8', { fatal: false });

function message(reader: Reader, field: Field, what: string): Uint8Array {
  if (field.wireType !== LENGTH_DELIMITED) reader.fail(`${what} is not a message`);
  return field.bytes;
}

function readDims(reader: Reader, shape: Uint8Array): (number | string | null)[] {
  const dims: (number | string | null)[] = [];
  for (const field of reader.fields(shape)) {
    if (field.number !== 1) continue; // TensorShapeProto.dim
    let dim: number | string | null = null;
    for (const part of reader.fields(message(reader, field, 'a dimension'))) {
      if (part.number === 1 && part.wireType === VARINT) dim = part.varint; // dim_value
      else if (part.number === 2 && part.wireType === LENGTH_DELIMITED) dim = text.decode(part.bytes); // dim_param
    }
    dims.push(dim);
  }
  return dims;
}

function readValueInfo(reader: Reader, bytes: Uint8Array): OnnxValueInfo {
  const info: OnnxValueInfo = { name: '', elemType: 0, dims: null };
  for (const field of reader.fields(bytes)) {
    if (field.number === 1 && field.wireType === LENGTH_DELIMITED) info.name = text.decode(field.bytes);
    if (field.number !== 2) continue; // ValueInfoProto.type
    for (const kind of reader.fields(message(reader, field, 'a type'))) {
      if (kind.number !== 1) continue; // TypeProto.tensor_type
      for (const part of reader.fields(message(reader, kind, 'a tensor type'))) {
        if (part.number === 1 && part.wireType === VARINT) info.elemType = part.varint;
        else if (part.number === 2) info.dims = readDims(reader.within('shape'), message(reader, part, 'a shape'));
      }
    }
  }
  return info;
}

/** The inputs, outputs, IR version and opsets of an ONNX model file; OnnxFileError when the bytes are not one. */
export function readOnnxInterface(bytes: Uint8Array, fileName: string): OnnxModelInterface {
  const model: Reader = new Reader(fileName, 'ModelProto');
  let irVersion: number | null = null;
  let graph: Uint8Array | null = null;
  const opsets: { domain: string; version: number }[] = [];
  for (const field of model.fields(bytes)) {
    if (field.number === 1 && field.wireType === VARINT) irVersion = field.varint;
    else if (field.number === 7) graph = message(model, field, 'the graph');
    else if (field.number === 8) {
      const opset = { domain: '', version: 0 };
      for (const part of model.fields(message(model, field, 'an opset import'))) {
        if (part.number === 1 && part.wireType === LENGTH_DELIMITED) opset.domain = text.decode(part.bytes);
        else if (part.number === 2 && part.wireType === VARINT) opset.version = part.varint;
      }
      opsets.push(opset);
    }
  }
  if (irVersion === null) model.fail('no ir_version');
  if (graph === null) model.fail('no graph');
  if (opsets.length === 0) model.fail('no opset_import');

  const reader: Reader = model.within('GraphProto');
  const declared: OnnxValueInfo[] = [];
  const outputs: OnnxValueInfo[] = [];
  const initializers = new Set<string>();
  let nodes = 0;
  for (const field of reader.fields(graph)) {
    if (field.number === 1) nodes++;
    else if (field.number === 11) declared.push(readValueInfo(reader.within('input'), message(reader, field, 'an input')));
    else if (field.number === 12) outputs.push(readValueInfo(reader.within('output'), message(reader, field, 'an output')));
    else if (field.number === 5) {
      // TensorProto.name (8); the data fields are skipped by length.
      for (const part of reader.fields(message(reader, field, 'an initializer'))) {
        if (part.number === 8 && part.wireType === LENGTH_DELIMITED) initializers.add(text.decode(part.bytes));
      }
    }
  }
  if (nodes === 0) reader.fail('the graph has no nodes');
  if (outputs.length === 0) reader.fail('the graph has no outputs');
  // Before IR version 4, initializers were listed among the inputs too; they need no feeding.
  return { irVersion, opsets, inputs: declared.filter((input) => !initializers.has(input.name)), outputs };
}

/** How the runner talks to a checked model. `vocab` is null when the file leaves the logits' last dim symbolic. */
export interface GenerationInterface {
  inputName: string;
  outputName: string;
  vocab: number | null;
}

const describeDims = (dims: OnnxValueInfo['dims']) => (dims === null ? 'no shape' : `[${dims.map((d) => d ?? '?').join(', ')}]`);

/**
 * Check that the model takes token ids int64 [batch, sequence] and nothing else, and returns logits float
 * [batch, sequence, vocab] with a vocabulary that covers the tokenizer's ids (`tokenizerVocab`).
 */
export function checkGenerationInterface(model: OnnxModelInterface, fileName: string, tokenizerVocab: number): GenerationInterface {
  const fail = (field: string, detail: string): never => {
    throw new OnnxFileError(fileName, detail, { field });
  };
  const feedsOnly = 'this runner feeds only token ids int64 [batch, sequence] (no attention mask, no KV cache), as tabtune\'s ONNX export takes';
  if (model.inputs.length !== 1) {
    const names = model.inputs.map((input) => JSON.stringify(input.name)).join(', ');
    fail('graph.input', model.inputs.length === 0 ? `the model takes no inputs; ${feedsOnly}` : `the model needs ${model.inputs.length} inputs (${names}); ${feedsOnly}`);
  }
  const [input] = model.inputs;
  if (input.elemType !== INT64 || (input.dims !== null && input.dims.length !== 2)) {
    fail('graph.input', `the input ${JSON.stringify(input.name)} is ${elementTypeName(input.elemType)} ${describeDims(input.dims)}; ${feedsOnly}`);
  }
  const output = model.outputs.find((candidate) => candidate.name === 'logits') ?? model.outputs[0];
  if (output.elemType !== FLOAT || (output.dims !== null && output.dims.length !== 3)) {
    fail('graph.output', `the output ${JSON.stringify(output.name)} is ${elementTypeName(output.elemType)} ${describeDims(output.dims)}, not logits float32 [batch, sequence, vocab]`);
  }
  const last = output.dims?.[2];
  const vocab = typeof last === 'number' && last > 0 ? last : null;
  if (vocab !== null) checkVocab(fileName, vocab, tokenizerVocab);
  return { inputName: input.name, outputName: output.name, vocab };
}

/** The logits must cover every id of the loaded model's tokenizer (a larger, padded vocabulary is fine). */
export function checkVocab(fileName: string, vocab: number, tokenizerVocab: number): void {
  if (vocab < tokenizerVocab) {
    throw new OnnxFileError(
      fileName,
      `the model scores ${vocab} tokens, but the loaded model's tokenizer has ${tokenizerVocab}: this file is not of the loaded model (load the model it was exported from)`,
      { field: 'graph.output' },
    );
  }
}
