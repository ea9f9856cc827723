// The train panel's advanced settings in a real Chromium (WebGPU on SwiftShader) with the demo model: the
// "Advanced" section opens from the keyboard and shows the defaults (constant schedule, no warm-up, seed 0); the
// seed orders the rows, so two 3-step LoRA runs from a freshly attached adapter with the same seed show the same
// training loss at every step (and the same chart), and a run with another seed shows other losses.

import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { fillGenesisRun, openWithDemo, startApp, trainSteps, type App } from './browser.ts';

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

interface RunLosses {
  /** The loss shown at each step seen. */
  byStep: Map<number, number>;
  /** The chart's training line (every step's loss) and its description (first and last loss). */
  points: string;
  label: string;
}

/** Attach a fresh adapter (LoRA's initialization is seeded), then train 3 steps. */
async function freshRun(page: Page): Promise<RunLosses> {
  await page.getByTestId('method-attach').click();
  await expect.poll(() => page.getByTestId('method-status').textContent(), { timeout: 30_000, interval: 100 }).toMatch(/trainable parameters/);
  const byStep = await trainSteps(page, 3);
  const chart = page.getByTestId('loss-chart');
  return { byStep, points: (await chart.locator('polyline.loss-train').getAttribute('points')) ?? '', label: (await chart.getAttribute('aria-label')) ?? '' };
}

it('the seed orders the rows: the same seed repeats a run step for step, another seed does not', { timeout: 300_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, app.url);
  await page.getByTestId('method-select').selectOption('lora');
  await fillGenesisRun(page);

  // Closed by default; Enter on its summary opens it.
  const advanced = page.locator('.train-panel details.train-advanced');
  const isOpen = () => advanced.evaluate((details) => (details as HTMLDetailsElement).open);
  expect(await isOpen()).toBe(false);
  expect(await advanced.locator('summary').textContent()).toBe('Advanced (constant schedule, no warm-up, seed 0)');
  await advanced.locator('summary').focus();
  await page.keyboard.press('Enter');
  expect(await isOpen()).toBe(true);
  expect(await page.getByTestId('schedule-select').inputValue()).toBe('constant');
  expect(await page.getByTestId('warmup-input').inputValue()).toBe('0');
  expect(await page.getByTestId('seed-input').inputValue()).toBe('0');

  await page.getByTestId('seed-input').fill('5');
  const first = await freshRun(page);
  const again = await freshRun(page);
  await page.getByTestId('seed-input').fill('6');
  expect(await advanced.locator('summary').textContent()).toBe('Advanced (constant schedule, no warm-up, seed 6)');
  const other = await freshRun(page);

  for (const run of [first, again, other]) {
    expect(run.byStep.has(3)).toBe(true);
    for (const loss of run.byStep.values()) expect(loss).toBeGreaterThan(0);
  }
  const common = [...first.byStep.keys()].filter((step) => again.byStep.has(step));
  expect(common).toContain(3);
  for (const step of common) expect(again.byStep.get(step)).toBe(first.byStep.get(step));
  expect(again.points).toBe(first.points);
  expect(again.label).toBe(first.label);
  expect(other.points).not.toBe(first.points);
  expect(other.label).not.toBe(first.label);
  console.log(`seed 5: ${first.label} (${[...first.byStep].join(' ')}); again: ${[...again.byStep].join(' ')}; seed 6: ${other.label} (${[...other.byStep].join(' ')})`);
  expect(errors).toEqual([]);
  await page.close();
});
