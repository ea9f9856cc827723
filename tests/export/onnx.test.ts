// ONNX export: the exported file of each fixture and of the demo model runs in ONNX Runtime Web (wasm
// backend, one thread, in Node) and reproduces the engine's logits and the PyTorch golden logits; the graph
// has the agreed input/output names and symbolic dims; the file holds each weight once; weights that do not
// form a plain model (an unmerged LoRA adapter, a missing tensor, a wrong size) are refused by name.

import { readdirSync, readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { exportOnnx, exportOnnxFromWeights, OnnxExportError } from '../../src/export/exportOnnx.ts';
import { BATCH_DIM, INPUT_NAME, OUTPUT_NAME, SEQUENCE_DIM } from '../../src/export/onnxGraph.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { loadModel, type ModelFileProvider } from '../../src/models/load.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { expectedTensors } from '../../src/models/weights.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, relativeError, rng } from '../helpers/numeric.ts';
import { fixtureProvider, memoryProvider, readGolden, sliceTokens } from '../models/helpers.ts';

const TOLERANCE = 1e-4;
const FIXTURES = ['llama', 'qwen2', 'gpt2', 'llama3'] as const;
const errors: string[] = [];

beforeAll(() => {
  // The Node build of onnxruntime-web loads its .wasm from its own dist/ folder; one thread and no proxy
  // worker keep it inside the test worker.
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
});

afterAll(() => {
  console.info(`max relative error of ONNX Runtime Web:\n  ${errors.join('\n  ')}`);
});

function demoProvider(): ModelFileProvider {
  const folder = new URL('../../public/demo/', import.meta.url);
  const files = new Map<string, Uint8Array>();
  for (const file of readdirSync(folder)) files.set(file, new Uint8Array(readFileSync(new URL(file, folder))));
  return memoryProvider(files, 'public/demo');
}

async function session(bytes: Uint8Array): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
}

/** Logits [B, T, V] of the ONNX model for ids [B][T]. */
async function onnxLogits(s: ort.InferenceSession, ids: readonly (readonly number[])[]): Promise<{ dims: readonly number[]; data: Float32Array }> {
  const flat = BigInt64Array.from(ids.flat().map((id) => BigInt(id)));
  const outputs = await s.run({ [INPUT_NAME]: new ort.Tensor('int64', flat, [ids.length, ids[0].length]) });
  const logits = outputs[OUTPUT_NAME];
  expect(logits.type).toBe('float32');
  return { dims: logits.dims, data: logits.data as Float32Array };
}

async function engineLogits(engine: Engine, model: CausalLM, ids: readonly (readonly number[])[]): Promise<Float32Array> {
  return engine.scope(async () => (await model.forward(tokenTensor(engine, ids, model.config.vocabSize)).read()) as Float32Array);
}

/** File size bounds: every f32 weight once (a tied head adds nothing) plus the rotary tables, and little else. */
function expectSizeBound(bytes: Uint8Array, model: CausalLM): void {
  const c = model.config;
  const weightBytes = expectedTensors(c).reduce((sum, t) => sum + 4 * t.shape.reduce((a, b) => a * b, 1), 0);
  const rotaryBytes = c.family === 'llama' ? 2 * c.maxPositions * c.headDim * 4 : 0;
  expect(bytes.length).toBeGreaterThan(weightBytes + rotaryBytes);
  // Graph structure, names and small constants: well under 64 KiB for these sizes.
  expect(bytes.length).toBeLessThan(weightBytes + rotaryBytes + 64 * 1024);
}

function expectInterface(s: ort.InferenceSession, vocab: number): void {
  expect(s.inputNames).toEqual([INPUT_NAME]);
  expect(s.outputNames).toEqual([OUTPUT_NAME]);
  const [input] = s.inputMetadata;
  const [output] = s.outputMetadata;
  if (!input.isTensor || !output.isTensor) throw new Error('input and output must be tensors');
  expect(input.type).toBe('int64');
  expect(input.shape).toEqual([BATCH_DIM, SEQUENCE_DIM]);
  expect(output.type).toBe('float32');
  expect(output.shape).toEqual([BATCH_DIM, SEQUENCE_DIM, vocab]);
}

