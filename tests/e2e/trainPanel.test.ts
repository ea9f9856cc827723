// Fine-tuning in the app, in a real Chromium (WebGPU on SwiftShader): load the demo model, choose LoRA, paste a
// few lines, train 3 steps in the worker, watch the step and loss change, then download the adapter and parse it
// as safetensors with the LoRA tensors and the PEFT config in its metadata.

import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bytesSource, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import { unbundleAdapter } from '../../src/worker/adapterBundle.ts';
import { fillGenesisRun, openWithDemo, startApp, trainSteps, type App } from './browser.ts';


let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

it('trains LoRA for 3 steps in the worker and downloads the adapter', { timeout: 600_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, app.url);

  await page.getByTestId('method-select').selectOption('lora');
  await fillGenesisRun(page);
  const losses = await trainSteps(page, 3);
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
