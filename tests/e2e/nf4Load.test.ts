// Loading with the linear layers in NF4 (QLoRA's base, quantized while the weights stream in): the model panel's
// choice, the smaller weights, the same 4-bit model QLoRA's attach makes from f32 weights (the same greedy text),
// and LoRA refused on it with the reason.

import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { greedyText, openWithDemo, startApp, type App } from './browser.ts';

const PROMPT = 'And the LORD said unto Moses,';
const NEW_TOKENS = 10;

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

/** The GPU bytes of the weights, from the summary's "Parameters" line ("… (4.9 MiB on the GPU as …"). */
async function weightMiB(page: Page): Promise<number> {
  const text = (await page.getByTestId('model-summary').textContent()) ?? '';
  const match = /\(([\d.]+) MiB on the GPU as/.exec(text);
  if (!match) throw new Error(`no weight size in the summary: ${text}`);
  return Number(match[1]);
}

it('loads the demo model with NF4 linears: the 4-bit model QLoRA makes, smaller, and refused for LoRA', { timeout: 300_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, app.url);
  const f32MiB = await weightMiB(page);
  const f32Text = await greedyText(page, PROMPT, NEW_TOKENS);

  // QLoRA attached to the f32 model quantizes its linears in place; B = 0 at init, so this is the 4-bit base.
  await page.getByTestId('method-select').selectOption('qlora');
  await page.getByTestId('method-attach').click();
  await expect.poll(() => page.getByTestId('method-status').textContent(), { timeout: 60_000, interval: 100 }).toMatch(/trainable parameters/);
  const quantizedText = await greedyText(page, PROMPT, NEW_TOKENS);
  expect(quantizedText.length).toBeGreaterThan(0);

  // The same model loaded with its linears quantized while they stream in.
  await page.getByTestId('model-nf4').check();
  await page.getByTestId('model-select').selectOption('demo');
  await page.getByTestId('model-load').click();
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 90_000, interval: 250 }).toMatch(/^ready: Demo model \(llama, .*, linears in NF4\)$/);
  const nf4MiB = await weightMiB(page);
  expect(await page.getByTestId('model-summary').textContent()).toContain('on the GPU as NF4 linears, the rest f32');
  expect(nf4MiB).toBeLessThan(f32MiB);
  expect(await greedyText(page, PROMPT, NEW_TOKENS)).toBe(quantizedText);
  console.info(`weights ${f32MiB} MiB f32 → ${nf4MiB} MiB with NF4 linears; f32 text ${JSON.stringify(f32Text)}, NF4 text ${JSON.stringify(quantizedText)}`);

  // LoRA needs f32 weights: refused with the reason; QLoRA attaches.
  await page.getByTestId('method-select').selectOption('lora');
  await page.getByTestId('method-attach').click();
  await expect.poll(async () => (await page.getByTestId('method-error').count()) && ((await page.getByTestId('method-error').textContent()) ?? ''), { timeout: 60_000, interval: 100 }).toContain(
    "the model's linear layers are in NF4 (QLoRA's base): load the model again with f32 weights to use LoRA or adapters",
  );
  await page.getByTestId('method-select').selectOption('qlora');
  await page.getByTestId('method-attach').click();
  await expect.poll(() => page.getByTestId('method-status').textContent(), { timeout: 60_000, interval: 100 }).toMatch(/trainable parameters/);
  expect(errors).toEqual([]);
  await page.close();
});
