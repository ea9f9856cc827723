// Share links in a real Chromium: load the demo model, choose the adapter method and a few settings (among them a
// cosine schedule, 2 warm-up steps and seed 7 under "Advanced"), make a share link, open it in a new page: the
// confirmation lists the configuration and nothing is loaded until it is confirmed; confirming loads the demo model
// with the shared method, settings and dataset (and does not train). A demo link offers one button instead, which
// loads the model, sets everything up and trains; its default schedule, warm-up and seed are left out of the link.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodeShareConfig } from '../../src/share/shareLink.ts';
import { loadDemo, openWithDemo, startApp, type App } from './browser.ts';

const DATASET = 'In the beginning God created the heaven and the earth.\n\nAnd God said, Let there be light: and there was light.';

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

it('opens a share link in a new page, asks first, then sets up the same configuration', { timeout: 300_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, app.url);
  await page.getByTestId('method-select').selectOption('adapter');
  await page.getByLabel('Reduction factor').fill('4');
  await page.getByTestId('steps-input').fill('7');
  await page.getByTestId('batch-input').fill('3');
  await page.locator('.train-advanced > summary').click();
  await page.getByTestId('schedule-select').selectOption('cosine');
  await page.getByTestId('warmup-input').fill('2');
  await page.getByTestId('seed-input').fill('7');
  await page.getByTestId('dataset-input').fill(DATASET);

  await page.getByTestId('share-link').click();
  await expect.poll(() => page.getByTestId('share-url').inputValue(), { timeout: 10_000, interval: 100 }).toContain('#share=');
  const url = await page.getByTestId('share-url').inputValue();
  expect(url.startsWith(app.url)).toBe(true);
  expect((await decodeShareConfig(url.slice(url.indexOf('#')))).train).toEqual({ steps: 7, seqLength: 32, lr: 0.001, batchSize: 3, schedule: 'cosine', warmupSteps: 2, seed: 7 });

  const shared = await app.browser.newPage();
  shared.on('pageerror', (error) => errors.push(error.message));
  await shared.goto(url);
  const offer = shared.getByTestId('share-offer');
  await offer.waitFor({ timeout: 30_000 });
  const offerText = (await offer.textContent()) ?? '';
  expect(offerText).toContain('demo model');
  expect(offerText).toContain('reduction factor 4');
  expect(offerText).toContain('7 steps of 3 × 32 tokens, learning rate 0.001, cosine schedule, 2 warm-up steps, seed 7');
  // Give the engine time to start: still nothing may be loaded before the user confirms.
  await expect.poll(() => shared.getByTestId('share-confirm').isEnabled(), { timeout: 60_000, interval: 250 }).toBe(true);
  await shared.waitForTimeout(1000);
  expect(await shared.getByTestId('model-status').textContent()).not.toContain('ready');
  expect(await shared.getByTestId('dataset-input').inputValue()).toBe('');

  await shared.getByTestId('share-confirm').click();
  await expect.poll(() => shared.getByTestId('model-status').textContent(), { timeout: 90_000, interval: 250 }).toContain('ready');
  expect(await shared.getByTestId('method-select').inputValue()).toBe('adapter');
  expect(await shared.getByLabel('Reduction factor').inputValue()).toBe('4');
  expect(await shared.getByTestId('steps-input').inputValue()).toBe('7');
  expect(await shared.getByTestId('batch-input').inputValue()).toBe('3');
  expect(await shared.locator('.train-advanced > summary').textContent()).toBe('Advanced (cosine schedule, 2 warm-up steps, seed 7)');
  expect(await shared.getByTestId('schedule-select').inputValue()).toBe('cosine');
  expect(await shared.getByTestId('warmup-input').inputValue()).toBe('2');
  expect(await shared.getByTestId('seed-input').inputValue()).toBe('7');
  expect(await shared.getByTestId('dataset-input').inputValue()).toBe(DATASET);
  expect(await shared.getByTestId('share-offer').count()).toBe(0);
  expect(await shared.getByTestId('train-step').textContent()).toBe('0'); // not trained by itself
  expect(new URL(shared.url()).hash).toBe('');

  // A tampered link is refused with the reason, and offers nothing to confirm.
  const bad = await app.browser.newPage();
  await bad.goto(`${app.url}#share=${url.split('#share=')[1].slice(0, 20)}`);
  await bad.getByTestId('share-error').waitFor({ timeout: 30_000 });
  expect(await bad.getByTestId('share-error').textContent()).toContain('Share link');
  expect(await bad.getByTestId('share-confirm').count()).toBe(0);

  expect(errors).toEqual([]);
  await Promise.all([page.close(), shared.close(), bad.close()]);
});

