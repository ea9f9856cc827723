// The app in a real Chromium (WebGPU on SwiftShader), against the production build: load the demo model through
// the model panel, generate greedily in the playground, and check the streamed text against a greedy generation
// computed here in Node from the same files by a different path (the full sequence recomputed every step, no KV
// cache, no worker), whose tokens are in turn checked against PyTorch's (tests/fixtures/demo/golden.json). Then: picked local files (and refused bad picks), the page shown without WebGPU, and the
// banner and recovery after a device loss, and the colour themes.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer } from '../../src/io/tokenizer.ts';
import { loadModel } from '../../src/models/load.ts';
import { tokenTensor } from '../../src/models/model.ts';
import { testEngine } from '../helpers/gpu.ts';
import { loadDemo, startApp, watchTextLengths, type App } from './browser.ts';

const DEMO = fileURLToPath(new URL('../../public/demo/', import.meta.url));
/** PyTorch's greedy continuations of the demo model (scripts/demo-model/sample.py). */
const DEMO_GOLDEN = new URL('../fixtures/demo/golden.json', import.meta.url);
const PROMPT = 'In the beginning God created';
const NEW_TOKENS = 8;

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

/**
 * Greedy continuation of PROMPT computed in Node: the whole sequence through model.forward at every step.
 * `trustedText` decodes the tokens before the first near-tie (top-2 logits within 1e-3), where float rounding
 * on another path could pick the other token; it is all of `text` when there is none.
 */
async function nodeGreedy(): Promise<{ text: string; trustedText: string; trustedTokens: number; tokens: number[] }> {
  const engine = await testEngine();
  const files = localDirectory(DEMO);
  const tokenizer = await loadTokenizer(files);
  const { model, config } = await loadModel(engine, files);
  const stop = new Set([...tokenizer.special.eosIds, ...config.eosTokenIds]);
  const limit = Math.min(tokenizer.vocabSize, config.vocabSize);
  const ids = tokenizer.encode(PROMPT);
  const tokens: number[] = [];
  const margins: number[] = [];
  try {
    for (let step = 0; step < NEW_TOKENS; step++) {
      const logits = (await engine.scope(() => engine.noGrad(() => model.forward(tokenTensor(engine, [ids], config.vocabSize))).read())) as Float32Array;
      const row = logits.subarray((ids.length - 1) * config.vocabSize, (ids.length - 1) * config.vocabSize + limit);
      let best = 0;
      for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
      let second = -Infinity;
      for (let i = 0; i < row.length; i++) if (i !== best && row[i] > second) second = row[i];
      margins.push(row[best] - second);
      if (stop.has(best)) break;
      tokens.push(best);
      ids.push(best);
    }
  } finally {
    model.dispose();
  }
  const nearTie = margins.findIndex((margin) => margin < 1e-3);
  const trustedTokens = nearTie === -1 ? tokens.length : Math.min(nearTie, tokens.length);
  const decode = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
  return { text: decode(tokens), trustedText: decode(tokens.slice(0, trustedTokens)), trustedTokens, tokens };
}

let greedyOnce: ReturnType<typeof nodeGreedy> | null = null;
const expectedGreedy = () => (greedyOnce ??= nodeGreedy());

/** Generate greedily from the playground; the output's lengths seen while the run was going are returned too. */
async function generateGreedy(page: Page, prompt: string, newTokens: number): Promise<{ text: string; partialLengths: number[] }> {
  await page.getByTestId('generate-prompt').fill(prompt);
  await page.getByLabel('Max new tokens').fill(String(newTokens));
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Repetition penalty').fill('1');
  const watch = await watchTextLengths(page, ['generate-output']);
  await page.getByTestId('generate-run').click();
  // The run button is disabled while generating and enabled again when the run has finished.
  await expect.poll(() => page.getByTestId('generate-run').isEnabled(), { timeout: 240_000, interval: 100 }).toBe(true);
  const partialLengths = (await watch.stop())['generate-output'];
  expect(await page.locator('.playground [role=status]').textContent()).toMatch(/tokens after a \d+-token prompt/);
  return { text: (await page.getByTestId('generate-output').textContent()) ?? '', partialLengths };
}

