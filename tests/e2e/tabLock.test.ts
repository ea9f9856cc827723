// One engine per browser profile, in a real Chromium: two tabs of the same origin (one browser context) share the
// Web Lock, so the second waits with a notice and cannot load a model; it starts its own engine when the first
// closes, or at once through "Use it here", after which the first tab says the engine moved and can take it back.
// A run in progress is paused at a step boundary (checkpoint saved) before the engine moves; without the Web
// Locks API the app runs unguarded and says so in the console.

import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadDemo, startApp, type App } from './browser.ts';

/** The device panel's self-check, [[1,2],[3,4]]·[[5,6],[7,8]], once this tab's engine has its device. */
const MATMUL = '19, 22, 43, 50';

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

async function openTab(context: BrowserContext, errors: string[]): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(app.url);
  return page;
}

async function engineReady(page: Page): Promise<void> {
  await page.getByTestId('model-select').selectOption('demo');
  await expect.poll(() => page.getByTestId('model-load').isEnabled(), { timeout: 60_000, interval: 250 }).toBe(true);
  expect(await page.getByTestId('gpu-matmul-check').textContent()).toBe(MATMUL);
  expect(await page.getByTestId('tab-lock-notice').count()).toBe(0);
}

it('a second tab waits for the first, cannot load, and starts by itself when the first closes', { timeout: 300_000 }, async () => {
  const context = await app.browser.newContext();
  const errors: string[] = [];
  const first = await openTab(context, errors);
  await loadDemo(first);

  const second = await openTab(context, errors);
  const notice = second.getByTestId('tab-lock-notice');
  await notice.waitFor({ timeout: 30_000 });
  expect(await notice.getAttribute('role')).toBe('status');
  expect(await notice.textContent()).toContain('tabtune is running in another tab');
  await second.getByTestId('model-select').selectOption('demo');
  await second.waitForTimeout(2000); // long enough for an engine to start, had it been allowed to
  expect(await second.getByTestId('model-load').isDisabled()).toBe(true);
  expect(await second.getByTestId('gpu-matmul-check').count()).toBe(0);
  expect(await first.getByTestId('model-status').textContent()).toContain('ready');

  await first.close();
  await engineReady(second);
  await loadDemo(second);
  expect(await second.getByTestId('model-status').textContent()).toContain('ready');
  expect(errors).toEqual([]);
  await context.close();
});

it('"Use it here" moves the engine to the asking tab, and "Take it back" returns it', { timeout: 300_000 }, async () => {
  const context = await app.browser.newContext();
  const errors: string[] = [];
  const first = await openTab(context, errors);
  await engineReady(first);
  const second = await openTab(context, errors);
  await second.getByTestId('tab-lock-notice').waitFor({ timeout: 30_000 });

  await second.getByTestId('tab-lock-takeover').click();
  await engineReady(second);
  const moved = first.getByTestId('tab-lock-notice');
  await expect.poll(() => moved.textContent(), { timeout: 30_000, interval: 250 }).toContain('tabtune moved to another tab');
  expect(await first.getByTestId('model-load').isDisabled()).toBe(true);
  expect(await first.getByTestId('tab-lock-takeover').textContent()).toBe('Take it back');

  // The moved tab takes it back: the roles swap.
  await first.getByTestId('tab-lock-takeover').click();
  await engineReady(first);
  await expect.poll(() => second.getByTestId('tab-lock-notice').textContent(), { timeout: 30_000, interval: 250 }).toContain('tabtune moved to another tab');
  expect(await second.getByTestId('model-load').isDisabled()).toBe(true);
  expect(errors).toEqual([]);
  await context.close();
});

it('a tab training when asked to hand over stops the run at a step boundary before the other tab starts', { timeout: 400_000 }, async () => {
  const context = await app.browser.newContext();
  const errors: string[] = [];
  const first = await openTab(context, errors);
  await loadDemo(first);
  await first.getByTestId('method-select').selectOption('lora');
  await first.getByTestId('dataset-input').fill('In the beginning God created the heaven and the earth.\n\nAnd God said, Let there be light.');
  await first.getByLabel('Sequence length').fill('16');
  await first.getByTestId('steps-input').fill('500');
  await first.getByTestId('train-start').click();
  await expect.poll(async () => Number(await first.getByTestId('train-step').textContent()), { timeout: 120_000, interval: 250 }).toBeGreaterThanOrEqual(1);

  const second = await openTab(context, errors);
  await second.getByTestId('tab-lock-notice').waitFor({ timeout: 30_000 });
  await second.getByTestId('tab-lock-takeover').click();
  await engineReady(second);
  // By the time the second tab has its engine, the first has stopped its run and its worker.
  expect(await first.getByTestId('tab-lock-notice').textContent()).toContain('tabtune moved to another tab');
  const stoppedAt = Number(await first.getByTestId('train-step').textContent());
  expect(stoppedAt).toBeGreaterThanOrEqual(1);
  expect(stoppedAt).toBeLessThan(500);
  expect(await first.getByTestId('train-stop').isDisabled()).toBe(true);
  expect(await first.getByTestId('train-start').isDisabled()).toBe(true);
  expect(await first.getByTestId('model-status').textContent()).not.toContain('ready');
  // The cancel paused the run at a step boundary, where the training code wrote its checkpoint.
  await first.getByText(`Stopped after ${stoppedAt} steps: tabtune moved to another tab. Its checkpoint of step ${stoppedAt} is saved in browser storage.`).waitFor({ timeout: 5_000 });
  await first.waitForTimeout(1500);
  expect(Number(await first.getByTestId('train-step').textContent())).toBe(stoppedAt);
  expect(errors).toEqual([]);
  await context.close();
});

it('without the Web Locks API the engine runs anyway, with a console warning', { timeout: 120_000 }, async () => {
  const page = await app.browser.newPage();
  const errors: string[] = [];
  const warnings: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => void (message.type() === 'warning' && warnings.push(message.text())));
  await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined, configurable: true }));
  await page.goto(app.url);
  await engineReady(page);
  expect(warnings.some((text) => text.includes('no Web Locks API') && text.includes('not kept from running the engine'))).toBe(true);
  expect(errors).toEqual([]);
  await page.close();
});
