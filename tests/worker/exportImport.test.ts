// The worker's export and import calls on a real engine in Node (the worker's state set up as loadModel leaves it):
//   - importing PEFT's own LoRA fixtures (made with PyTorch, float64 golden logits) through importAdapterCall, as a
//     zip, as the two files and as a tabtune bundle, reproduces the golden logits;
//   - the merged export computes W + s·B·A per weight (f64 reference here), leaves the model and adapter exactly as
//     they were (logits bit for bit), and its zip loads with the project's loader to the adapted logits (and to
//     the golden ones); its ONNX file runs in ONNX Runtime Web to the same logits and is kept for the playground;
//   - QLoRA: the merge goes into the dequantized weights and reproduces the NF4 model's logits;
//   - an import that fails leaves the attached adapter in place; a bottleneck adapter is refused by the merge,
//     round-trips through its zip download, and imports from AdapterHub's fixtures to their golden logits.

import * as ort from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { INPUT_NAME, OUTPUT_NAME } from '../../src/export/onnxGraph.ts';
import { FormatError } from '../../src/io/errors.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { readZip, writeZip } from '../../src/io/zipFiles.ts';
import { loadModel } from '../../src/models/load.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { LoraLinear } from '../../src/peft/loraLinear.ts';
import { bundleAdapter } from '../../src/worker/adapterBundle.ts';
import { exportAdapterCall } from '../../src/worker/calls/exportAdapter.ts';
import { addLoraUpdate, mergedWeights } from '../../src/peft/mergedExport.ts';
import { exportMergedCall } from '../../src/worker/calls/exportMerged.ts';
import { importAdapterCall } from '../../src/worker/calls/importAdapter.ts';
import { attachMethod } from '../../src/worker/calls/method.ts';
import { disposeLoaded, engineState, type CallContext } from '../../src/worker/engineState.ts';
import type { DeviceSummary, EngineEvent, MethodSettings, ModelSummary } from '../../src/worker/protocol.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { memoryProvider } from '../models/helpers.ts';
import { adapterFiles as bottleneckFiles, readAdapterGolden } from '../peft/bottleneckHelpers.ts';
import { adapterFiles, readPeftGolden, type PeftCase } from '../peft/helpers.ts';

const TOLERANCE = 1e-4;
const notes: string[] = [];
/** expectClose, with the relative error noted for the summary printed after the file. */
function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  notes.push(`${what}: ${relativeError(actual, expected).toExponential(2)}`);
  expectClose(actual, expected, tolerance, what);
}
const PAGE_SETTINGS: MethodSettings = { method: 'lora', r: 8, alpha: 16, dropout: 0, useRslora: false, targetModules: null, reductionFactor: 16, placement: 'pfeiffer' };

let engine: Engine;
afterAll(() => console.info(`max relative errors:\n  ${notes.join('\n  ')}`));

beforeAll(async () => {
  engine = await testEngine();
  engineState.device = { gpu: engine.gpu, engine, summary: {} as DeviceSummary };
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
});

/** Put a fixture model in the worker's state, as loadModelCall leaves it. */
async function loadFixture(fixture: string): Promise<void> {
  disposeLoaded();
  const files = localDirectory(new URL(`../fixtures/models/${fixture}/`, import.meta.url).pathname);
  const { model, plan } = await loadModel(engine, files);
  engineState.loaded = { model, tokenizer: null as never, chatTemplate: null, summary: { name: `tests/fixtures/models/${fixture}` } as ModelSummary, quantized: false, files, plan };
}

async function logitsOf(model: CausalLM, ids: number[][]): Promise<Float32Array> {
  return engine.scope(async () => (await engine.noGrad(() => model.forward(tokenTensor(engine, ids, model.config.vocabSize))).read()) as Float32Array);
}

const loaded = () => engineState.loaded!;
const file = (name: string, bytes: Uint8Array) => new File([bytes as BlobPart], name);
const events: EngineEvent[] = [];
const ctx: CallContext = { id: 1, signal: new AbortController().signal, emit: (event) => events.push(event) };

/** The three ways of picking PEFT files. */
function picks(files: Map<string, Uint8Array>): Record<string, File[]> {
  const config = files.get('adapter_config.json')!;
  const weights = files.get('adapter_model.safetensors')!;
  const bundle = bundleAdapter({ layout: 'peft', configFile: 'adapter_config.json', config: new TextDecoder().decode(config), weightsFile: 'adapter_model.safetensors', weights });
  return {
    zip: [file('peft-adapter.zip', writeZip([['my-adapter/adapter_config.json', config], ['my-adapter/adapter_model.safetensors', weights]]))],
    files: [file('adapter_config.json', config), file('adapter_model.safetensors', weights)],
    bundle: [file('adapter.safetensors', bundle)],
  };
}