describe.each(FIXTURES)('%s fixture', (fixture) => {
  it('exports a file ONNX Runtime Web runs with the engine\'s and the golden logits', async () => {
    const golden = await readGolden(fixture);
    const engine = await testEngine();
    const { model } = await loadModel(engine, fixtureProvider(fixture));
    try {
      const bytes = await exportOnnx(model);
      expectSizeBound(bytes, model);
      const s = await session(bytes);
      try {
        expectInterface(s, model.config.vocabSize);
        const onnx = await onnxLogits(s, golden.ids);
        expect([...onnx.dims]).toEqual(golden.shape);
        const ours = await engineLogits(engine, model, golden.ids);
        errors.push(`${fixture}: vs engine ${relativeError(onnx.data, ours).toExponential(2)}, vs golden ${relativeError(onnx.data, golden.logits).toExponential(2)}`);
        expectClose(onnx.data, ours, TOLERANCE, `${fixture} ONNX vs engine`);
        expectClose(onnx.data, golden.logits, TOLERANCE, `${fixture} ONNX vs golden`);
        expect(Math.max(...golden.logits) - Math.min(...golden.logits)).toBeGreaterThan(1);

        // Dynamic dims: one row, a shorter prefix; causal, so the prefix's logits are the full run's.
        const [, T] = golden.shape;
        const prefix = [golden.ids[1].slice(0, T - 2)];
        const short = await onnxLogits(s, prefix);
        expect([...short.dims]).toEqual([1, T - 2, model.config.vocabSize]);
        const expected = sliceTokens(golden.logits, golden.shape, 0, T - 2).slice((T - 2) * model.config.vocabSize);
        expectClose(short.data, expected, TOLERANCE, `${fixture} ONNX prefix of row 1`);
      } finally {
        await s.release();
      }
    } finally {
      model.dispose();
    }
  });
});

describe('demo model (public/demo)', () => {
  it('exports a file whose logits match the engine on a batch of random ids', async () => {
    const engine = await testEngine();
    const { model } = await loadModel(engine, demoProvider());
    try {
      const V = model.config.vocabSize;
      const random = rng(2024);
      const ids = [0, 1].map(() => Array.from({ length: 9 }, () => Math.floor(random() * V)));
      const bytes = await exportOnnx(model);
      expectSizeBound(bytes, model);
      const s = await session(bytes);
      try {
        expectInterface(s, V);
        const onnx = await onnxLogits(s, ids);
        expect([...onnx.dims]).toEqual([2, 9, V]);
        const ours = await engineLogits(engine, model, ids);
        errors.push(`demo: vs engine ${relativeError(onnx.data, ours).toExponential(2)}`);
        expectClose(onnx.data, ours, TOLERANCE, 'demo ONNX vs engine');
        expect(Math.max(...ours) - Math.min(...ours)).toBeGreaterThan(1);
      } finally {
        await s.release();
      }
    } finally {
      model.dispose();
    }
  });
});

describe('weights that are not a plain model', () => {
  const config = parseModelConfig(readFileSync(new URL('../fixtures/models/llama/config.json', import.meta.url)));
  const plain = () => new Map(expectedTensors(config).map((t) => [t.name, new Float32Array(t.shape.reduce((a, b) => a * b, 1))]));

  it('exports zero weights of the right sizes (the host entry needs no GPU)', () => {
    const bytes = exportOnnxFromWeights(config, plain());
    expect(bytes.length).toBeGreaterThan(4 * [...plain().values()].reduce((sum, v) => sum + v.length, 0));
  });

  it('refuses an unmerged LoRA adapter, naming its tensors', () => {
    const weights = plain();
    weights.set('model.layers.0.self_attn.q_proj.lora_A.default.weight', new Float32Array(8 * 32));
    expect(() => exportOnnxFromWeights(config, weights)).toThrow(OnnxExportError);
    expect(() => exportOnnxFromWeights(config, weights)).toThrow(/lora_A\.default\.weight.*merge the adapter/);
  });

  it('refuses missing and mis-sized tensors, naming them', () => {
    const weights = plain();
    weights.delete('model.layers.1.mlp.up_proj.weight');
    weights.set('model.norm.weight', new Float32Array(31));
    expect(() => exportOnnxFromWeights(config, weights)).toThrow(/missing tensors: "model\.layers\.1\.mlp\.up_proj\.weight"/);
    expect(() => exportOnnxFromWeights(config, weights)).toThrow(/"model\.norm\.weight" has 31 values, \[32\] needs 32/);
  });

  it('refuses a bad rotary table length', () => {
    expect(() => exportOnnxFromWeights(config, plain(), { rotaryPositions: 0 })).toThrow(RangeError);
  });
});
