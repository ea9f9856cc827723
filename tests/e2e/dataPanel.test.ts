// The data panel in a real Chromium: a prompt/completion .jsonl file dropped through a real drop event (format,
// example count, the bad line with its number, and the token preview with masked prompt tokens and trained
// completion tokens, chip for chip as computed here in Node with the same tokenizer); a .txt file chosen with the
// file input; a file too long to edit shown read-only; a binary file refused with a message naming it.

import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadChatTemplate } from '../../src/io/chatTemplate.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer } from '../../src/io/tokenizer.ts';
import { parseDataset, tokenizeDataset } from '../../src/train/data.ts';
import { chipText } from '../../src/ui/DatasetPreview.tsx';
import { formatCount } from '../../src/ui/format.ts';
import { previewDataset } from '../../src/worker/datasetPreview.ts';
import { EXAMPLE_DATASET } from '../../src/ui/exampleDataset.ts';
import { loadDemo, startApp, type App } from './browser.ts';

const DEMO = new URL('../../public/demo/', import.meta.url).pathname;
/** The app's default sequence length: the worker tokenizes with a context of seqLen + 1 tokens. */
const SEQ_LEN = 32;

const JSONL = [
  JSON.stringify({ prompt: 'Q: What is 2+2?\nA:', completion: ' 4' }),
  JSON.stringify({ prompt: 'The capital of France is', completion: ' Paris, naïve café.' }),
  'this line is not JSON',
  '',
  JSON.stringify({ prompt: 'Say hi.', completion: ' Hello — there!' }),
].join('\n');

const TEXT = 'The first paragraph of plain text.\nIt has two lines.\n\nThe second paragraph.\n';

interface Chip {
  text: string;
  trained: boolean;
  special: boolean;
}

/** The demo model's tokenizer and chat template, loaded here in Node. */
async function demoTokenizer() {
  const files = localDirectory(DEMO);
  const tokenizer = await loadTokenizer(files);
  return { tokenizer, chatTemplate: await loadChatTemplate(files, tokenizer) };
}

/** What the panel should show for `text`: its summary line and preview, computed here with the demo tokenizer. */
async function expected(text: string, seqLen = SEQ_LEN): Promise<{ summary: string; rows: { line: number; chips: Chip[]; more: number }[] }> {
  const { tokenizer, chatTemplate } = await demoTokenizer();
  const dataset = tokenizeDataset(parseDataset(text), { tokenizer, chatTemplate, maxTokens: seqLen + 1 });
  const { examples, tokens, targetTokens } = dataset.stats;
  return {
    summary: `${dataset.format}: ${examples} examples, ${formatCount(tokens)} tokens (${formatCount(targetTokens)} trained).`,
    rows: previewDataset(dataset, tokenizer).map((example) => ({
      line: example.line,
      chips: example.tokens.map((t) => ({ text: chipText(t.text), trained: t.trained, special: t.special })),
      more: example.totalTokens - example.tokens.length,
    })),
  };
}

/** The first line of the dataset summary, as drawn. */
const summaryLine = (page: Page) => page.getByTestId('dataset-summary').locator('p.status').textContent();

/** The preview as drawn: per example row, its line and its chips (text and flags from the DOM). */
async function drawnPreview(page: Page): Promise<{ line: number; chips: Chip[] }[]> {
  return page.getByTestId('dataset-preview').evaluate((root) =>
    Array.from(root.querySelectorAll('li'), (row) => ({
      line: Number(row.getAttribute('data-line')),
      chips: Array.from(row.querySelectorAll<HTMLElement>('.token-chip'), (chip) => ({
        text: chip.textContent ?? '',
        trained: chip.dataset.trained === 'true',
        special: chip.dataset.special === 'true',
      })),
    })),
  );
}

let app: App;
let page: Page;
let loaded: Promise<void> | null = null;
const errors: string[] = [];
beforeAll(async () => {
  app = await startApp();
  page = await app.browser.newPage();
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(app.url);
}, 300_000);
/** One page with the demo model for every test (loadDemo polls with expect, so it runs inside a test). */
const demoLoaded = () => (loaded ??= loadDemo(page));
afterAll(async () => {
  await page?.close();
  await app?.close();
});