async function loadZip(zip: Uint8Array): Promise<{ model: CausalLM; files: Map<string, Uint8Array> }> {
  const files = readZip(zip, 'merged.zip');
  const { model } = await loadModel(engine, memoryProvider(files, 'merged.zip'));
  return { model, files };
}

async function onnxLogits(bytes: Uint8Array, ids: number[][]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  try {
    const flat = BigInt64Array.from(ids.flat().map((id) => BigInt(id)));
    const outputs = await session.run({ [INPUT_NAME]: new ort.Tensor('int64', flat, [ids.length, ids[0].length]) });
    return outputs[OUTPUT_NAME].data as Float32Array;
  } finally {
    await session.release();
  }
}

describe.each(['llama-qvd', 'gpt2-rslora', 'llama-layer1'] as PeftCase[])('LoRA %s', (name) => {
  it('imports in every form to the golden logits; the merged zip and ONNX file reproduce them; nothing attached changes', { timeout: 120_000 }, async () => {
    const golden = await readPeftGolden(name);
    await loadFixture(golden.fixture);
    const peftFiles = adapterFiles(name);
    for (const [how, files] of Object.entries(picks(peftFiles))) {
      const result = await importAdapterCall({ files, settings: PAGE_SETTINGS });
      expect(result.layout, how).toBe('peft');
      expectNear(await logitsOf(loaded().model, golden.ids), golden.logits, TOLERANCE, `${name} imported as ${how}`);
    }
    const attached = engineState.adapted!;
    const config = JSON.parse(new TextDecoder().decode(peftFiles.get('adapter_config.json')!)) as { r: number; lora_alpha: number; use_rslora: boolean; lora_dropout: number };
    expect(attached.summary.settings).toMatchObject({ method: 'lora', r: config.r, alpha: config.lora_alpha, useRslora: config.use_rslora, dropout: config.lora_dropout });
    expect(attached.key).toBe(JSON.stringify(attached.summary.settings));
    expect(attached.peft!.adapterNames).toEqual(['default']);

    // The merged weights: W + s·B·A, computed here in f64 from the same tensors.
    const model = loaded().model;
    const before = await logitsOf(model, golden.ids);
    const weights = await mergedWeights(model, loaded().plan);
    let checked = 0;
    let weightError = 0;
    for (const [path, module] of model.linears().entries()) {
      if (!(module instanceof LoraLinear)) continue;
      const adapter = module.adapters.get('default')!;
      const base = (await module.base.parameters().get(`${path}.weight`)!.read()) as Float32Array;
      const [A, B] = [(await adapter.A.read()) as Float32Array, (await adapter.B.read()) as Float32Array];
      const { inFeatures: I, outFeatures: O } = module;
      const inOut = model.config.family === 'gpt2';
      const expected = Float64Array.from(base);
      for (let o = 0; o < O; o++) {
        for (let i = 0; i < I; i++) {
          let sum = 0;
          for (let k = 0; k < adapter.r; k++) sum += B[o * adapter.r + k] * A[k * I + i];
          expected[inOut ? i * O + o : o * I + i] += adapter.scaling * sum;
        }
      }
      weightError = Math.max(weightError, relativeError(weights.get(`${path}.weight`)!, expected));
      expectClose(weights.get(`${path}.weight`)!, expected, 1e-6, `${path} merged weight`);
      expect(relativeError(weights.get(`${path}.weight`)!, base)).toBeGreaterThan(1e-4); // the update is not negligible
      checked++;
    }
    expect(checked).toBe(attached.summary.targets.length);
    notes.push(`${name} merged weights vs f64 W + s·B·A (${checked} layers): ${weightError.toExponential(2)}`);

    events.length = 0;
    const zip = await exportMergedCall({ format: 'zip' }, ctx);
    expect(zip.fileName).toBe('tabtune-lora-merged.zip');
    expect(events.some((e) => e.type === 'exportProgress' && e.phase === 'read' && e.done === e.total)).toBe(true);
    const onnx = await exportMergedCall({ format: 'onnx' }, ctx);
    expect(onnx.fileName).toBe('tabtune-lora-merged.onnx');
    expect(engineState.lastOnnx?.bytes).toBe(onnx.bytes);

    // Nothing attached changed: the adapted logits are the same bits, the adapter is the same object.
    expect(engineState.adapted).toBe(attached);
    expect(Array.from(await logitsOf(model, golden.ids))).toEqual(Array.from(before));

    const merged = await loadZip(zip.bytes);
    try {
      expect([...merged.files.keys()]).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
      expect(JSON.parse(new TextDecoder().decode(merged.files.get('config.json')!))).toMatchObject({ torch_dtype: 'float32' });
      const mergedLogits = await logitsOf(merged.model, golden.ids);
      expectNear(mergedLogits, before, TOLERANCE, `${name} merged zip vs adapted`);
      expectNear(mergedLogits, golden.logits, TOLERANCE, `${name} merged zip vs golden`);
      expectNear(await onnxLogits(onnx.bytes, golden.ids), mergedLogits, TOLERANCE, `${name} ONNX vs merged zip`);
    } finally {
      merged.model.dispose();
    }

    // The adapter's own downloads come back in as the same adapter, with the same settings (the key a run continues).
    for (const format of ['zip', 'safetensors'] as const) {
      const download = await exportAdapterCall({ format });
      expect(download.fileName).toBe(`tabtune-lora-adapter.${format}`);
      const again = await importAdapterCall({ files: [file(download.fileName, download.bytes)], settings: attached.summary.settings });
      expect(again.attached.settings).toEqual(attached.summary.settings);
      expect(Array.from(await logitsOf(model, golden.ids))).toEqual(Array.from(before));
    }
    const zipped = readZip((await exportAdapterCall({ format: 'zip' })).bytes, 'adapter.zip');
    expect([...zipped.keys()]).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(JSON.parse(new TextDecoder().decode(zipped.get('adapter_config.json')!))).toMatchObject({ peft_type: 'LORA', r: config.r });
  });
});

