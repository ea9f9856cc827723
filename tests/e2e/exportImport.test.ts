// Export and import in a real Chromium (WebGPU on SwiftShader), against the production build: train LoRA for two
// steps at a high learning rate, then
//   - download the merged model (zip), unpack it in Node and load it with the project's loader: its logits equal
//     those of the demo model with the downloaded adapter (adapter zip, imported in Node with peftFiles.ts);
//   - download the ONNX file and run it with ONNX Runtime Web (wasm, in Node): the merged model's logits again;
//   - download the adapter as a zip of PEFT's two files and parse both;
//   - in a fresh page, load the demo model, import the adapter zip: the playground's greedy text is the one the
//     trained page generated (and not the base model's); a text file renamed .safetensors is refused by name and
//     leaves the imported adapter in place; a run started then continues the imported adapter (its first-step loss
//     is not the one the first page's fresh adapter, equal to the base model, had on the same batch).

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-web';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { INPUT_NAME, OUTPUT_NAME } from '../../src/export/onnxGraph.ts';
import { bytesSource, readSafetensors } from '../../src/io/safetensors.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer, type Tokenizer } from '../../src/io/tokenizer.ts';
import { readZip } from '../../src/io/zipFiles.ts';
import { loadModel } from '../../src/models/load.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { importLoraAdapter } from '../../src/peft/peftFiles.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { memoryProvider } from '../models/helpers.ts';
import { downloadOf, fillGenesisRun, greedyText, loadDemo, openWithDemo, startApp, trainSteps, type App } from './browser.ts';

const DEMO = fileURLToPath(new URL('../../public/demo/', import.meta.url));
const golden = JSON.parse(readFileSync(new URL('../fixtures/demo/golden.json', import.meta.url), 'utf8')) as {
  cases: { prompt: string; greedy_new_tokens: number[] }[];
};
const PROMPT = 'In the beginning God created';
const NEW_TOKENS = 8;
const TOLERANCE = 1e-4;

let app: App;
let folder: string;
let tokenizer: Tokenizer;
/** PyTorch's greedy continuation of PROMPT by the demo model. */
let baseText: string;

beforeAll(async () => {
  folder = mkdtempSync(join(tmpdir(), 'tabtune-export-'));
  tokenizer = await loadTokenizer(localDirectory(DEMO));
  baseText = tokenizer.decode(golden.cases.find((c) => c.prompt === PROMPT)!.greedy_new_tokens.slice(0, NEW_TOKENS), { skipSpecialTokens: true });
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  app = await startApp();
});
afterAll(async () => {
  await app?.close();
  if (folder) rmSync(folder, { recursive: true, force: true });
});

async function logitsOf(model: CausalLM, ids: number[][]): Promise<Float32Array> {
  const { engine } = model;
  return engine.scope(async () => (await engine.noGrad(() => model.forward(tokenTensor(engine, ids, model.config.vocabSize))).read()) as Float32Array);
}

