// A minimal, dependency-free protobuf writer for the ONNX messages an exported decoder needs: ModelProto,
// GraphProto, NodeProto, AttributeProto, TensorProto (FLOAT / INT64 as raw_data), ValueInfoProto with
// TypeProto.Tensor and symbolic dims, OperatorSetIdProto. Field numbers are those of onnx/onnx.proto.
//
// Messages are encoded into lists of byte chunks with known lengths, so a nested message's length prefix is
// known without copying its body: tensor data is copied exactly once, into the final file.

/** TensorProto.DataType values used here. */
export const DataType = { FLOAT: 1, INT64: 7 } as const;
export type DataTypeId = (typeof DataType)[keyof typeof DataType];

/** A protobuf file must stay below 2 GiB (the limit of protobuf parsers; ONNX's external data is not written). */
export const PROTOBUF_MAX_BYTES = 2 ** 31 - 1;

export interface TensorProto {
  readonly name: string;
  readonly dataType: DataTypeId;
  readonly dims: readonly number[];
  /** Little-endian element bytes (4 per FLOAT, 8 per INT64). */
  readonly rawData: Uint8Array;
}

export type AttributeValue =
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'int'; readonly value: number }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'floats'; readonly value: readonly number[] }
  | { readonly type: 'ints'; readonly value: readonly number[] }
  | { readonly type: 'tensor'; readonly value: TensorProto };

export interface AttributeProto {
  readonly name: string;
  readonly value: AttributeValue;
}

export interface NodeProto {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly domain?: string;
  readonly attributes?: readonly AttributeProto[];
}

/** A graph input or output: element type and dims, each a size or a symbolic name (`batch`). */
export interface ValueInfoProto {
  readonly name: string;
  readonly elemType: DataTypeId;
  readonly dims: readonly (number | string)[];
}

export interface GraphProto {
  readonly name: string;
  readonly nodes: readonly NodeProto[];
  readonly initializers: readonly TensorProto[];
  readonly inputs: readonly ValueInfoProto[];
  readonly outputs: readonly ValueInfoProto[];
  readonly docString?: string;
}

export interface OperatorSetIdProto {
  readonly domain: string;
  readonly version: number;
}

export interface ModelProto {
  readonly irVersion: number;
  readonly opsetImports: readonly OperatorSetIdProto[];
  readonly producerName: string;
  readonly producerVersion: string;
  readonly graph: GraphProto;
  readonly docString?: string;
  readonly metadata?: ReadonlyMap<string, string>;
}

// Wire types.
const VARINT = 0;
const FIXED32 = 5;
const LENGTH_DELIMITED = 2;

/** A message body under construction: chunks in order and their total length. */
class Message {
  readonly chunks: Uint8Array[] = [];
  length = 0;
  private scratch: number[] = [];

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    this.chunks.push(Uint8Array.from(this.scratch)); // already counted in length
    this.scratch = [];
  }

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  private byte(value: number): void {
    this.scratch.push(value);
    this.length++;
  }

  /** An unsigned varint of up to 64 bits; negative int64 values go as their two's complement (10 bytes). */
  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.byte(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.byte(Number(v));
  }

  private tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  int(field: number, value: number): void {
    if (!Number.isSafeInteger(value)) throw new RangeError(`protobuf field ${field}: ${value} is not a safe integer`);
    this.tag(field, VARINT);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, FIXED32);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    for (const b of bytes) this.byte(b);
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, LENGTH_DELIMITED);
    this.varint(value.length);
    if (value.length < 64) {
      for (const b of value) this.byte(b);
    } else {
      this.flushScratch();
      this.push(value);
    }
  }

  string(field: number, value: string): void {
    this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, body: Message): void {
    body.flushScratch();
    this.tag(field, LENGTH_DELIMITED);
    this.varint(body.length);
    this.flushScratch();
    for (const chunk of body.chunks) this.push(chunk);
  }

  /** A packed repeated int64 field. */
  packedInts(field: number, values: readonly number[]): void {
    const body = new Message();
    for (const value of values) {
      if (!Number.isSafeInteger(value)) throw new RangeError(`protobuf field ${field}: ${value} is not a safe integer`);
      body.varint(value);
    }
    this.message(field, body);
  }

  /** A packed repeated float field. */
  packedFloats(field: number, values: readonly number[]): void {
    const bytes = new Uint8Array(values.length * 4);
    const view = new DataView(bytes.buffer);
    values.forEach((value, i) => view.setFloat32(i * 4, value, true));
    this.bytes(field, bytes);
  }

  finish(): Uint8Array {
    this.flushScratch();
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }

  seal(): Message {
    this.flushScratch();
    return this;
  }
}

const ELEMENT_BYTES: Record<DataTypeId, number> = { [DataType.FLOAT]: 4, [DataType.INT64]: 8 };

