// The playground in a real Chromium (WebGPU on SwiftShader), against the production build.
// (a) Compare with the adapter off: after a short LoRA run at a high learning rate, the two columns fill; the base
//     column is the demo model's greedy continuation (PyTorch's tokens, tests/fixtures/demo/golden.json), and the
//     adapter column is the greedy continuation computed here in Node from the base model plus the adapter the page
//     downloads (so it is the trained adapter's output, not the base model's).
// (b) The demo model exported to ONNX by tabtune's own exporter, in Node, is picked and run with ONNX Runtime Web
//     on its WebGPU execution provider inside the engine worker: the greedy text equals the engine's for the same
//     prompt and token count, and the status names the provider; files that are not the loaded model's ONNX export
//     are refused by name.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { exportOnnx, exportOnnxFromWeights } from '../../src/export/exportOnnx.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer, type Tokenizer } from '../../src/io/tokenizer.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { loadModel } from '../../src/models/load.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { expectedTensors } from '../../src/models/weights.ts';
import { importLoraAdapter } from '../../src/peft/peftFiles.ts';
import { unbundleAdapter } from '../../src/worker/adapterBundle.ts';
import { testEngine } from '../helpers/gpu.ts';
import { memoryProvider } from '../models/helpers.ts';
import { fillGenesisRun, openWithDemo, startApp, trainSteps, watchTextLengths, type App } from './browser.ts';

const DEMO = fileURLToPath(new URL('../../public/demo/', import.meta.url));
const golden = JSON.parse(readFileSync(new URL('../fixtures/demo/golden.json', import.meta.url), 'utf8')) as {
  cases: { prompt: string; greedy_new_tokens: number[]; greedy_top2_margins: number[] }[];
};
const PROMPT = 'In the beginning God created';
const NEW_TOKENS = 8;

let app: App;
/** What the runs produced, printed at the end (for the record). */
const notes: string[] = [];
let tokenizer: Tokenizer;
let folder: string;
/** PyTorch's greedy continuation of PROMPT by the demo model, as text. */
let baseText: string;

beforeAll(async () => {
  folder = mkdtempSync(join(tmpdir(), 'tabtune-playground-'));
  tokenizer = await loadTokenizer(localDirectory(DEMO));
  const goldenCase = golden.cases.find((c) => c.prompt === PROMPT)!;
  // No near-tie in these tokens: float rounding on another path cannot pick another token.
  expect(Math.min(...goldenCase.greedy_top2_margins.slice(0, NEW_TOKENS))).toBeGreaterThan(1e-3);
  baseText = tokenizer.decode(goldenCase.greedy_new_tokens.slice(0, NEW_TOKENS), { skipSpecialTokens: true });
  app = await startApp();
});
afterAll(async () => {
  console.info(notes.join('\n'));
  await app?.close();
  if (folder) rmSync(folder, { recursive: true, force: true });
});

/** Greedy tokens of `model` after PROMPT, the whole sequence recomputed each step; and the smallest top-2 margin per step. */
async function nodeGreedy(model: CausalLM): Promise<{ tokens: number[]; margins: number[] }> {
  const { engine, config } = model;
  const ids = tokenizer.encode(PROMPT);
  const tokens: number[] = [];
  const margins: number[] = [];
  for (let step = 0; step < NEW_TOKENS; step++) {
    const logits = (await engine.scope(() => engine.noGrad(() => model.forward(tokenTensor(engine, [ids], config.vocabSize))).read())) as Float32Array;
    const row = logits.subarray((ids.length - 1) * config.vocabSize, (ids.length - 1) * config.vocabSize + tokenizer.vocabSize);
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
    let second = -Infinity;
    for (let i = 0; i < row.length; i++) if (i !== best && row[i] > second) second = row[i];
    margins.push(row[best] - second);
    if (tokenizer.special.eosIds.includes(best)) break;
    tokens.push(best);
    ids.push(best);
  }
  return { tokens, margins };
}

async function setGreedy(page: Page, newTokens: number): Promise<void> {
  await page.getByTestId('generate-prompt').fill(PROMPT);
  await page.getByLabel('Max new tokens').fill(String(newTokens));
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Repetition penalty').fill('1');
}

async function waitUntilEnabled(page: Page, testId: string, what: string): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (!(await page.getByTestId(testId).isEnabled())) {
    if (Date.now() > deadline) throw new Error(`${what} did not finish in 300 s`);
    await page.waitForTimeout(50);
  }
}

