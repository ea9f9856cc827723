// The data panel's preview: the first examples token by token with their loss masks, on the demo model's tokenizer
// and chat template (public/demo) and on the SentencePiece-style llama fixture tokenizer.

import { beforeAll, describe, expect, it } from 'vitest';
import { loadChatTemplate, type ChatTemplate } from '../../src/io/chatTemplate.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer, type Tokenizer } from '../../src/io/tokenizer.ts';
import { parseDataset, tokenizeDataset, type TokenizedDataset } from '../../src/train/data.ts';
import { previewDataset, tokenTexts } from '../../src/worker/datasetPreview.ts';
import type { DatasetPreviewExample } from '../../src/worker/protocol.ts';

const DEMO = new URL('../../public/demo/', import.meta.url).pathname;
const LLAMA = new URL('../fixtures/tokenizers/llama/', import.meta.url).pathname;

let tokenizer: Tokenizer;
let template: ChatTemplate | null;
beforeAll(async () => {
  const files = localDirectory(DEMO);
  tokenizer = await loadTokenizer(files);
  template = await loadChatTemplate(files, tokenizer);
});

function tokenized(lines: string[], maxTokens = 256, chosen = tokenizer, chatTemplate = template): TokenizedDataset {
  return tokenizeDataset(parseDataset(lines.join('\n')), { tokenizer: chosen, chatTemplate, maxTokens });
}

/** [text, trained, special] per token: the rows as the panel draws them. */
const rows = (example: DatasetPreviewExample) => example.tokens.map((t) => [t.text, t.trained, t.special]);

/** The preview's flags are tokenizeDataset's targets, token for token, and its ids the example's ids. */
function expectMatchesLabels(preview: DatasetPreviewExample[], dataset: TokenizedDataset): void {
  preview.forEach((example, index) => {
    const source = dataset.examples[index];
    expect(example.line).toBe(source.line);
    expect(example.totalTokens).toBe(source.ids.length);
    expect(example.tokens.map((t) => t.id)).toEqual(Array.from(source.ids.subarray(0, example.tokens.length)));
    expect(example.tokens.map((t) => (t.trained ? 1 : 0))).toEqual(Array.from(source.targets.subarray(0, example.tokens.length)));
    expect(example.trainedTokens).toBe(source.targets.reduce((sum, t) => sum + t, 0));
  });
}

describe('previewDataset on the demo tokenizer', () => {
  it('masks the prompt and trains the completion and eos of a prompt/completion example', () => {
    const dataset = tokenized([JSON.stringify({ prompt: 'Q: What is 2+2?\nA:', completion: ' 4, café' })]);
    expect(dataset.format).toBe('prompt-completion');
    const preview = previewDataset(dataset, tokenizer);
    expect(preview).toHaveLength(1);
    expect(rows(preview[0])).toEqual([
      ['Q', false, false],
      [':', false, false],
      [' What', false, false],
      [' is', false, false],
      [' 2', false, false],
      ['+', false, false],
      ['2', false, false],
      ['?', false, false],
      ['\n', false, false],
      ['A', false, false],
      [':', false, false],
      [' 4', true, false],
      [',', true, false],
      [' ca', true, false],
      ['f', true, false],
      ['', true, false], // the first byte of "é"; the next token completes it
      ['é', true, false],
      ['<|endoftext|>', true, true],
    ]);
    expect(preview[0]).toMatchObject({ line: 1, totalTokens: 18, trainedTokens: 7 });
    expectMatchesLabels(preview, dataset);
  });

  it('trains only the assistant turn of a chat example, rendered by the chat template', () => {
    const messages = [
      { role: 'user', content: 'Hi there' },
      { role: 'assistant', content: 'Hello!' },
    ];
    const dataset = tokenized([JSON.stringify({ messages })]);
    expect(dataset.format).toBe('chat');
    const preview = previewDataset(dataset, tokenizer);
    expect(rows(preview[0])).toEqual([
      ['<|user|>', false, true],
      ['\n', false, false],
      ['H', false, false],
      ['i', false, false],
      [' there', false, false],
      ['<|endoftext|>', false, true],
      ['\n', false, false],
      ['<|assistant|>', false, true],
      ['\n', false, false],
      ['H', true, false],
      ['ell', true, false],
      ['o', true, false],
      ['!', true, false],
      ['<|endoftext|>', true, true],
      ['\n', true, false],
    ]);
    expect(preview[0]).toMatchObject({ totalTokens: 15, trainedTokens: 6 });
    expectMatchesLabels(preview, dataset);
  });

  it('shows the first 3 examples, each capped, with the line each came from', () => {
    const lines = ['{"text": "one two three four five six"}', '{"oops": 1}', '{"text": "seven"}', '', '{"text": "eight nine"}', '{"text": "ten"}'];
    const dataset = tokenized(lines);
    const preview = previewDataset(dataset, tokenizer, { tokensPerExample: 4 });
    expect(preview.map((e) => e.line)).toEqual([1, 3, 5]);
    expect(preview.map((e) => e.tokens.length)).toEqual([4, Math.min(4, dataset.examples[1].ids.length), 4]);
    expect(preview[0].totalTokens).toBe(dataset.examples[0].ids.length);
    expect(preview[0].totalTokens).toBeGreaterThan(4);
    expectMatchesLabels(preview, dataset);
    // The first token of an example has no prediction before it: never trained.
    for (const example of preview) expect(example.tokens[0].trained).toBe(false);
  });

  it('puts a character split by the cap on the last shown token', () => {
    const dataset = tokenized([JSON.stringify({ text: 'x—y' })]);
    const ids = Array.from(dataset.examples[0].ids);
    const dash = ids.findIndex((_, i) => tokenizer.decode(ids.slice(0, i + 1)).endsWith('—'));
    expect(dash).toBeGreaterThan(1); // "—" spans several byte tokens
    const [cut] = previewDataset(dataset, tokenizer, { tokensPerExample: dash });
    expect(cut.tokens.at(-1)!.text.endsWith('\uFFFD')).toBe(true);
    const [whole] = previewDataset(dataset, tokenizer);
    expect(whole.tokens[dash].text).toBe('—');
  });
});

describe('tokenTexts', () => {
  it('decodes in context: the pieces add up to the decoded sequence, spaces kept (SentencePiece-style decoder)', async () => {
    const llama = await loadTokenizer(localDirectory(LLAMA));
    const dataset = tokenized([JSON.stringify({ prompt: 'hello world', completion: ' the café — ok' })], 256, llama, null);
    const ids = Array.from(dataset.examples[0].ids);
    const texts = tokenTexts(ids, llama);
    expect(texts.join('')).toBe(llama.decode(ids));
    expect(texts.join('')).toBe('<s> hello world the café — ok</s>');
    // One id at a time the decoder strips each token's leading space: the words would run together.
    expect(ids.map((id) => llama.decode([id])).join('')).not.toContain(' world');
    expect(texts).toContain(' world');
    const [preview] = previewDataset(dataset, llama);
    expect(preview.tokens.filter((t) => t.special).map((t) => t.text)).toEqual(['<s>', '</s>']);
    expectMatchesLabels([preview], dataset);
  });

  it('adds up to the decoded text on long sequences (the context window slides)', () => {
    const text = 'Ünïcödé — “quotes” and emoji 🙂🙂 in a longer line of plain words, repeated: 🙂 café naïve.';
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    expect(tokenTexts(ids, tokenizer).join('')).toBe(text);
  });
});