describe('the data panel', () => {
  it('reads a dropped .jsonl file: format, counts, the bad line, and the first examples token by token', { timeout: 240_000 }, async () => {
    await demoLoaded();
    // A real drop: a DataTransfer holding a File, through dragenter, dragover and drop on the drop zone.
    const highlighted = await page.getByTestId('dataset-drop').evaluate(async (zone, text) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([text], 'qa.jsonl', { type: 'application/jsonl' }));
      const fire = (type: string) => zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
      /** Whether the zone's highlight becomes `on` within a second (React renders after the event). */
      const highlight = async (on: boolean) => {
        for (let waited = 0; waited < 1000; waited += 20) {
          if (zone.classList.contains('dragging') === on) return on;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return !on;
      };
      fire('dragenter');
      const overAccepted = !fire('dragover'); // preventDefault: the zone accepts the drop
      const during = await highlight(true);
      fire('drop');
      return { overAccepted, during, after: await highlight(false) };
    }, JSONL);
    expect(highlighted).toEqual({ overAccepted: true, during: true, after: false });

    const want = await expected(JSONL);
    expect(want.summary).toMatch(/^prompt-completion: 3 examples, \d+ tokens \(\d+ trained\)\.$/);
    await expect.poll(() => summaryLine(page), { timeout: 30_000, interval: 250 }).toBe(want.summary);
    expect(await page.getByTestId('dataset-file-name').textContent()).toBe('From the file qa.jsonl.');
    expect(await page.getByTestId('dataset-input').inputValue()).toBe(JSONL);
    const issues = await page.getByRole('list', { name: 'Bad lines' }).locator('li').allTextContents();
    expect(issues).toHaveLength(1);
    expect(issues[0]).toBe('line 3 is not valid JSON (unexpected character "t" at character 0)');

    expect(want.rows.map((e) => e.line)).toEqual([1, 2, 5]);
    const drawn = await drawnPreview(page);
    expect(drawn).toEqual(want.rows.map(({ line, chips }) => ({ line, chips })));
    // The prompt is masked and the completion trained: example 1 is "Q: What is 2+2?\nA:" | " 4" <eos>.
    expect(drawn[0].chips.map((c) => [c.text, c.trained])).toEqual([
      ['Q', false],
      [':', false],
      [' What', false],
      [' is', false],
      [' 2', false],
      ['+', false],
      ['2', false],
      ['?', false],
      ['↵', false],
      ['A', false],
      [':', false],
      [' 4', true],
      ['<|endoftext|>', true],
    ]);
    // Masked chips say so without colour: struck through, and a title naming them.
    const firstChip = page.getByTestId('dataset-preview').locator('li .token-chip.masked').first();
    expect(await firstChip.getAttribute('title')).toMatch(/^masked \(not trained\)/);
    expect(await firstChip.evaluate((chip) => getComputedStyle(chip).textDecorationLine)).toBe('line-through');
    expect(await page.getByTestId('dataset-preview').textContent()).not.toContain('more tokens');
  });

  it('reads a .txt file chosen with the file input as plain text', { timeout: 120_000 }, async () => {
    await demoLoaded();
    await page.getByTestId('dataset-file').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(TEXT) });
    const want = await expected(TEXT);
    expect(want.summary).toMatch(/^text: 2 examples, /);
    await expect.poll(() => summaryLine(page), { timeout: 30_000, interval: 250 }).toBe(want.summary);
    expect(await page.getByTestId('dataset-file-name').textContent()).toBe('From the file notes.txt.');
    expect(await drawnPreview(page)).toEqual(want.rows.map(({ line, chips }) => ({ line, chips })));
    // Plain text: every token but the first is trained.
    expect(want.rows[0].chips.map((c) => c.trained)).toEqual(want.rows[0].chips.map((_, i) => i > 0));
  });

  it('fills the example dataset: question/answer pairs whose questions are masked', { timeout: 120_000 }, async () => {
    await demoLoaded();
    await page.getByTestId('dataset-example').click();
    expect(await page.getByTestId('dataset-input').inputValue()).toBe(EXAMPLE_DATASET);
    const want = await expected(EXAMPLE_DATASET);
    expect(want.summary).toMatch(/^prompt-completion: 12 examples, /);
    await expect.poll(() => summaryLine(page), { timeout: 30_000, interval: 250 }).toBe(want.summary);
    expect(await drawnPreview(page)).toEqual(want.rows.map(({ line, chips }) => ({ line, chips })));
    expect(want.rows[0].chips.filter((c) => c.trained).map((c) => c.text).join('')).toBe(' God created the heaven and the earth.<|endoftext|>');
  });

  it('shows a file too long to edit read-only, with its head, and counts all of it', { timeout: 180_000 }, async () => {
    await demoLoaded();
    const lines = Array.from({ length: 6000 }, (_, i) => JSON.stringify({ text: `Row ${i}: a line of the long file, padded to make it longer.` }));
    const long = lines.join('\n') + '\n';
    expect(long.length).toBeGreaterThan(256 * 1024);
    await page.getByTestId('dataset-file').setInputFiles({ name: 'long.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(long) });
    const want = await expected(long);
    expect(want.summary).toMatch(/^jsonl-text: 6000 examples, /);
    await expect.poll(() => summaryLine(page), { timeout: 120_000, interval: 500 }).toBe(want.summary);
    expect(await page.getByTestId('dataset-input').count()).toBe(0);
    const head = (await page.getByTestId('dataset-head').textContent()) ?? '';
    expect(head.split('\n').slice(0, 40)).toEqual(lines.slice(0, 40));
    expect(head.endsWith('\n…')).toBe(true);
    expect(await page.locator('.dataset-large-label').textContent()).toMatch(/^long\.jsonl: \d+\.\d KiB, 6\.0 k lines/);
    expect(await drawnPreview(page)).toEqual(want.rows.map(({ line, chips }) => ({ line, chips })));
    await page.getByTestId('dataset-drop').getByRole('button', { name: 'Clear' }).click();
    expect(await page.getByTestId('dataset-input').inputValue()).toBe('');
  });

  it('caps a long example at 200 chips and says how many tokens follow', { timeout: 120_000 }, async () => {
    await demoLoaded();
    const paragraph = Array.from({ length: 60 }, (_, i) => `Sentence ${i} of one long paragraph.`).join(' ');
    await page.getByLabel('Sequence length').fill('255');
    await page.getByTestId('dataset-input').fill(paragraph);
    const want = await expected(paragraph, 255);
    expect(want.rows[0].chips).toHaveLength(200);
    expect(want.rows[0].more).toBe(56); // the first window holds 256 tokens
    expect(want.summary).toMatch(/^text: 4 examples, 770 tokens/); // one paragraph, split into windows of 256
    await expect.poll(() => summaryLine(page), { timeout: 30_000, interval: 250 }).toBe(want.summary);
    expect(await drawnPreview(page)).toEqual(want.rows.map(({ line, chips }) => ({ line, chips })));
    const mores = await page.getByTestId('dataset-preview').locator('.token-more').allTextContents();
    expect(mores).toEqual(want.rows.filter((e) => e.more > 0).map((e) => `… ${e.more} more tokens`));
    expect(mores).toHaveLength(3);
    await page.getByLabel('Sequence length').fill(String(SEQ_LEN));
  });

  it('refuses a binary file with a message naming it, keeping the dataset', { timeout: 60_000 }, async () => {
    await demoLoaded();
    await page.getByTestId('dataset-input').fill(TEXT);
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52]);
    await page.getByTestId('dataset-file').setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: png });
    const alert = page.getByTestId('dataset-drop').getByRole('alert');
    await expect.poll(() => alert.textContent(), { timeout: 10_000, interval: 100 }).toBe('"photo.png": is not UTF-8 text (a binary file?): datasets are .txt or .jsonl text');
    expect(await page.getByTestId('dataset-input').inputValue()).toBe(TEXT);
    expect(errors).toEqual([]);
  });
});