it('compares the trained LoRA adapter with the base model, side by side', { timeout: 900_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, app.url);
  // Without an adapter there is nothing to compare: one output column, the comparison disabled.
  expect(await page.getByTestId('generate-compare').isEnabled()).toBe(false);
  expect(await page.getByTestId('generate-output-base').count()).toBe(0);

  await page.getByTestId('method-select').selectOption('lora');
  await fillGenesisRun(page, 0.01);
  await trainSteps(page, 3);
  await expect.poll(() => page.getByTestId('generate-compare').isEnabled(), { timeout: 120_000, interval: 250 }).toBe(true);

  await setGreedy(page, NEW_TOKENS);
  // Both columns stream: each is seen partly written while the run goes on, the base one after the adapter's.
  const watch = await watchTextLengths(page, ['generate-output', 'generate-output-base']);
  await page.getByTestId('generate-compare').click();
  await waitUntilEnabled(page, 'generate-run', 'the comparison');
  const adapterText = (await page.getByTestId('generate-output').textContent()) ?? '';
  const baseColumn = (await page.getByTestId('generate-output-base').textContent()) ?? '';
  expect(await page.locator('.playground [role=status]').textContent()).toMatch(/^Compared: 8 tokens with the adapter, 8 with it off, after a 5-token prompt\.$/);
  expect(await page.getByRole('heading', { name: 'With the adapter' }).count()).toBe(1);
  expect(await page.getByRole('heading', { name: 'Adapter off (base model)' }).count()).toBe(1);
  const seen = await watch.stop();
  const partial = { adapter: seen['generate-output'], base: seen['generate-output-base'] };
  expect(partial.adapter.filter((n) => n > 0 && n < adapterText.length).length).toBeGreaterThan(0);
  expect(partial.base.filter((n) => n > 0 && n < baseColumn.length).length).toBeGreaterThan(0);
  // Side by side at this width: the base column starts to the right of the adapter column, on the same row.
  const left = (await page.getByTestId('generate-output').boundingBox())!;
  const right = (await page.getByTestId('generate-output-base').boundingBox())!;
  expect(right.x).toBeGreaterThanOrEqual(left.x + left.width);
  expect(Math.abs(right.y - left.y)).toBeLessThan(1);
  // On a phone-sized screen the columns stack, the base one below.
  const wide = page.viewportSize()!;
  await page.setViewportSize({ width: 400, height: 900 });
  const top = (await page.getByTestId('generate-output').boundingBox())!;
  const below = (await page.getByTestId('generate-output-base').boundingBox())!;
  expect(below.y).toBeGreaterThanOrEqual(top.y + top.height);
  expect(Math.abs(below.x - top.x)).toBeLessThan(1);
  await page.setViewportSize(wide);

  // The base column is the demo model's own greedy text (PyTorch's tokens).
  expect(baseColumn).toBe(baseText);
  expect(adapterText).not.toBe(baseText);
  notes.push(`base column: ${JSON.stringify(baseColumn)}`, `adapter column: ${JSON.stringify(adapterText)}`);

  // The adapter column is the greedy text of the base model with the downloaded (trained) adapter, computed in Node.
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 120_000 }), page.getByTestId('export-adapter').click()]);
  const bundle = unbundleAdapter(new Uint8Array(await readFile((await download.path())!)));
  expect(bundle.layout).toBe('peft');
  const engine = await testEngine();
  const { model } = await loadModel(engine, localDirectory(DEMO));
  const { peft } = await importLoraAdapter(model, memoryProvider(new Map([[bundle.configFile, new TextEncoder().encode(bundle.config)], [bundle.weightsFile, bundle.weights]]), 'downloaded adapter'));
  try {
    const expected = await nodeGreedy(peft);
    const nearTie = expected.margins.findIndex((margin) => margin < 1e-3);
    const trusted = nearTie === -1 ? expected.tokens.length : nearTie;
    notes.push(`Node greedy with the downloaded adapter: ${JSON.stringify(tokenizer.decode(expected.tokens, { skipSpecialTokens: true }))} (${trusted} of ${expected.tokens.length} tokens before a near-tie)`);
    expect(trusted).toBeGreaterThanOrEqual(4);
    const trustedText = tokenizer.decode(expected.tokens.slice(0, trusted), { skipSpecialTokens: true });
    if (trusted === expected.tokens.length) expect(adapterText).toBe(tokenizer.decode(expected.tokens, { skipSpecialTokens: true }));
    else expect(adapterText.startsWith(trustedText)).toBe(true);
  } finally {
    peft.dispose();
  }

  // A plain run afterwards goes back to one column.
  await page.getByTestId('generate-run').click();
  await waitUntilEnabled(page, 'generate-run', 'generation');
  expect(await page.getByTestId('generate-output-base').count()).toBe(0);
  expect(await page.getByTestId('generate-output').textContent()).toBe(adapterText);

  // Stop during the adapter's run of a comparison: the base model's run is skipped.
  await page.getByLabel('Max new tokens').fill('200');
  await page.getByTestId('generate-compare').click();
  await expect.poll(async () => ((await page.getByTestId('generate-output').textContent()) ?? '').length, { timeout: 120_000, interval: 100 }).toBeGreaterThan(0);
  await page.getByRole('button', { name: 'Stop' }).click();
  await waitUntilEnabled(page, 'generate-run', 'the stopped comparison');
  expect(await page.locator('.playground [role=status]').textContent()).toMatch(/^\d+ tokens after a 5-token prompt; stopped/);
  expect(await page.getByTestId('generate-output-base').textContent()).toBe('');
  expect(await page.locator('.playground-column-status').nth(1).textContent()).toBe('Not run.');
  expect(errors).toEqual([]);
  await page.close();
});

