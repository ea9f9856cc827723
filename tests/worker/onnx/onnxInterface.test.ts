// The pre-flight check of .onnx files: the interface read from tabtune's own export of the demo model, and the
// refusals (not ONNX at all, truncated, inputs this runner cannot feed, outputs that are not logits, a vocabulary
// smaller than the tokenizer's), each naming the file.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { exportOnnxFromWeights } from '../../../src/export/exportOnnx.ts';
import { DataType, encodeModel, floatTensor, type ValueInfoProto } from '../../../src/export/onnxProto.ts';
import { parseModelConfig } from '../../../src/models/config.ts';
import { expectedTensors } from '../../../src/models/weights.ts';
import { checkGenerationInterface, OnnxFileError, readOnnxInterface } from '../../../src/worker/onnx/onnxInterface.ts';

const DEMO = new URL('../../../public/demo/', import.meta.url);
const config = parseModelConfig(readFileSync(new URL('config.json', DEMO)));
/** The demo architecture with zero weights: the file's structure is that of a real export. */
const demoExport = exportOnnxFromWeights(config, new Map(expectedTensors(config).map((t) => [t.name, new Float32Array(t.shape.reduce((a, b) => a * b, 1))])));

/** A one-node model (Identity or a MatMul by an initializer) with the given interface. */
function tinyModel(inputs: ValueInfoProto[], outputs: ValueInfoProto[], options: { irVersion?: number; initializerAsInput?: boolean } = {}): Uint8Array {
  const initializer = floatTensor('w', [2, 2], [1, 0, 0, 1]);
  const declared = options.initializerAsInput ? [...inputs, { name: 'w', elemType: DataType.FLOAT, dims: [2, 2] }] : inputs;
  return encodeModel({
    irVersion: options.irVersion ?? 8,
    opsetImports: [{ domain: '', version: 17 }],
    producerName: 'test',
    producerVersion: '0',
    graph: {
      name: 'g',
      nodes: [{ opType: 'Identity', inputs: [inputs[0]?.name ?? 'w'], outputs: [outputs[0].name] }],
      initializers: [initializer],
      inputs: declared,
      outputs,
    },
  });
}

const ids: ValueInfoProto = { name: 'input_ids', elemType: DataType.INT64, dims: ['batch', 'sequence'] };
const logits = (vocab: number | string): ValueInfoProto => ({ name: 'logits', elemType: DataType.FLOAT, dims: ['batch', 'sequence', vocab] });

describe('readOnnxInterface', () => {
  it('reads the interface of tabtune\'s export of the demo model', () => {
    const model = readOnnxInterface(demoExport, 'demo.onnx');
    expect(model.irVersion).toBe(8);
    expect(model.opsets).toEqual([{ domain: '', version: 17 }]);
    expect(model.inputs).toEqual([{ name: 'input_ids', elemType: 7, dims: ['batch', 'sequence'] }]);
    expect(model.outputs).toEqual([{ name: 'logits', elemType: 1, dims: ['batch', 'sequence', 4096] }]);
    expect(checkGenerationInterface(model, 'demo.onnx', 4096)).toEqual({ inputName: 'input_ids', outputName: 'logits', vocab: 4096 });
  });

  it('refuses files that are not ONNX models, naming the file', () => {
    const safetensors = readFileSync(new URL('model.safetensors', DEMO));
    expect(() => readOnnxInterface(safetensors, 'model.safetensors')).toThrow(OnnxFileError);
    expect(() => readOnnxInterface(safetensors, 'model.safetensors')).toThrow(/^"model\.safetensors": is not an ONNX model: /);
    const json = new TextEncoder().encode('{"model_type": "llama"}');
    expect(() => readOnnxInterface(json, 'config.json')).toThrow(/^"config\.json": is not an ONNX model: /);
    expect(() => readOnnxInterface(new Uint8Array(0), 'empty.onnx')).toThrow(/"empty\.onnx": is not an ONNX model: no ir_version/);
    // Cut in the middle of the weights: a field runs past the end.
    expect(() => readOnnxInterface(demoExport.subarray(0, demoExport.length >> 1), 'cut.onnx')).toThrow(/"cut\.onnx": is not an ONNX model: a field of \d+ bytes where \d+ remain/);
    try {
      readOnnxInterface(json, 'config.json');
    } catch (error) {
      expect((error as OnnxFileError).file).toBe('config.json');
    }
  });

  it('leaves out initializers that old files list among the inputs', () => {
    const model = readOnnxInterface(tinyModel([ids], [logits(2)], { irVersion: 3, initializerAsInput: true }), 'old.onnx');
    expect(model.inputs.map((input) => input.name)).toEqual(['input_ids']);
  });
});

describe('checkGenerationInterface', () => {
  const check = (bytes: Uint8Array, vocab = 4096) => () => checkGenerationInterface(readOnnxInterface(bytes, 'm.onnx'), 'm.onnx', vocab);

  it('refuses models that need more inputs than token ids (attention mask, KV cache)', () => {
    const mask: ValueInfoProto = { name: 'attention_mask', elemType: DataType.INT64, dims: ['batch', 'sequence'] };
    expect(check(tinyModel([ids, mask], [logits(4096)]))).toThrow(/"m\.onnx": the model needs 2 inputs \("input_ids", "attention_mask"\); this runner feeds only token ids int64 \[batch, sequence\]/);
  });

  it('refuses an input that is not int64 [batch, sequence]', () => {
    expect(check(tinyModel([{ name: 'x', elemType: DataType.FLOAT, dims: ['batch', 'sequence'] }], [logits(4096)]))).toThrow(/the input "x" is float32 \[batch, sequence\]/);
    expect(check(tinyModel([{ name: 'x', elemType: DataType.INT64, dims: [5] }], [logits(4096)]))).toThrow(/the input "x" is int64 \[5\]/);
  });

  it('refuses an output that is not logits float [batch, sequence, vocab]', () => {
    expect(check(tinyModel([ids], [{ name: 'hidden', elemType: DataType.FLOAT, dims: ['batch', 'sequence'] }]))).toThrow(/the output "hidden" is float32 \[batch, sequence\], not logits float32 \[batch, sequence, vocab\]/);
  });

  it('refuses a vocabulary smaller than the tokenizer\'s, and accepts a larger (padded) one', () => {
    expect(check(tinyModel([ids], [logits(1000)]))).toThrow(/"m\.onnx": the model scores 1000 tokens, but the loaded model's tokenizer has 4096: this file is not of the loaded model/);
    expect(check(tinyModel([ids], [logits(4100)]))()).toEqual({ inputName: 'input_ids', outputName: 'logits', vocab: 4100 });
    // A symbolic vocabulary is checked later, on the first run's output.
    expect(check(tinyModel([ids], [logits('vocab')]))()).toEqual({ inputName: 'input_ids', outputName: 'logits', vocab: null });
  });
});
