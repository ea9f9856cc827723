// A training run's life in the app, in a real Chromium (WebGPU on SwiftShader) with the demo model:
//   - a LoRA run checkpointed every 2 steps into browser storage survives a page reload: the page offers it
//     ("A run stopped at step K of 10"), Resume loads the model again and continues from step K (the step counter
//     never shows a step below K again) to the end, with a validation loss, and ends on the very losses of the
//     same run without the reload; a finished run leaves nothing to offer;
//   - a bottleneck-adapter run and a QLoRA run (paused, then resumed, midway) reach their last step;
//   - a QLoRA run whose GPU device is lost midway is interrupted, not failed, and continues from its checkpoint
//     once the engine has restarted (which loads the model again);
//   - for every method the training loss falls at a high learning rate (first and last loss, read from the chart),
//     and the GPU memory shown matches the method (QLoRA holds NF4 state and fewer frozen f32 bytes than LoRA).

import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { openWithDemo, startApp, type App } from './browser.ts';

// Near-identical short lines (each fits one packed row of 16 tokens): twelve examples, so one is held out.
const DATASET = Array.from({ length: 12 }, (_, i) => `${i + 1}. The quick brown fox jumps.`).join('\n\n');

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

interface ChartLosses {
  first: { loss: number; step: number };
  last: { loss: number; step: number };
  validation: { loss: number; step: number } | null;
}

/** The chart's accessible name carries its first and last training loss and the latest validation loss. */
async function chartLosses(page: Page): Promise<ChartLosses> {
  const label = (await page.getByTestId('loss-chart').getAttribute('aria-label')) ?? '';
  const match = /training ([\d.e+-]+) at step (\d+), ([\d.e+-]+) at step (\d+)(?:; validation ([\d.e+-]+) at step (\d+))?/.exec(label);
  if (!match) throw new Error(`the chart says ${JSON.stringify(label)}`);
  return {
    first: { loss: Number(match[1]), step: Number(match[2]) },
    last: { loss: Number(match[3]), step: Number(match[4]) },
    validation: match[5] ? { loss: Number(match[5]), step: Number(match[6]) } : null,
  };
}

async function step(page: Page): Promise<number> {
  return Number(await page.getByTestId('train-step').textContent());
}

async function failIfAlert(page: Page): Promise<void> {
  const alert = page.locator('.panel [role=alert]');
  if (await alert.count()) throw new Error(`training failed: ${await alert.first().textContent()}`);
}

/** Poll the step counter until `until` holds; returns every value seen. */
async function watchSteps(page: Page, until: (step: number) => Promise<boolean> | boolean, timeoutMs = 120_000): Promise<number[]> {
  const seen: number[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await step(page);
    seen.push(now);
    if (await until(now)) return seen;
    await failIfAlert(page);
    if (Date.now() > deadline) throw new Error(`gave up at step ${now}`);
    await page.waitForTimeout(100);
  }
}

async function finished(page: Page, steps: number): Promise<boolean> {
  return (await page.locator('.train-panel [role=status]').textContent()) === `Finished ${steps} steps.`;
}

const UNITS: Record<string, number> = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30 };

/** The GPU memory numbers: total (shown) and the categories (in its title), in bytes. */
async function memory(page: Page): Promise<{ total: number; parts: Record<string, number> }> {
  const cell = page.getByTestId('train-memory');
  const bytes = (text: string) => {
    const [value, unit] = text.trim().split(' ');
    return Number(value) * UNITS[unit];
  };
  const parts: Record<string, number> = {};
  const title = (await cell.getAttribute('title')) ?? '';
  for (const match of title.matchAll(/(frozen weights|NF4 quantization state|adapters|optimizer state) ([\d.]+ (?:B|KiB|MiB|GiB))/g)) parts[match[1]] = bytes(match[2]);
  return { total: bytes((await cell.textContent()) ?? ''), parts };
}

async function setRun(page: Page, settings: { steps: number; lr: number; checkpointEvery: number; evalEvery: number }): Promise<void> {
  await page.getByTestId('steps-input').fill(String(settings.steps));
  await page.getByLabel('Learning rate', { exact: true }).fill(String(settings.lr));
  await page.getByLabel('Checkpoint every (steps)').fill(String(settings.checkpointEvery));
  await page.getByLabel('Evaluate every (steps)').fill(String(settings.evalEvery));
}