function tensorMessage(tensor: TensorProto): Message {
  const count = tensor.dims.reduce((a, b) => a * b, 1);
  if (tensor.rawData.length !== count * ELEMENT_BYTES[tensor.dataType]) {
    throw new RangeError(`ONNX tensor ${tensor.name}: ${tensor.rawData.length} bytes of data for dims [${tensor.dims.join(', ')}]`);
  }
  const m = new Message();
  if (tensor.dims.length) m.packedInts(1, tensor.dims); // dims
  m.int(2, tensor.dataType); // data_type
  m.string(8, tensor.name); // name
  m.bytes(9, tensor.rawData); // raw_data
  return m.seal();
}

// AttributeProto.AttributeType
const ATTRIBUTE_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

function attributeMessage(attribute: AttributeProto): Message {
  const m = new Message();
  m.string(1, attribute.name); // name
  const { value } = attribute;
  m.int(20, ATTRIBUTE_TYPE[value.type]); // type
  switch (value.type) {
    case 'float':
      m.float(2, value.value); // f
      break;
    case 'int':
      m.int(3, value.value); // i
      break;
    case 'string':
      m.string(4, value.value); // s
      break;
    case 'tensor':
      m.message(5, tensorMessage(value.value)); // t
      break;
    case 'floats':
      m.packedFloats(7, value.value); // floats
      break;
    case 'ints':
      m.packedInts(8, value.value); // ints
      break;
  }
  return m.seal();
}

function nodeMessage(node: NodeProto): Message {
  const m = new Message();
  for (const input of node.inputs) m.string(1, input); // input
  for (const output of node.outputs) m.string(2, output); // output
  if (node.name) m.string(3, node.name); // name
  m.string(4, node.opType); // op_type
  for (const attribute of node.attributes ?? []) m.message(5, attributeMessage(attribute)); // attribute
  if (node.domain) m.string(7, node.domain); // domain
  return m.seal();
}

function valueInfoMessage(info: ValueInfoProto): Message {
  const shape = new Message(); // TensorShapeProto
  for (const dim of info.dims) {
    const d = new Message(); // TensorShapeProto.Dimension
    if (typeof dim === 'string') d.string(2, dim); // dim_param
    else d.int(1, dim); // dim_value
    shape.message(1, d.seal()); // dim
  }
  const tensorType = new Message(); // TypeProto.Tensor
  tensorType.int(1, info.elemType); // elem_type
  tensorType.message(2, shape.seal()); // shape
  const type = new Message(); // TypeProto
  type.message(1, tensorType.seal()); // tensor_type
  const m = new Message();
  m.string(1, info.name); // name
  m.message(2, type.seal()); // type
  return m.seal();
}

function graphMessage(graph: GraphProto): Message {
  const m = new Message();
  for (const node of graph.nodes) m.message(1, nodeMessage(node)); // node
  m.string(2, graph.name); // name
  for (const tensor of graph.initializers) m.message(5, tensorMessage(tensor)); // initializer
  if (graph.docString) m.string(10, graph.docString); // doc_string
  for (const input of graph.inputs) m.message(11, valueInfoMessage(input)); // input
  for (const output of graph.outputs) m.message(12, valueInfoMessage(output)); // output
  return m.seal();
}

/** Serialize a model to the bytes of a .onnx file. */
export function encodeModel(model: ModelProto): Uint8Array {
  const m = new Message();
  m.int(1, model.irVersion); // ir_version
  m.string(2, model.producerName); // producer_name
  m.string(3, model.producerVersion); // producer_version
  if (model.docString) m.string(6, model.docString); // doc_string
  m.message(7, graphMessage(model.graph)); // graph
  for (const opset of model.opsetImports) {
    const o = new Message();
    o.string(1, opset.domain); // domain
    o.int(2, opset.version); // version
    m.message(8, o.seal()); // opset_import
  }
  for (const [key, value] of model.metadata ?? []) {
    const entry = new Message(); // StringStringEntryProto
    entry.string(1, key);
    entry.string(2, value);
    m.message(14, entry.seal()); // metadata_props
  }
  m.seal();
  if (m.length > PROTOBUF_MAX_BYTES) {
    throw new RangeError(`the ONNX model would take ${m.length} bytes; a single protobuf file must stay below 2 GiB (external data is not supported)`);
  }
  return m.finish();
}

/** A FLOAT tensor from f32 values (copied, little-endian). */
export function floatTensor(name: string, dims: readonly number[], values: Float32Array | readonly number[]): TensorProto {
  const data = values instanceof Float32Array ? values : Float32Array.from(values);
  const rawData = new Uint8Array(data.length * 4);
  const view = new DataView(rawData.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return { name, dataType: DataType.FLOAT, dims: [...dims], rawData };
}

/** An INT64 tensor from safe integers. */
export function int64Tensor(name: string, dims: readonly number[], values: readonly number[]): TensorProto {
  const rawData = new Uint8Array(values.length * 8);
  const view = new DataView(rawData.buffer);
  values.forEach((value, i) => {
    if (!Number.isSafeInteger(value)) throw new RangeError(`ONNX tensor ${name}: ${value} is not a safe integer`);
    view.setBigInt64(i * 8, BigInt(value), true);
  });
  return { name, dataType: DataType.INT64, dims: [...dims], rawData };
}
