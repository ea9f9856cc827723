// A pre-quantized bitsandbytes 4-bit checkpoint in a real Chromium (WebGPU on SwiftShader), against the production
// build. In Node, the demo model's block linears are quantized to NF4 with double quantization (QLoRA's settings,
// the codes the model panel's "Linear layers in NF4" load makes) and written as a hub "-bnb-4bit" folder: the
// Linear4bit tensors, and a config.json with a bitsandbytes quantization_config. In the page:
//   - the demo loaded with NF4 linears gives the reference greedy text;
//   - the 4-bit folder, picked as local files with f32 asked, loads as stored (NF4) and says the same text;
//   - the method switches from LoRA to QLoRA by itself, and LoRA and adapters cannot be chosen (disabled options,
//     the reason beside the choice, not reachable by mouse or keyboard);
//   - QLoRA trains a few steps: its loss falls, step for step as in the same run on the NF4-loaded demo;
//   - the merged zip holds f32 block linears under their float shapes, each equal to dequant(W) + s·B·A computed in
//     Node from the 4-bit file and the downloaded adapter, and a config.json without quantization_config;
//   - a config.json declaring a GPTQ checkpoint is refused naming quantization_config.quant_method, and the 4-bit
//     model with its trained adapter stays loaded.

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bytesSource, readSafetensors, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import { encodeSafetensors, type SafetensorsTensorInput } from '../../src/io/safetensorsWriter.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { readZip } from '../../src/io/zipFiles.ts';
import { quantStateFromBnbTensors, type BnbDtype, type TensorRecord } from '../../src/quant/bnbLayout.ts';
import { dequantize4bit } from '../../src/quant/quantize.ts';
import { quantizeModel } from '../../src/quant/quantizeModel.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { downloadOf, fillGenesisRun, greedyText, openWithDemo, startApp, trainSteps, type App } from './browser.ts';

const DEMO = fileURLToPath(new URL('../../public/demo/', import.meta.url));
const FILES_BESIDE_WEIGHTS = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json'];
const PROMPT = 'And the LORD said unto Moses,';
const NEW_TOKENS = 10;
const STEPS = 6;
/** f32 rounding of dequant(W) + s·B·A (the app adds the f64 update to the f32 weight once). */
const MERGE_TOLERANCE = 1e-6;

/** A hub "-bnb-4bit" model's quantization_config (what transformers writes), with QLoRA's NF4 settings. */
const QUANTIZATION_CONFIG = {
  _load_in_4bit: true,
  _load_in_8bit: false,
  bnb_4bit_compute_dtype: 'float32',
  bnb_4bit_quant_storage: 'uint8',
  bnb_4bit_quant_type: 'nf4',
  bnb_4bit_use_double_quant: true,
  llm_int8_enable_fp32_cpu_offload: false,
  llm_int8_has_fp16_weight: false,
  llm_int8_skip_modules: null,
  llm_int8_threshold: 6.0,
  load_in_4bit: true,
  load_in_8bit: false,
  quant_method: 'bitsandbytes',
};

let app: App;
let folder: string;
/** The 4-bit folder's files, and the same with a config.json that declares a GPTQ checkpoint. */
let fourBitFiles: string[];
let gptqFiles: string[];
/** `tabtune quantize` output beside the demo's own config.json: nothing there declares the quantization. */
let undeclaredFiles: string[];
/** The 4-bit file's tensors by name (Linear4bit layers: weight codes, absmax, nested_*, quant_map, quant_state). */
let quantizedTensors: Map<string, SafetensorsTensorInput>;
/** State-dict names of the quantized linear weights ("model.layers.0.self_attn.q_proj.weight"). */
let quantizedLinears: string[];
/** The demo's f32 tensor shapes by name (a linear's [OUT, IN]). */
let demoShapes: Map<string, number[]>;