it('continues a run after a reload, pauses and resumes, and trains every method', { timeout: 600_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, `${app.url}?faults`);
  await page.getByTestId('dataset-input').fill(DATASET);
  await page.getByLabel('Sequence length').fill('16');
  await expect.poll(() => page.getByTestId('dataset-summary').textContent(), { timeout: 30_000, interval: 250 }).toMatch(/12 examples/);

  // LoRA, 10 steps, a checkpoint every 2: reload once step 5 shows (the checkpoint of step 4 is written by then).
  await page.getByTestId('method-select').selectOption('lora');
  await setRun(page, { steps: 10, lr: 0.01, checkpointEvery: 2, evalEvery: 5 });
  await page.getByTestId('train-start').click();
  await watchSteps(page, (s) => s >= 5);
  const loraMemory = await memory(page);
  await page.reload();

  const offer = page.getByTestId('resume-offer');
  await offer.waitFor({ timeout: 90_000 });
  const description = (await page.getByTestId('resume-description').textContent()) ?? '';
  const offered = /A run stopped at step (\d+) of 10 \(Demo model, LoRA, saved at .+\)\./.exec(description);
  expect(offered, description).not.toBeNull();
  const checkpointStep = Number(offered![1]);
  expect(checkpointStep).toBeGreaterThanOrEqual(4);
  expect(checkpointStep % 2).toBe(0);
  await page.getByTestId('resume-run').click();
  const afterReload = await watchSteps(page, async (s) => s === 10 && (await finished(page, 10)), 180_000);
  // The counter shows 0 until the checkpoint is restored, then never a step before it.
  expect(afterReload.filter((s) => s > 0 && s < checkpointStep)).toEqual([]);
  expect(afterReload.some((s) => s > checkpointStep)).toBe(true);
  expect(await offer.count()).toBe(0);
  expect(await page.getByTestId('dataset-input').inputValue()).toBe(DATASET);
  const lora = await chartLosses(page);
  expect(lora.first.step).toBe(1); // the restored history, from before the reload
  expect(lora.last.step).toBe(10);
  expect(lora.last.loss).toBeLessThan(lora.first.loss);
  // (d) The held-out example's loss, evaluated at steps 5 and 10, is on show.
  const validationText = (await page.getByTestId('train-val-loss').textContent()) ?? '';
  expect(Number(validationText)).toBeGreaterThan(0);
  expect(lora.validation?.step).toBe(10);
  expect(Number(validationText)).toBeCloseTo(lora.validation!.loss, 3);

  // Resuming is exact: the same run without the reload, from a freshly attached adapter, ends on the same losses.
  const resumedLoss = await page.getByTestId('train-loss').textContent();
  await page.getByTestId('method-attach').click();
  await expect.poll(() => page.getByTestId('method-attach').isEnabled(), { timeout: 30_000, interval: 100 }).toBe(true);
  await page.getByTestId('train-start').click();
  await watchSteps(page, async (s) => s === 10 && (await finished(page, 10)));
  expect(await page.getByTestId('train-loss').textContent()).toBe(resumedLoss);
  expect(await page.getByTestId('train-val-loss').textContent()).toBe(validationText);

  // A bottleneck adapter, 12 steps.
  await page.getByTestId('method-select').selectOption('adapter');
  await setRun(page, { steps: 12, lr: 0.01, checkpointEvery: 4, evalEvery: 6 });
  await page.getByTestId('train-start').click();
  await watchSteps(page, async (s) => s === 12 && (await finished(page, 12)));
  const adapter = await chartLosses(page);
  expect(adapter.first.step).toBe(1);
  expect(adapter.last.step).toBe(12);
  expect(adapter.last.loss).toBeLessThan(adapter.first.loss);

  // QLoRA, 16 steps, paused once step 3 shows and resumed.
  await page.getByTestId('method-select').selectOption('qlora');
  await setRun(page, { steps: 16, lr: 0.01, checkpointEvery: 4, evalEvery: 8 });
  await page.getByTestId('train-start').click();
  await watchSteps(page, (s) => s >= 3);
  await page.getByTestId('train-pause').click();
  await expect.poll(() => page.getByTestId('train-resume').isEnabled(), { timeout: 60_000, interval: 100 }).toBe(true);
  const pausedAt = await step(page);
  expect(pausedAt).toBeGreaterThanOrEqual(3);
  expect(pausedAt).toBeLessThan(16);
  expect(await page.locator('.train-panel [role=status]').textContent()).toBe(`Paused after ${pausedAt} steps. Checkpoint saved at step ${pausedAt}.`);
  await page.waitForTimeout(1000);
  expect(await step(page)).toBe(pausedAt); // nothing runs while paused
  const qloraMemory = await memory(page);
  await page.getByTestId('train-resume').click();
  const afterPause = await watchSteps(page, async (s) => s === 16 && (await finished(page, 16)));
  expect(afterPause.filter((s) => s < pausedAt)).toEqual([]);
  const qlora = await chartLosses(page);
  expect(qlora.first.step).toBe(1);
  expect(qlora.last.step).toBe(16);
  expect(qlora.last.loss).toBeLessThan(qlora.first.loss);

  // The memory shown is the engine's accounting: NF4 state replaces most f32 frozen weights under QLoRA.
  expect(loraMemory.parts['NF4 quantization state']).toBe(0);
  expect(loraMemory.parts['optimizer state']).toBeGreaterThan(0);
  expect(qloraMemory.parts['NF4 quantization state']).toBeGreaterThan(0);
  expect(qloraMemory.parts['frozen weights']).toBeLessThan(loraMemory.parts['frozen weights']);
  expect(loraMemory.total).toBeGreaterThan(loraMemory.parts['frozen weights']);

  // The device is lost midway through a run: the run is interrupted (no error), and continues from its checkpoint
  // once the engine has restarted and loaded the model again.
  await setRun(page, { steps: 16, lr: 0.01, checkpointEvery: 2, evalEvery: 8 });
  await page.getByTestId('train-start').click();
  await watchSteps(page, (s) => s >= 5);
  expect(await page.evaluate(() => (window as unknown as { tabtuneFaults: { loseDevice(): Promise<boolean> } }).tabtuneFaults.loseDevice())).toBe(true);
  const again = page.getByTestId('train-resume-checkpoint');
  await again.waitFor({ timeout: 30_000 });
  expect(await page.locator('.train-panel [role=status]').textContent()).toBe('The GPU device was lost during the run.');
  expect(await page.locator('.train-panel [role=alert]').count()).toBe(0);
  expect(await page.getByTestId('device-lost').count()).toBe(1);
  const lostAt = Number(/Resume from the checkpoint at step (\d+)/.exec((await again.textContent()) ?? '')?.[1]);
  expect(lostAt).toBeGreaterThanOrEqual(4);
  await again.click();
  const afterLoss = await watchSteps(page, async (s) => s === 16 && (await finished(page, 16)), 180_000);
  expect(afterLoss.filter((s) => s > 0 && s < lostAt)).toEqual([]);
  expect(await page.getByTestId('device-lost').count()).toBe(0);
  const continued = await chartLosses(page);
  expect(continued.first.step).toBe(1);
  expect(continued.last.loss).toBeLessThan(continued.first.loss);

  // A finished run leaves no saved run behind: a reload offers nothing.
  await page.reload();
  await expect.poll(() => page.getByTestId('model-load').isEnabled(), { timeout: 60_000, interval: 250 }).toBe(true);
  await page.waitForTimeout(1500);
  expect(await page.getByTestId('resume-offer').count()).toBe(0);
  console.log(`losses: lora ${lora.first.loss} → ${lora.last.loss} (validation ${lora.validation!.loss}), adapter ${adapter.first.loss} → ${adapter.last.loss}, qlora ${qlora.first.loss} → ${qlora.last.loss}; resumed at ${checkpointStep}, paused at ${pausedAt}, continued after the device loss at ${lostAt}`);
  expect(errors).toEqual([]);
  await page.close();
});