it('loads the demo model and streams the greedy text that Node and PyTorch compute from the same files', { timeout: 600_000 }, async () => {
  const expected = await expectedGreedy();
  expect(expected.tokens.length).toBeGreaterThan(4);
  expect(expected.trustedTokens).toBeGreaterThanOrEqual(4);
  // The Node tokens are PyTorch's too (the golden was made from these very files).
  const golden = JSON.parse(readFileSync(DEMO_GOLDEN, 'utf8')) as {
    sha256: Record<string, string>;
    cases: { prompt: string; greedy_new_tokens: number[]; greedy_top2_margins: number[] }[];
  };
  for (const [file, sha] of Object.entries(golden.sha256)) {
    const actual = createHash('sha256').update(readFileSync(join(DEMO, file))).digest('hex');
    expect(actual, `tests/fixtures/demo/golden.json was made from another ${file}: regenerate it with scripts/demo-model/sample.py`).toBe(sha);
  }
  const goldenCase = golden.cases.find((c) => c.prompt === PROMPT)!;
  expect(Math.min(...goldenCase.greedy_top2_margins.slice(0, NEW_TOKENS))).toBeGreaterThan(1e-3);
  expect(expected.tokens).toEqual(goldenCase.greedy_new_tokens.slice(0, NEW_TOKENS));

  const page = await app.browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(app.url);
  // The page opens with the demo model loaded, without a click.
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 90_000, interval: 250 }).toMatch(/^ready: Demo model \(llama/);
  await loadDemo(page);
  const summary = await page.getByTestId('model-summary').textContent();
  expect(summary).toMatch(/llama/);
  expect(summary).toMatch(/4 heads of 32, 2 key\/value heads/);

  const first = await generateGreedy(page, PROMPT, NEW_TOKENS);
  expect(first.text.length).toBeGreaterThan(0);
  if (expected.trustedTokens === expected.tokens.length) expect(first.text).toBe(expected.text);
  else expect(first.text.startsWith(expected.trustedText)).toBe(true);
  // Streaming: the text was seen partly written (several lengths strictly between empty and final).
  expect(first.partialLengths.filter((n) => n > 0 && n < first.text.length).length).toBeGreaterThan(1);
  // Run again, shorter: the start of the same text (greedy is deterministic; each run has a fresh KV cache).
  const again = await generateGreedy(page, PROMPT, 3);
  expect(again.text.length).toBeGreaterThan(0);
  expect(first.text.startsWith(again.text)).toBe(true);
  expect(errors).toEqual([]);
  await page.close();
});

it('loads picked files; a bad pick or hub id is reported and leaves the loaded model in place', { timeout: 600_000 }, async () => {
  const page = await app.browser.newPage();
  await page.goto(app.url);
  await loadDemo(page); // the page opens with the demo model; wait for it before choosing another
  await page.getByTestId('model-select').selectOption('files');
  const filesInput = page.getByTestId('model-files');
  const demoFiles = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
  await filesInput.setInputFiles(demoFiles.map((name) => join(DEMO, name)));
  await page.getByText('5 files: config.json').waitFor();
  await page.getByTestId('model-load').click({ timeout: 60_000 });
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 120_000, interval: 250 }).toContain('ready: 5 picked files (llama');

  // Weights missing: refused with the reason, and the model loaded before stays loaded.
  await filesInput.setInputFiles([join(DEMO, 'config.json'), join(DEMO, 'tokenizer.json')]);
  await page.getByText('2 files: config.json, tokenizer.json').waitFor();
  await page.getByTestId('model-load').click();
  const alert = page.locator('.panel [role=alert]');
  await alert.waitFor({ timeout: 60_000 });
  expect(await alert.textContent()).toMatch(/has no model\.safetensors or model\.safetensors\.index\.json/);
  expect(await page.getByTestId('model-status').textContent()).toContain('ready: 5 picked files');

  // A hub id with ".." is refused before anything is fetched.
  await page.getByTestId('model-select').selectOption('custom');
  await page.getByLabel('Hub repository id or URL').fill('org/../secrets');
  await page.getByTestId('model-load').click();
  await expect.poll(async () => (await alert.textContent()) ?? '', { timeout: 30_000 }).toContain('contains ".."');
  expect(await page.getByTestId('model-status').textContent()).toContain('ready: 5 picked files');
  await page.close();
});