function writeFolder(name: string, config: Record<string, unknown>, weights: Uint8Array): string[] {
  const dir = join(folder, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeFileSync(join(dir, 'model.safetensors'), weights);
  for (const file of FILES_BESIDE_WEIGHTS) copyFileSync(join(DEMO, file), join(dir, file));
  return ['config.json', 'model.safetensors', ...FILES_BESIDE_WEIGHTS].map((file) => join(dir, file));
}

beforeAll(async () => {
  folder = mkdtempSync(join(tmpdir(), 'tabtune-prequantized-'));
  const engine = await testEngine();
  const quantized = await quantizeModel(engine, localDirectory(DEMO), { quantType: 'nf4', doubleQuant: true });
  quantizedTensors = new Map(quantized.tensors.map((tensor) => [tensor.name, tensor]));
  quantizedLinears = quantized.quantized;
  const demoHeader = await readSafetensorsHeader(bytesSource(new Uint8Array(readFileSync(join(DEMO, 'model.safetensors')))), 'model.safetensors');
  demoShapes = new Map(demoHeader.tensors.map((entry) => [entry.name, [...entry.shape]]));
  const encoded = encodeSafetensors(quantized.tensors, { format: 'pt' });
  const weights = new Uint8Array(Buffer.concat([encoded.header, ...encoded.chunks]));
  const demoConfig = JSON.parse(readFileSync(join(DEMO, 'config.json'), 'utf8')) as Record<string, unknown>;
  fourBitFiles = writeFolder('bnb-4bit', { ...demoConfig, quantization_config: QUANTIZATION_CONFIG }, weights);
  undeclaredFiles = writeFolder('undeclared', demoConfig, weights);
  gptqFiles = writeFolder('gptq', { ...demoConfig, quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128 } }, weights);
  app = await startApp();
});
afterAll(async () => {
  await app?.close();
  if (folder) rmSync(folder, { recursive: true, force: true });
});

/** dequant(W) [OUT, IN] of one quantized linear of the 4-bit file, from its Linear4bit tensors. */
function dequantizedWeight(weightName: string): Float32Array {
  const prefix = weightName.slice(0, -'weight'.length);
  const records = new Map<string, TensorRecord>();
  for (const [name, tensor] of quantizedTensors) {
    if (!name.startsWith(weightName)) continue;
    const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    records.set(name, { dtype: tensor.dtype as BnbDtype, shape: [...tensor.shape], bytes });
  }
  return dequantize4bit(quantStateFromBnbTensors(prefix, records));
}

/** W + s·B·A in f64, W [OUT, IN], A [r, IN], B [OUT, r]. */
function withLoraUpdate(W: Float32Array, A: Float32Array, B: Float32Array, scaling: number, r: number): Float64Array {
  const inFeatures = A.length / r;
  const outFeatures = B.length / r;
  const out = Float64Array.from(W);
  for (let o = 0; o < outFeatures; o++) {
    for (let i = 0; i < inFeatures; i++) {
      let sum = 0;
      for (let k = 0; k < r; k++) sum += B[o * r + k] * A[k * inFeatures + i];
      out[o * inFeatures + i] += scaling * sum;
    }
  }
  return out;
}