it('runs the exported ONNX model with ONNX Runtime Web on WebGPU, with the engine\'s greedy text', { timeout: 900_000 }, async () => {
  // The demo model exported by tabtune's exporter, here in Node.
  const engine = await testEngine();
  const { model } = await loadModel(engine, localDirectory(DEMO));
  const onnxPath = join(folder, 'demo-model.onnx');
  try {
    writeFileSync(onnxPath, await exportOnnx(model));
  } finally {
    model.dispose();
  }
  // A model of another vocabulary (the tiny llama fixture's 101 tokens, zero weights): not the loaded model's.
  const fixtureConfig = parseModelConfig(readFileSync(new URL('../fixtures/models/llama/config.json', import.meta.url)));
  const otherPath = join(folder, 'other-model.onnx');
  writeFileSync(otherPath, exportOnnxFromWeights(fixtureConfig, new Map(expectedTensors(fixtureConfig).map((t) => [t.name, new Float32Array(t.shape.reduce((a, b) => a * b, 1))]))));

  const { page, errors } = await openWithDemo(app.browser, app.url);
  await setGreedy(page, NEW_TOKENS);
  await page.getByTestId('generate-run').click();
  await waitUntilEnabled(page, 'generate-run', 'generation');
  const engineText = (await page.getByTestId('generate-output').textContent()) ?? '';
  expect(engineText).toBe(baseText);
  // No export kept by the worker yet: only a picked file can run.
  expect(await page.getByTestId('onnx-run-last').isEnabled()).toBe(false);

  const status = page.getByTestId('onnx-status');
  await page.getByTestId('onnx-file').setInputFiles(onnxPath);
  const onnxWatch = await watchTextLengths(page, ['onnx-output']);
  await page.getByTestId('onnx-run').click();
  await expect.poll(async () => (await status.textContent()) ?? '', { timeout: 300_000, interval: 100 }).toMatch(/ ran demo-model\.onnx: /);
  const partial = (await onnxWatch.stop())['onnx-output'];
  const statusText = (await status.textContent()) ?? '';
  expect(statusText).toMatch(/^webgpu \(.+\) ran demo-model\.onnx: 8 tokens after a 5-token prompt; reached the token limit; \d+(\.\d+)? tokens\/s; session ready in \d+(\.\d+)? s\.$/);
  expect(statusText.toLowerCase()).toContain('swiftshader'); // the adapter ONNX Runtime ran on: this machine's WebGPU
  const onnxText = (await page.getByTestId('onnx-output').textContent()) ?? '';
  notes.push(`ONNX status: ${statusText}`, `ONNX text: ${JSON.stringify(onnxText)}, engine text: ${JSON.stringify(engineText)}`);
  expect(onnxText).toBe(engineText);
  expect(partial.filter((n) => n > 0 && n < onnxText.length).length).toBeGreaterThan(0); // streamed
  expect(await page.getByTestId('onnx-error').count()).toBe(0);

  // Again with the kept session: no session time this run, the same text.
  await page.getByTestId('onnx-run').click();
  await expect.poll(async () => (await status.textContent()) ?? '', { timeout: 300_000, interval: 100 }).toMatch(/^webgpu \(.+\) ran demo-model\.onnx: 8 tokens after a 5-token prompt; reached the token limit; \d+(\.\d+)? tokens\/s\.$/);
  expect(await page.getByTestId('onnx-output').textContent()).toBe(engineText);

  // Files that are not the loaded model's ONNX export are refused by name, before ONNX Runtime sees them.
  const onnxError = page.getByTestId('onnx-error');
  await page.getByTestId('onnx-file').setInputFiles(join(DEMO, 'model.safetensors'));
  await page.getByTestId('onnx-run').click();
  await expect.poll(async () => (await onnxError.count()) && ((await onnxError.textContent()) ?? ''), { timeout: 60_000, interval: 100 }).toMatch(/^"model\.safetensors": is not an ONNX model: /);
  await page.getByTestId('onnx-file').setInputFiles(otherPath);
  await page.getByTestId('onnx-run').click();
  await expect
    .poll(async () => (await onnxError.textContent()) ?? '', { timeout: 60_000, interval: 100 })
    .toBe('"other-model.onnx": the model scores 101 tokens, but the loaded model\'s tokenizer has 4096: this file is not of the loaded model (load the model it was exported from)');
  expect(errors).toEqual([]);
  await page.close();
});