it('downloads the merged model, its ONNX file and the adapter zip, and imports the adapter into a fresh page', { timeout: 900_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, app.url);

  await page.getByTestId('method-select').selectOption('lora');
  await fillGenesisRun(page, 0.05);
  const firstLosses = await trainSteps(page, 2);
  await expect.poll(() => page.getByTestId('export-merged').isEnabled(), { timeout: 120_000, interval: 250 }).toBe(true);

  const trainedText = await greedyText(page, PROMPT, NEW_TOKENS);
  expect(trainedText.length).toBeGreaterThan(0);
  expect(trainedText).not.toBe(baseText); // the two steps changed what the model says

  // The merged model: a Hugging Face folder in a zip, loaded in Node by the project's loader.
  const merged = await downloadOf(page, 'export-merged');
  expect(merged.name).toBe('tabtune-lora-merged.zip');
  expect(await page.getByTestId('export-status').textContent()).toMatch(/^Downloaded tabtune-lora-merged\.zip \([\d.]+ MiB\)\.$/);
  const mergedFiles = readZip(merged.bytes, merged.name);
  expect([...mergedFiles.keys()].sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const mergedFolder = join(folder, 'merged');
  mkdirSync(mergedFolder);
  for (const [name, bytes] of mergedFiles) writeFileSync(join(mergedFolder, name), bytes);

  // The adapter as PEFT's two files in a zip.
  await page.getByTestId('export-adapter-format').selectOption('zip');
  const adapterZip = await downloadOf(page, 'export-adapter');
  expect(adapterZip.name).toBe('tabtune-lora-adapter.zip');
  const adapterFiles = readZip(adapterZip.bytes, adapterZip.name);
  expect([...adapterFiles.keys()]).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  const adapterConfig = JSON.parse(new TextDecoder().decode(adapterFiles.get('adapter_config.json')!)) as Record<string, unknown>;
  expect(adapterConfig).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 16, task_type: 'CAUSAL_LM' });
  const { tensors } = await readSafetensors(bytesSource(adapterFiles.get('adapter_model.safetensors')!), 'adapter_model.safetensors');
  const names = [...tensors.keys()];
  expect(names.length).toBeGreaterThan(0);
  expect(names.every((name) => /^base_model\.model\..+\.lora_[AB]\.weight$/.test(name))).toBe(true);
  expect([...tensors.values()].every((t) => t.dtype === 'F32')).toBe(true);

  // The ONNX file.
  const onnx = await downloadOf(page, 'export-onnx');
  expect(onnx.name).toBe('tabtune-lora-merged.onnx');
  expect(await page.getByTestId('export-status').textContent()).toMatch(/The playground can run it\.$/);
  // The playground runs the kept export with ONNX Runtime Web on WebGPU: the merged model says what the adapter said.
  await expect.poll(() => page.getByTestId('onnx-run-last').isEnabled(), { timeout: 30_000, interval: 100 }).toBe(true);
  await page.getByTestId('onnx-run-last').click();
  await expect.poll(async () => (await page.getByTestId('onnx-status').textContent()) ?? '', { timeout: 300_000, interval: 100 }).toMatch(/^webgpu \(.+\) ran tabtune-lora-merged\.onnx: /);
  expect(await page.getByTestId('onnx-output').textContent()).toBe(trainedText);
  expect(errors).toEqual([]);
  await page.close();

  // In Node: merged folder vs demo + downloaded adapter vs ONNX, on the prompt's tokens.
  const ids = [tokenizer.encode(`${PROMPT} the heaven`)];
  const engine = await testEngine();
  const mergedModel = (await loadModel(engine, localDirectory(mergedFolder))).model;
  const base = (await loadModel(engine, localDirectory(DEMO))).model;
  const { peft } = await importLoraAdapter(base, memoryProvider(adapterFiles, 'the downloaded adapter'));
  let mergedLogits: Float32Array;
  try {
    mergedLogits = await logitsOf(mergedModel, ids);
    const adaptedLogits = await logitsOf(peft, ids);
    const baseLogits = await peft.withAdaptersDisabled(() => logitsOf(peft, ids));
    console.info(`merged zip vs demo + adapter: ${relativeError(mergedLogits, adaptedLogits).toExponential(2)} (the adapter moves the logits by ${relativeError(adaptedLogits, baseLogits).toExponential(2)})`);
    expect(relativeError(adaptedLogits, baseLogits)).toBeGreaterThan(1e-2);
    expectClose(mergedLogits, adaptedLogits, TOLERANCE, 'merged zip vs demo + adapter');
  } finally {
    mergedModel.dispose();
    peft.dispose();
  }
  const session = await ort.InferenceSession.create(onnx.bytes, { executionProviders: ['wasm'] });
  try {
    const outputs = await session.run({ [INPUT_NAME]: new ort.Tensor('int64', BigInt64Array.from(ids[0].map(BigInt)), [1, ids[0].length]) });
    const onnxLogits = outputs[OUTPUT_NAME].data as Float32Array;
    console.info(`ONNX vs merged zip: ${relativeError(onnxLogits, mergedLogits).toExponential(2)}`);
    expectClose(onnxLogits, mergedLogits, TOLERANCE, 'ONNX vs merged zip');
  } finally {
    await session.release();
  }

  // A fresh page: the base model's text, then the imported adapter's, which is the trained page's.
  const fresh = await app.browser.newPage();
  fresh.on('pageerror', (error) => errors.push(error.message));
  await fresh.goto(app.url);
  await loadDemo(fresh);
  expect(await greedyText(fresh, PROMPT, NEW_TOKENS)).toBe(baseText);
  const zipPath = join(folder, adapterZip.name);
  writeFileSync(zipPath, adapterZip.bytes);
  await fresh.getByTestId('import-adapter').setInputFiles(zipPath);
  await expect.poll(() => fresh.getByTestId('import-status').textContent(), { timeout: 120_000, interval: 250 }).toMatch(/^Imported tabtune-lora-adapter\.zip: LoRA r = 8, alpha = 16, [\d.]+ k trainable parameters\./);
  expect(await fresh.getByTestId('method-status').textContent()).toMatch(/trainable parameters/);
  expect(await greedyText(fresh, PROMPT, NEW_TOKENS)).toBe(trainedText);

  // A text file renamed .safetensors: refused by name; the imported adapter stays.
  await fresh.getByTestId('import-adapter').setInputFiles({ name: 'notes.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('These are my notes, not an adapter.\n') });
  await expect.poll(() => fresh.getByTestId('import-error').textContent(), { timeout: 60_000, interval: 250 }).toMatch(/^"notes\.safetensors": is not a safetensors file \(header length/);
  expect(await fresh.getByTestId('import-error').getAttribute('role')).toBe('alert');
  expect(await greedyText(fresh, PROMPT, NEW_TOKENS)).toBe(trainedText);

  // Training continues the imported adapter: a fresh adapter computes the base model (B starts at zero), so its
  // first-step loss is the first page's on the same first batch (same seed); the imported adapter's is another.
  await fillGenesisRun(fresh, 0.05);
  const continued = await trainSteps(fresh, 1);
  console.info(`losses: ${JSON.stringify([...firstLosses])} on a fresh adapter, first step ${continued.get(1)} on the imported one`);
  expect(Math.abs(continued.get(1)! - firstLosses.get(1)!)).toBeGreaterThan(0.05);
  expect(errors).toEqual([]);
  await fresh.close();
});