it('a demo link starts the shared demo with one click: load, set up, train', { timeout: 400_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, app.url); // the page opens with the demo model; unloaded, there is nothing to link to
  await page.getByTestId('model-unload').click();
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 30_000, interval: 100 }).not.toContain('ready');
  await page.getByTestId('share-demo-mode').check();
  await page.getByTestId('share-link').click();
  // Nothing to link to yet: the problem is said, no link is made.
  await page.getByText('Load the demo model or a hub model first', { exact: false }).waitFor({ timeout: 10_000 });
  await loadDemo(page);
  await page.getByTestId('method-select').selectOption('lora');
  await page.getByLabel('Sequence length').fill('16');
  await page.getByTestId('steps-input').fill('4');
  await page.getByTestId('share-link').click();
  // A demo link needs a dataset to train on.
  await page.getByText('A demo link starts training, so it needs a dataset', { exact: false }).waitFor({ timeout: 10_000 });
  expect(await page.getByTestId('share-url').inputValue()).toBe('');
  await page.getByTestId('dataset-input').fill(DATASET);
  await page.getByTestId('share-link').click();
  await expect.poll(() => page.getByTestId('share-url').inputValue(), { timeout: 10_000, interval: 100 }).toContain('#share=');
  const url = await page.getByTestId('share-url').inputValue();
  const config = await decodeShareConfig(url.slice(url.indexOf('#')));
  expect(config).toMatchObject({ demo: true, model: { kind: 'demo' }, method: { kind: 'lora' }, train: { steps: 4, seqLength: 16 }, data: { inline: DATASET } });
  expect(Object.keys(config.train)).toEqual(['steps', 'seqLength', 'lr']); // the defaults stay out of the link
  await page.close(); // one engine at a time on this machine's CPU-emulated GPU

  const demo = await app.browser.newPage();
  demo.on('pageerror', (error) => errors.push(error.message));
  await demo.goto(url);
  const offer = demo.getByTestId('share-offer');
  await offer.waitFor({ timeout: 30_000 });
  expect((await offer.textContent()) ?? '').toContain('trains for 4 steps');
  expect(await demo.getByTestId('share-confirm').count()).toBe(0);
  const start = demo.getByTestId('share-start-demo');
  await expect.poll(() => start.isEnabled(), { timeout: 60_000, interval: 250 }).toBe(true);
  expect(await demo.getByTestId('model-status').textContent()).not.toContain('ready'); // nothing before the click
  await start.click();

  let step = 0;
  let loss = NaN;
  const deadline = Date.now() + 300_000;
  while (step < 2) {
    if (Date.now() > deadline) throw new Error(`training did not reach step 2 (at ${step})`);
    const alert = demo.locator('.panel [role=alert]');
    if (await alert.count()) throw new Error(`the demo failed: ${await alert.first().textContent()}`);
    await demo.waitForTimeout(250);
    step = Number(await demo.getByTestId('train-step').textContent());
    loss = Number((await demo.getByTestId('train-loss').textContent()) || NaN);
  }
  expect(await demo.getByTestId('model-status').textContent()).toContain('ready');
  expect(await demo.getByTestId('method-select').inputValue()).toBe('lora');
  expect(await demo.getByTestId('dataset-input').inputValue()).toBe(DATASET);
  expect(Number.isFinite(loss)).toBe(true);
  expect(loss).toBeGreaterThan(0);
  expect(await demo.getByTestId('share-offer').count()).toBe(0);
  expect(errors).toEqual([]);
  await demo.close();
});