it('loads a bitsandbytes 4-bit checkpoint as stored, trains QLoRA on it only, and exports f32 merged weights', { timeout: 600_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, app.url);

  // The reference: the demo with its linears quantized to NF4 while they load.
  await page.getByTestId('model-nf4').check();
  await page.getByTestId('model-select').selectOption('demo');
  await page.getByTestId('model-load').click();
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 90_000, interval: 250 }).toMatch(/^ready: Demo model \(llama, .*, linears in NF4\)$/);
  const nf4Text = await greedyText(page, PROMPT, NEW_TOKENS);
  expect(nf4Text.length).toBeGreaterThan(0);
  const estimateFacts = () => page.locator('.estimate dl').textContent();
  const nf4Estimate = await estimateFacts();
  // The weights' GPU bytes in the summary, by the engine's accounting ("… (2.5 MiB on the GPU as …").
  const weightsOnGpu = async () => /\(([\d.]+ [KMG]?i?B) on the GPU as/.exec((await page.getByTestId('model-summary').textContent()) ?? '')?.[1];
  const nf4Weights = await weightsOnGpu();
  expect(nf4Weights).toMatch(/MiB$/);
  expect(nf4Estimate).toContain('Total');

  // The reference run: QLoRA on those NF4 linears. The Genesis run packs 3 training rows: a batch of 3 is the same
  // data every step, so the loss of the last step is comparable with that of the first.
  const select = page.getByTestId('method-select');
  await select.selectOption('qlora');
  await fillGenesisRun(page, 0.01);
  await page.getByLabel('Batch size').fill('3');
  const referenceLosses = await trainSteps(page, STEPS);

  // The method select follows the arrow keys through its enabled options.
  await select.selectOption('lora');
  await select.focus();
  await page.keyboard.press('ArrowDown');
  expect(await select.inputValue()).toBe('qlora');
  await page.keyboard.press('ArrowUp');
  expect(await select.inputValue()).toBe('lora');

  // The 4-bit folder, picked as files, with LoRA chosen and f32 asked: it loads as stored, and the method follows.
  await page.getByTestId('model-nf4').uncheck();
  await page.getByTestId('model-select').selectOption('files');
  await page.getByTestId('model-files').setInputFiles(fourBitFiles);
  await page.getByTestId('model-load').click();
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 90_000, interval: 250 }).toMatch(/^ready: 5 picked files \(llama, .*, linears in NF4\)$/);
  const readyStatus = (await page.getByTestId('model-status').textContent()) ?? '';
  expect(await estimateFacts()).toBe(nf4Estimate);
  expect(await weightsOnGpu()).toBe(nf4Weights); // the same codes and state as the NF4 load
  expect(await page.getByTestId('model-summary').textContent()).toContain('on the GPU as NF4 linears as the checkpoint stores them, the rest f32');
  expect(await page.getByTestId('model-nf4').isChecked()).toBe(false);
  expect(await greedyText(page, PROMPT, NEW_TOKENS)).toBe(nf4Text);

  // Only QLoRA: switched to by itself; LoRA and adapters are disabled options (the arrow keys skip them, a pick
  // cannot choose them), with the reason tied to the choice.
  expect(await select.inputValue()).toBe('qlora');
  expect(await select.locator('option[value="lora"]').isDisabled()).toBe(true);
  expect(await select.locator('option[value="adapter"]').isDisabled()).toBe(true);
  expect(await select.locator('option[value="qlora"]').isDisabled()).toBe(false);
  const note = page.getByTestId('method-quantized-note');
  expect(await note.textContent()).toBe(
    'Only QLoRA: the checkpoint is stored in 4-bit NF4 (bitsandbytes), and LoRA and adapters need float weights. Load its unquantized version to use them.',
  );
  expect(await select.getAttribute('aria-describedby')).toBe(await note.getAttribute('id'));
  await expect(select.selectOption('lora', { timeout: 1_000 })).rejects.toThrow(/not enabled|Timeout/);
  await select.focus();
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  expect(await select.inputValue()).toBe('qlora');

  // QLoRA trains on the stored codes: its loss falls, step for step as on the demo quantized while it loaded.
  const losses = await trainSteps(page, STEPS);
  const sorted = (map: Map<number, number>) => [...map].sort((a, b) => a[0] - b[0]);
  console.info(`QLoRA losses: on the 4-bit checkpoint ${JSON.stringify(sorted(losses))}; on the demo loaded with NF4 linears ${JSON.stringify(sorted(referenceLosses))}`);
  const steps = [...losses.keys()].sort((a, b) => a - b);
  const first = losses.get(steps[0])!;
  const last = losses.get(STEPS)!;
  expect(steps[0]).toBeLessThanOrEqual(2);
  expect(Number.isFinite(first) && Number.isFinite(last)).toBe(true);
  expect(last).toBeLessThan(first - 0.1);
  const common = steps.filter((step) => referenceLosses.has(step));
  expect(common.length).toBeGreaterThanOrEqual(3);
  expect(common).toContain(STEPS);
  for (const step of common) expect(losses.get(step), `step ${step}`).toBe(referenceLosses.get(step));
  expect(await page.getByTestId('method-status').textContent()).toMatch(/trainable parameters/);
  const trainedText = await greedyText(page, PROMPT, NEW_TOKENS);

  // The merged zip: f32 weights under the float shapes; each block linear is dequant(W) + s·B·A.
  await expect.poll(() => page.getByTestId('export-merged').isEnabled(), { timeout: 60_000, interval: 250 }).toBe(true);
  const merged = await downloadOf(page, 'export-merged');
  expect(merged.name).toBe('tabtune-qlora-merged.zip');
  const mergedFiles = readZip(merged.bytes, merged.name);
  expect([...mergedFiles.keys()].sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const mergedConfig = JSON.parse(new TextDecoder().decode(mergedFiles.get('config.json')!)) as Record<string, unknown>;
  expect(mergedConfig).not.toHaveProperty('quantization_config');
  expect(mergedConfig).toMatchObject({ torch_dtype: 'float32', model_type: 'llama', hidden_size: 128 });
  const mergedWeights = (await readSafetensors(bytesSource(mergedFiles.get('model.safetensors')!), 'model.safetensors')).tensors;
  expect([...mergedWeights.keys()].sort()).toEqual([...demoShapes.keys()].sort());
  expect([...mergedWeights.values()].every((tensor) => tensor.dtype === 'F32')).toBe(true);
  expect([...mergedWeights.keys()].some((name) => name.includes('quant_state') || name.endsWith('absmax') || name.endsWith('quant_map'))).toBe(false);
  expect(quantizedLinears.length).toBe(28); // 4 layers × 7 projections

  // The adapter, as PEFT's files: what the merge added.
  await page.getByTestId('export-adapter-format').selectOption('zip');
  const adapter = await downloadOf(page, 'export-adapter');
  expect(adapter.name).toBe('tabtune-qlora-adapter.zip');
  const adapterFiles = readZip(adapter.bytes, adapter.name);
  expect([...adapterFiles.keys()]).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  const adapterConfig = JSON.parse(new TextDecoder().decode(adapterFiles.get('adapter_config.json')!)) as { r: number; lora_alpha: number; peft_type: string };
  expect(adapterConfig).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 16 });
  const loraTensors = (await readSafetensors(bytesSource(adapterFiles.get('adapter_model.safetensors')!), 'adapter_model.safetensors')).tensors;
  const scaling = adapterConfig.lora_alpha / adapterConfig.r;

  let adapted = 0;
  let worstMerge = 0;
  let largestUpdate = 0;
  for (const name of quantizedLinears) {
    const tensor = mergedWeights.get(name)!;
    expect(tensor.shape, name).toEqual(demoShapes.get(name));
    const base = dequantizedWeight(name);
    const module = name.slice(0, -'.weight'.length);
    const A = loraTensors.get(`base_model.model.${module}.lora_A.weight`);
    const B = loraTensors.get(`base_model.model.${module}.lora_B.weight`);
    const expected = A && B ? withLoraUpdate(base, A.data as Float32Array, B.data as Float32Array, scaling, adapterConfig.r) : Float64Array.from(base);
    if (A && B) {
      adapted++;
      largestUpdate = Math.max(largestUpdate, relativeError(expected, base));
    }
    worstMerge = Math.max(worstMerge, relativeError(tensor.data as Float32Array, expected));
    expectClose(tensor.data as Float32Array, expected, MERGE_TOLERANCE, `merged ${name}`);
  }
  console.info(`merged zip: ${adapted} of ${quantizedLinears.length} linears carry the adapter (largest update ${largestUpdate.toExponential(2)} of dequant(W)); worst merge error ${worstMerge.toExponential(2)}`);
  expect(adapted).toBeGreaterThan(0);
  expect(largestUpdate).toBeGreaterThan(1e-3); // training moved B away from zero

  // A GPTQ checkpoint is refused by its config.json's field; the 4-bit model and its trained adapter stay.
  await page.getByTestId('model-files').setInputFiles(gptqFiles);
  await page.getByTestId('model-load').click();
  const alert = page.locator('[role="alert"]', { hasText: 'quantization_config.quant_method' });
  await expect.poll(async () => ((await alert.count()) ? await alert.textContent() : ''), { timeout: 60_000, interval: 250 }).toContain(
    '"config.json": quantization_config.quant_method is "gptq"; only bitsandbytes 4-bit checkpoints load',
  );
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 30_000, interval: 250 }).toBe(readyStatus);
  expect(await greedyText(page, PROMPT, NEW_TOKENS)).toBe(trainedText);
  console.info(`greedy: NF4 demo and 4-bit checkpoint ${JSON.stringify(nf4Text)}; after ${STEPS} QLoRA steps ${JSON.stringify(trainedText)}`);

  // `tabtune quantize` output beside a plain config.json, f32 asked: the headers say 4-bit, so the memory estimate
  // made before loading is the NF4 one, and the model is the same 4-bit one.
  await page.getByTestId('model-files').setInputFiles(undeclaredFiles);
  await page.getByTestId('model-load').click();
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 90_000, interval: 250 }).toBe(readyStatus);
  expect(await estimateFacts()).toBe(nf4Estimate);
  expect(await greedyText(page, PROMPT, NEW_TOKENS)).toBe(nf4Text);
  expect(errors).toEqual([]);
  await page.close();
});