it('QLoRA: imports onto NF4 layers, and the merge goes into the dequantized weights', { timeout: 120_000 }, async () => {
  const golden = await readPeftGolden('llama-qvd');
  await loadFixture(golden.fixture);
  const result = await importAdapterCall({ files: picks(adapterFiles('llama-qvd')).zip, settings: { ...PAGE_SETTINGS, method: 'qlora' } });
  expect(result.attached.settings.method).toBe('qlora');
  expect(loaded().quantized).toBe(true);
  const model = loaded().model;
  const adapted = await logitsOf(model, golden.ids);
  // NF4 weights compute another function than the f32 golden one: the merge must follow the NF4 one.
  expect(relativeError(adapted, golden.logits)).toBeGreaterThan(1e-2);
  const zip = await exportMergedCall({ format: 'zip' }, ctx);
  expect(zip.fileName).toBe('tabtune-qlora-merged.zip');
  expect(Array.from(await logitsOf(model, golden.ids))).toEqual(Array.from(adapted));
  const merged = await loadZip(zip.bytes);
  try {
    const config = JSON.parse(new TextDecoder().decode(merged.files.get('config.json')!)) as Record<string, unknown>;
    expect(config.quantization_config).toBeUndefined();
    expectNear(await logitsOf(merged.model, golden.ids), adapted, TOLERANCE, 'QLoRA merged zip vs the NF4 model with its adapter');
  } finally {
    merged.model.dispose();
  }
});

