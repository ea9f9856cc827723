// Fine-tuning in the app, in a real Chromium (WebGPU on SwiftShader): load the demo model, choose LoRA, paste a
// few lines, train 3 steps in the worker, watch the step and loss change, then download the adapter and parse it
// as safetensors with the LoRA tensors and the PEFT config in its metadata.

import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bytesSource, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import { unbundleAdapter } from '../../src/worker/adapterBundle.ts';
import { loadDemo, startApp, type App } from './browser.ts';

const DATASET = [
  'In the beginning God created the heaven and the earth.',
  '',
  'And the earth was without form, and void; and darkness was upon the face of the deep.',
  '',
  'And God said, Let there be light: and there was light.',
].join('\n');

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

it('trains LoRA for 3 steps in the worker and downloads the adapter', { timeout: 600_000 }, async () => {
  const page = await app.browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(app.url);
  await loadDemo(page);

  await page.getByTestId('method-select').selectOption('lora');
  await page.getByTestId('dataset-input').fill(DATASET);
  await expect.poll(() => page.getByTestId('dataset-summary').textContent(), { timeout: 30_000, interval: 250 }).toMatch(/text: 3 examples, \d+ tokens/);
  await page.getByLabel('Sequence length').fill('16');
  await page.getByTestId('steps-input').fill('3');
  await page.getByTestId('train-start').click();

  // Read the loss at every step seen.
  const losses = new Map<number, number>();
  const deadline = Date.now() + 400_000;
  for (;;) {
    const step = Number(await page.getByTestId('train-step').textContent());
    const text = (await page.getByTestId('train-loss').textContent()) ?? '';
    if (step > 0 && text !== '') losses.set(step, Number(text));
    if (step === 3 && (await page.getByTestId('train-start').isEnabled())) break;
    if (Date.now() > deadline) throw new Error(`training did not reach step 3 (at ${step})`);
    const alert = page.locator('.panel [role=alert]');
    if (await alert.count()) throw new Error(`training failed: ${await alert.first().textContent()}`);
    await page.waitForTimeout(200);
  }
  const values = [...losses.values()];
  for (const loss of values) {
    expect(Number.isFinite(loss)).toBe(true);
    expect(loss).toBeGreaterThan(0);
  }
  expect(losses.has(3)).toBe(true);
  expect(new Set(values).size).toBeGreaterThan(1); // the loss changed between steps
  expect(await page.getByTestId('method-status').textContent()).toMatch(/trainable parameters/);
  const points = (await page.getByTestId('loss-chart').locator('polyline.loss-train').getAttribute('points')) ?? '';
  expect(points.trim().split(/\s+/).length).toBeGreaterThanOrEqual(2);

  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 120_000 }), page.getByTestId('export-adapter').click()]);
  expect(download.suggestedFilename()).toBe('tabtune-lora-adapter.safetensors');
  const bytes = new Uint8Array(await readFile((await download.path())!));
  const header = await readSafetensorsHeader(bytesSource(bytes), 'adapter.safetensors');
  const names = [...header.byName.keys()];
  expect(header.metadata.get('tabtune.layout')).toBe('peft');
  expect(names.some((n) => n.endsWith('.lora_A.weight'))).toBe(true);
  expect(names.some((n) => n.endsWith('.lora_B.weight'))).toBe(true);
  const files = unbundleAdapter(bytes);
  expect(files.layout).toBe('peft');
  expect(JSON.parse(files.config)).toMatchObject({ peft_type: 'LORA', r: 8 });
  expect(errors).toEqual([]);
  await page.close();
});
