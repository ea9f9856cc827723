// End-to-end harness: build the app with Vite, serve it on 127.0.0.1 (a secure context, as WebGPU
// requires), and drive Debian's Chromium with WebGPU on SwiftShader through playwright-core.

import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { build, preview, type PreviewServer } from 'vite';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--enable-unsafe-swiftshader',
  '--use-angle=swiftshader',
  // Without these Chromium keeps calling hosts that this closed network refuses.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export interface App {
  url: string;
  /** The production build the preview server serves. */
  outDir: string;
  browser: Browser;
  close(): Promise<void>;
}

export async function startApp(): Promise<App> {
  const outDir = mkdtempSync(join(tmpdir(), 'tabtune-e2e-dist-'));
  await build({ logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  const server: PreviewServer = await preview({ logLevel: 'warn', build: { outDir }, preview: { host: '127.0.0.1', port: 0, strictPort: false } });
  const address = server.httpServer.address();
  if (!address || typeof address === 'string') throw new Error('preview server has no port');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS }); // a fresh profile each launch
  return {
    url: `http://127.0.0.1:${address.port}/`,
    outDir,
    browser,
    async close() {
      await browser.close();
      await server.close();
      rmSync(outDir, { recursive: true, force: true });
    },
  };
}

/**
 * The built-in demo model, ready: a fresh page loads it by itself; a page that did not (opened with a share link
 * or a saved run, or unloaded) loads it through the model panel here.
 */
export async function loadDemo(page: Page): Promise<void> {
  const status = async () => (await page.getByTestId('model-status').textContent()) ?? '';
  const loadingOrReady = async () => /ready|Loading/.test(await status());
  await expect.poll(async () => (await loadingOrReady()) || (await page.getByTestId('model-load').isEnabled()), { timeout: 90_000, interval: 100 }).toBe(true);
  if (!(await loadingOrReady())) {
    await page.getByTestId('model-select').selectOption('demo');
    await page.getByTestId('model-load').click({ timeout: 60_000 });
  }
  await expect.poll(status, { timeout: 90_000, interval: 250 }).toMatch(/ready: Demo model/);
}

/** A new page at `url` with the demo model ready (loadDemo), and the page's uncaught errors collected as they come. */
export async function openWithDemo(browser: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(url);
  await loadDemo(page);
  return { page, errors };
}

/** Genesis 1:1–3 as three paragraphs: a tiny plain-text dataset in the demo model's own style. */
export const GENESIS_DATASET = [
  'In the beginning God created the heaven and the earth.',
  '',
  'And the earth was without form, and void; and darkness was upon the face of the deep.',
  '',
  'And God said, Let there be light: and there was light.',
].join('\n');

/** The Genesis dataset in the data panel, read by the worker, and runs of 16-token rows (at learning rate `lr`, when given). */
export async function fillGenesisRun(page: Page, lr?: number): Promise<void> {
  await page.getByTestId('dataset-input').fill(GENESIS_DATASET);
  await expect.poll(() => page.getByTestId('dataset-summary').textContent(), { timeout: 30_000, interval: 250 }).toMatch(/text: 3 examples, \d+ tokens/);
  await page.getByLabel('Sequence length').fill('16');
  if (lr !== undefined) await page.getByLabel('Learning rate').fill(String(lr));
}

/** Start a run of `steps` steps in the train panel; the loss shown at each step seen, once the run has ended. */
export async function trainSteps(page: Page, steps: number): Promise<Map<number, number>> {
  await page.getByTestId('steps-input').fill(String(steps));
  await page.getByTestId('train-start').click();
  const losses = new Map<number, number>();
  const deadline = Date.now() + 400_000;
  for (;;) {
    const step = Number(await page.getByTestId('train-step').textContent());
    const loss = (await page.getByTestId('train-loss').textContent()) ?? '';
    if (step > 0 && loss !== '' && !losses.has(step)) losses.set(step, Number(loss));
    if (step === steps && (await page.getByTestId('train-start').isEnabled())) return losses;
    const failure = page.getByTestId('train-error');
    if (await failure.count()) throw new Error(`training failed: ${await failure.textContent()}`);
    if (Date.now() > deadline) {
      const status = await page.locator('.train-panel [role=status]').textContent();
      throw new Error(`training did not reach step ${steps} (at ${step}; the train panel says ${JSON.stringify(status)})`);
    }
    await page.waitForTimeout(100);
  }
}

/** Greedy generation in the playground (repetition penalty off): the text once the run has finished. */
export async function greedyText(page: Page, prompt: string, newTokens: number, timeout = 300_000): Promise<string> {
  await page.getByTestId('generate-prompt').fill(prompt);
  await page.getByLabel('Max new tokens').fill(String(newTokens));
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Repetition penalty').fill('1');
  await page.getByTestId('generate-run').click();
  await expect.poll(() => page.getByTestId('generate-run').isEnabled(), { timeout, interval: 100 }).toBe(true);
  return (await page.getByTestId('generate-output').textContent()) ?? '';
}

/** Click `testId` and return the download's file name and bytes. */
export async function downloadOf(page: Page, testId: string, timeout = 300_000): Promise<{ name: string; bytes: Uint8Array }> {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout }), page.getByTestId(testId).click()]);
  return { name: download.suggestedFilename(), bytes: new Uint8Array(await readFile((await download.path())!)) };
}

/**
 * Record, in the page, every text length the elements with these test ids show from now on (one MutationObserver
 * on the document, so elements that appear later are seen too): what streaming showed then does not depend on how
 * often the test looks, which on a busy machine would catch fewer states. `stop()` ends the watch and gives the
 * distinct lengths seen, by test id.
 */
export async function watchTextLengths(page: Page, testIds: readonly string[]): Promise<{ stop(): Promise<Record<string, number[]>> }> {
  await page.evaluate((ids) => {
    const seen: Record<string, number[]> = Object.fromEntries(ids.map((id) => [id, []]));
    const observer = new MutationObserver(() => {
      for (const id of ids) {
        const element = document.querySelector(`[data-testid="${id}"]`);
        if (element) seen[id].push(element.textContent?.length ?? 0);
      }
    });
    observer.observe(document.body, { childList: true, characterData: true, subtree: true });
    (window as unknown as { textWatch: { seen: Record<string, number[]>; observer: MutationObserver } }).textWatch = { seen, observer };
  }, testIds);
  return {
    stop: () =>
      page.evaluate(() => {
        const { seen, observer } = (window as unknown as { textWatch: { seen: Record<string, number[]>; observer: MutationObserver } }).textWatch;
        observer.disconnect();
        return Object.fromEntries(Object.entries(seen).map(([id, lengths]) => [id, [...new Set(lengths)]]));
      }),
  };
}