it('a failed import leaves the attached adapter in place, and names the picked file and the field', { timeout: 60_000 }, async () => {
  const golden = await readPeftGolden('llama-qvd');
  await loadFixture(golden.fixture);
  await importAdapterCall({ files: picks(adapterFiles('llama-qvd')).files, settings: PAGE_SETTINGS });
  const attached = engineState.adapted;
  const before = await logitsOf(loaded().model, golden.ids);

  const files = adapterFiles('llama-qvd');
  const config = JSON.parse(new TextDecoder().decode(files.get('adapter_config.json')!)) as Record<string, unknown>;
  const wrongRank = writeZip([['adapter_config.json', new TextEncoder().encode(JSON.stringify({ ...config, r: 3 }))], ['adapter_model.safetensors', files.get('adapter_model.safetensors')!]]);
  const error = await importAdapterCall({ files: [file('wrong-rank.zip', wrongRank)], settings: PAGE_SETTINGS }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(FormatError);
  expect((error as FormatError).file).toBe('wrong-rank.zip');
  expect((error as Error).message).toMatch(/^"wrong-rank\.zip": "adapter_model\.safetensors": tensor "base_model\.model\.model\.layers\.\d\.[a-z_.]+\.lora_A\.weight" is \[4, \d+\], expected lora_A \[3, \d+\] \(\[r, in\] with r = 3\)$/);

  const notSafetensors = await importAdapterCall({ files: [file('notes.safetensors', new TextEncoder().encode('just some notes, not an adapter at all'))], settings: PAGE_SETTINGS }).catch((e: unknown) => e);
  expect((notSafetensors as FormatError).file).toBe('notes.safetensors');

  expect(engineState.adapted).toBe(attached);
  expect(Array.from(await logitsOf(loaded().model, golden.ids))).toEqual(Array.from(before));
});

it('a model too large for the format is refused before anything is read back', async () => {
  await loadFixture('llama');
  const plan = loaded().plan;
  try {
    loaded().plan = { ...plan, f32Bytes: 2 ** 31 };
    await expect(exportMergedCall({ format: 'onnx' }, ctx)).rejects.toThrow(/^the merged model takes 2\.00 GiB in f32, more than one \.onnx file holds \(2 GiB; external data is not written\)$/);
    loaded().plan = { ...plan, f32Bytes: 2 ** 32 };
    await expect(exportMergedCall({ format: 'zip' }, ctx)).rejects.toThrow(/more than a zip archive without ZIP64 holds \(4 GiB\)$/);
  } finally {
    loaded().plan = plan;
  }
  // With no adapter attached the base model is exported as it is.
  const base = await exportMergedCall({ format: 'zip' }, ctx);
  expect(base.fileName).toBe('tabtune-base-model.zip');
});

describe('bottleneck adapters', () => {
  it('AdapterHub fixtures import to their golden logits; the merge refuses them; the zip download comes back in', { timeout: 120_000 }, async () => {
    const golden = await readAdapterGolden('llama-pfeiffer');
    await loadFixture('llama');
    const files = bottleneckFiles('llama-pfeiffer');
    const zip = writeZip([...files].filter(([n]) => n.startsWith('adapter')));
    const result = await importAdapterCall({ files: [file('pfeiffer.zip', zip)], settings: PAGE_SETTINGS });
    expect(result.layout).toBe('adapterhub');
    expect(result.attached.settings).toMatchObject({ method: 'adapter', placement: 'pfeiffer', reductionFactor: 4, r: 8, alpha: 16 });
    const logits = await logitsOf(loaded().model, golden.ids);
    expectNear(logits, golden.logits, TOLERANCE, 'imported bottleneck adapter');

    const refusal = await exportMergedCall({ format: 'zip' }, ctx).catch((e: unknown) => e);
    expect((refusal as Error).message).toMatch(/bottleneck adapters cannot be merged into the model/);

    const download = await exportAdapterCall({ format: 'zip' });
    expect(download.fileName).toBe('tabtune-adapter-adapter.zip');
    expect([...readZip(download.bytes, 'a.zip').keys()]).toEqual(['adapter_config.json', 'adapter.safetensors']);
    const again = await importAdapterCall({ files: [file(download.fileName, download.bytes)], settings: result.attached.settings });
    expect(again.attached.settings).toEqual(result.attached.settings);
    expect(Array.from(await logitsOf(loaded().model, golden.ids))).toEqual(Array.from(logits));
  });

  it('a LoRA import replaces an attached bottleneck adapter (and the reverse)', { timeout: 60_000 }, async () => {
    const golden = await readPeftGolden('llama-qvd');
    await loadFixture(golden.fixture);
    await attachMethod({ ...PAGE_SETTINGS, method: 'adapter' });
    await importAdapterCall({ files: picks(adapterFiles('llama-qvd')).bundle, settings: PAGE_SETTINGS });
    expect(engineState.adapted?.bottleneck).toBeNull();
    expectNear(await logitsOf(loaded().model, golden.ids), golden.logits, TOLERANCE, 'LoRA after a bottleneck adapter');

    const hub = await readAdapterGolden('llama-pfeiffer');
    await importAdapterCall({ files: [file('pfeiffer.zip', writeZip([...bottleneckFiles('llama-pfeiffer')]))], settings: PAGE_SETTINGS });
    expect(engineState.adapted?.peft).toBeNull();
    expect(loaded().model.linears().entries().some(([, m]) => m instanceof LoraLinear)).toBe(false);
    expectNear(await logitsOf(loaded().model, hub.ids), hub.logits, TOLERANCE, 'bottleneck after LoRA');
  });
});

it('addLoraUpdate adds s·B·A in both layouts', () => {
  const [I, O, r] = [3, 2, 2];
  const A = Float32Array.from([1, 2, 3, 4, 5, 6]); // [r, I]
  const B = Float32Array.from([1, 0, 0, 2]); // [O, r]
  const outIn = new Float32Array(O * I);
  addLoraUpdate(outIn, A, B, 0.5, r, I, O, false);
  expect(Array.from(outIn)).toEqual([0.5, 1, 1.5, 4, 5, 6]);
  const inOut = new Float32Array(O * I);
  addLoraUpdate(inOut, A, B, 0.5, r, I, O, true);
  expect(Array.from(inOut)).toEqual([0.5, 4, 1, 5, 1.5, 6]);
  expect(() => addLoraUpdate(new Float32Array(5), A, B, 1, r, I, O, false)).toThrow(RangeError);
});