it('shows what to do when the browser gives no WebGPU adapter, or has no WebGPU at all', async () => {
  // Without --enable-unsafe-webgpu and with the feature off, Chromium on Linux keeps navigator.gpu but finds no adapter.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--disable-features=WebGPU', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  try {
    const expectNotice = async (page: Page, reason: string) => {
      await page.goto(app.url);
      const notice = page.getByTestId('webgpu-missing');
      await notice.waitFor({ timeout: 60_000 });
      const text = (await notice.textContent()) ?? '';
      expect(text).toContain('WebGPU is not available here');
      expect(text).toContain(reason);
      expect(text).toContain('What to do');
      expect(await page.getByTestId('model-load').count()).toBe(0);
    };
    const noAdapter = await browser.newPage();
    expect(await noAdapter.evaluate(async () => (await navigator.gpu?.requestAdapter()) ?? null)).toBeNull();
    await expectNotice(noAdapter, 'no WebGPU adapter found');

    // A browser without the API (older or other browsers): navigator.gpu is absent.
    const noApi = await browser.newPage();
    await noApi.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
    await expectNotice(noApi, 'navigator.gpu is missing');
  } finally {
    await browser.close();
  }
});

it('reports a lost device, then restarts the engine and reloads the model', { timeout: 600_000 }, async () => {
  const page = await app.browser.newPage();
  await page.goto(`${app.url}?faults`);
  await loadDemo(page);
  expect(await page.evaluate(() => (window as unknown as { tabtuneFaults: { loseDevice(): Promise<boolean> } }).tabtuneFaults.loseDevice())).toBe(true);
  const banner = page.getByTestId('device-lost');
  await banner.waitFor({ timeout: 30_000 });
  expect(await banner.textContent()).toContain('The GPU device was lost');
  expect(await page.getByTestId('model-status').textContent()).not.toContain('ready');
  expect(await page.getByTestId('generate-run').isEnabled()).toBe(false);
  await banner.getByRole('button', { name: /Restart the engine and reload the demo model/ }).click();
  await expect.poll(() => page.getByTestId('model-status').textContent(), { timeout: 120_000, interval: 250 }).toContain('ready');
  expect(await page.getByTestId('device-lost').count()).toBe(0);
  // The new device computes: two greedy tokens, the start of the known continuation.
  const again = await generateGreedy(page, PROMPT, 2);
  expect(again.text.length).toBeGreaterThan(0);
  const expected = await expectedGreedy();
  if (expected.trustedTokens >= 2) expect(expected.text.startsWith(again.text)).toBe(true);

  // Stop ends a long run early: the worker sees the cancel between two tokens.
  await page.getByLabel('Max new tokens').fill('200');
  await page.getByTestId('generate-run').click();
  await expect.poll(async () => ((await page.getByTestId('generate-output').textContent()) ?? '').length, { timeout: 120_000, interval: 100 }).toBeGreaterThan(0);
  await page.getByRole('button', { name: 'Stop' }).click();
  await expect.poll(() => page.locator('.playground [role=status]').textContent(), { timeout: 60_000, interval: 100 }).toMatch(/tokens after a \d+-token prompt; stopped/);
  const stoppedAt = Number(/^(\d+) tokens/.exec((await page.locator('.playground [role=status]').textContent()) ?? '')?.[1]);
  expect(stoppedAt).toBeGreaterThan(0);
  expect(stoppedAt).toBeLessThan(200);
  await page.close();
});

it('follows the system colour scheme until the user picks one, and keeps the pick over a reload', async () => {
  const page = await app.browser.newPage();
  const colours = () =>
    page.evaluate(() => {
      const style = getComputedStyle(document.documentElement);
      const panel = document.querySelector('.panel');
      return { background: style.backgroundColor, text: style.color, panel: panel ? getComputedStyle(panel).backgroundColor : null };
    });
  const LIGHT = { background: 'rgb(246, 247, 249)', text: 'rgb(27, 31, 36)', panel: 'rgb(255, 255, 255)' };
  const DARK = { background: 'rgb(15, 18, 22)', text: 'rgb(230, 233, 238)', panel: 'rgb(23, 27, 33)' };
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(app.url);
  await page.locator('.panel').first().waitFor();
  expect(await colours()).toEqual(DARK);
  await page.emulateMedia({ colorScheme: 'light' });
  expect(await colours()).toEqual(LIGHT);
  // A choice overrides the system's, both ways, and outlives a reload.
  await page.getByRole('radio', { name: 'Dark' }).check();
  expect(await colours()).toEqual(DARK);
  await page.reload();
  await page.locator('.panel').first().waitFor();
  expect(await page.getByRole('radio', { name: 'Dark' }).isChecked()).toBe(true);
  expect(await colours()).toEqual(DARK);
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.getByRole('radio', { name: 'Light' }).check();
  expect(await colours()).toEqual(LIGHT);
  await page.getByRole('radio', { name: 'System' }).check();
  expect(await colours()).toEqual(DARK);
  await page.close();
});
