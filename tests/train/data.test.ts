// Dataset parsing and tokenization (src/train/data.ts) on the fixtures of tests/fixtures/datasets
// (make_datasets.py notes which lines are bad and why) and the tokenizer fixtures.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadChatTemplate, type ChatTemplate } from '../../src/io/chatTemplate.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer, type Tokenizer } from '../../src/io/tokenizer.ts';
import { DatasetError, parseDataset, prepareDataset, tokenizeDataset, type DatasetIssue } from '../../src/train/data.ts';
import { rng } from '../helpers/numeric.ts';

const DATASETS = new URL('../fixtures/datasets/', import.meta.url);
const TOKENIZERS = new URL('../fixtures/tokenizers/', import.meta.url);
const fixture = (name: string) => new Uint8Array(readFileSync(new URL(name, DATASETS)));

async function loadTokenizerFixture(name: string): Promise<{ tokenizer: Tokenizer; template: ChatTemplate }> {
  const files = localDirectory(new URL(`${name}/`, TOKENIZERS).pathname);
  const tokenizer = await loadTokenizer(files);
  const template = await loadChatTemplate(files, tokenizer);
  if (!template) throw new Error(`${name} has no chat template`);
  return { tokenizer, template };
}

const issueLines = (issues: readonly DatasetIssue[]) => issues.map((issue) => issue.line);

function caught(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('parsing', () => {
  it('prompt/completion: detects the format, keeps good lines, counts and reports bad lines by number', () => {
    const parsed = parseDataset(fixture('prompt_completion.jsonl'), { fileName: 'pc.jsonl', maxReportedIssues: 20 });
    expect(parsed.format).toBe('prompt-completion');
    expect(parsed.detected).toBe(true);
    expect(parsed.lines).toBe(13);
    expect(parsed.records.map((r) => r.line)).toEqual([1, 2, 8, 13]);
    expect(parsed.records[0]).toEqual({ kind: 'prompt-completion', line: 1, prompt: 'What is the capital of France?', completion: ' Paris.' });
    expect(parsed.issueCount).toBe(8);
    expect(parsed.issues.map((i) => [i.line, i.kind])).toEqual([
      [3, 'json'],
      [4, 'not-object'],
      [5, 'field'],
      [6, 'field'],
      [9, 'json'],
      [10, 'schema'],
      [11, 'json'],
      [12, 'field'],
    ]);
    expect(parsed.issues[2].message).toBe('line 5: completion is missing, not a string');
    expect(parsed.issues[3].message).toBe('line 6: completion is a number, not a string');
    expect(parsed.issues[4].message).toMatch(/line 9 is not valid JSON .*nest/i);
    expect(parsed.issues[5].message).toMatch(/line 10 has `text` \(jsonl-text\), but the dataset is prompt-completion/);
    expect(parsed.issues[6].message).toMatch(/line 11 has the key "prompt" twice/);
    expect(parsed.schemaCounts).toEqual({ chat: 0, 'prompt-completion': 7, 'jsonl-text': 1, unknown: 0 });
  });

  it('reports only the first few issues but counts them all', () => {
    const parsed = parseDataset(fixture('prompt_completion.jsonl'));
    expect(parsed.issueCount).toBe(8);
    expect(issueLines(parsed.issues)).toEqual([3, 4, 5, 6, 9]);
  });

  it('__proto__ keys are plain data: no prototype is changed', () => {
    const parsed = parseDataset(fixture('prompt_completion.jsonl'));
    const record = parsed.records.find((r) => r.line === 8);
    expect(record).toEqual({ kind: 'prompt-completion', line: 8, prompt: 'proto', completion: ' safe' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('drops a BOM and CRLF line ends', () => {
    const parsed = parseDataset(fixture('bom_crlf.jsonl'));
    expect(parsed.hadBom).toBe(true);
    expect(parsed.hadCrlf).toBe(true);
    expect(parsed.issueCount).toBe(0);
    expect(parsed.records).toEqual([
      { kind: 'prompt-completion', line: 1, prompt: 'Hello', completion: ' world' },
      { kind: 'prompt-completion', line: 2, prompt: 'Good', completion: ' morning' },
    ]);
    // The same from a string with a BOM character.
    const fromString = parseDataset('\ufeff{"text": "a"}\r\n{"text": "b"}');
    expect(fromString.hadBom).toBe(true);
    expect(fromString.records.map((r) => (r.kind === 'text' ? r.text : null))).toEqual(['a', 'b']);
  });

  it('refuses lines that are not UTF-8, by line number, and decodes the others strictly', () => {
    const parsed = parseDataset(fixture('invalid_utf8.jsonl'));
    expect(parsed.format).toBe('jsonl-text');
    expect(parsed.issues.map((i) => [i.line, i.kind])).toEqual([
      [2, 'encoding'],
      [4, 'encoding'],
    ]);
    expect(parsed.records.map((r) => [r.line, r.kind === 'text' && r.text])).toEqual([
      [1, 'first line'],
      [3, 'café ok'],
      [5, 'last line'],
    ]);
  });

  it('plain text: paragraphs with their first line number, HTML kept verbatim as text; line and document units', () => {
    const bytes = fixture('plain.txt');
    const parsed = parseDataset(bytes);
    expect(parsed.format).toBe('text');
    expect(parsed.hadCrlf).toBe(true);
    expect(parsed.records).toEqual([
      { kind: 'text', line: 1, text: 'The quick brown fox\njumps over the lazy dog.' },
      { kind: 'text', line: 4, text: '<script>alert("x")</script> <b>bold</b> & more' },
      { kind: 'text', line: 7, text: 'Last paragraph, line one.\nLine two.' },
    ]);
    expect(parseDataset(bytes, { textUnit: 'line' }).records.map((r) => r.line)).toEqual([1, 2, 4, 7, 8]);
    const document = parseDataset(bytes, { textUnit: 'document' }).records;
    expect(document).toHaveLength(1);
    expect(document[0].kind === 'text' && document[0].text).toBe(
      'The quick brown fox\njumps over the lazy dog.\n\n<script>alert("x")</script> <b>bold</b> & more\n\n\nLast paragraph, line one.\nLine two.',
    );
  });

  it('JSON lines with text: empty and mistyped fields are bad lines', () => {
    const parsed = parseDataset(fixture('text.jsonl'));
    expect(parsed.format).toBe('jsonl-text');
    expect(parsed.records.map((r) => r.kind === 'text' && r.text)).toEqual(['hello world', '<img src=x onerror=alert(1)>']);
    expect(parsed.issues.map((i) => [i.line, i.message])).toEqual([
      [3, 'line 3: text is empty'],
      [4, 'line 4: text is an array, not a string'],
    ]);
  });

  it('mixed schemas: the majority wins, the others are bad lines', () => {
    const text = ['{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}', '{"prompt": "p", "completion": "c"}'];
    const parsed = parseDataset([text[0], text[1], text[0], '{"other": 1}', text[0]].join('\n'));
    expect(parsed.format).toBe('chat');
    expect(parsed.records.map((r) => r.line)).toEqual([1, 3, 5]);
    expect(parsed.issues.map((i) => [i.line, i.kind])).toEqual([
      [2, 'schema'],
      [4, 'schema'],
    ]);
    expect(parsed.issues[1].message).toMatch(/line 4 has none of the fields/);
    // A forced format overrides the vote.
    expect(parseDataset(text.join('\n'), { format: 'prompt-completion' }).records.map((r) => r.line)).toEqual([2]);
  });

  it('an empty file is a DatasetError; so is an unknown format option', () => {
    for (const empty of [new Uint8Array(0), new Uint8Array([0xef, 0xbb, 0xbf]), new TextEncoder().encode('\r\n  \n\t\n')]) {
      const error = caught(() => parseDataset(empty, { fileName: 'empty.jsonl' }));
      expect(error).toBeInstanceOf(DatasetError);
      expect(error.message).toBe('"empty.jsonl": is empty: no lines with content');
    }
    expect(caught(() => parseDataset('x', { format: 'csv' as never }))).toBeInstanceOf(DatasetError);
  });

  it('a line over the size cap is a bad line; a long line under it parses', () => {
    const long = `{"text": "${'word '.repeat(400_000)}"}`; // 2 MB
    const parsed = parseDataset(`${long}\n{"text": "short"}\n${long}`, { maxLineBytes: 1_000_000 });
    expect(parsed.issues.map((i) => [i.line, i.kind])).toEqual([
      [1, 'too-long'],
      [3, 'too-long'],
    ]);
    expect(parsed.records).toHaveLength(1);
    const whole = parseDataset(long);
    expect(whole.records).toHaveLength(1);
    expect(whole.records[0].kind === 'text' && whole.records[0].text.length).toBe(2_000_000);
  });

  it('many short lines', () => {
    const lines = Array.from({ length: 200_000 }, (_, i) => `{"text": "line ${i}"}`);
    const parsed = parseDataset(lines.join('\n'));
    expect(parsed.records).toHaveLength(200_000);
    expect(parsed.records[199_999]).toEqual({ kind: 'text', line: 200_000, text: 'line 199999' });
  });

  it('byte mutations of the fixtures never throw anything but DatasetError', () => {
    const random = rng(7);
    const sources = ['prompt_completion.jsonl', 'chat.jsonl', 'plain.txt', 'bom_crlf.jsonl'].map(fixture);
    let parsedCount = 0;
    for (let trial = 0; trial < 400; trial++) {
      const bytes = sources[trial % sources.length].slice();
      const edits = 1 + Math.floor(random() * 8);
      for (let e = 0; e < edits; e++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      try {
        const parsed = parseDataset(bytes);
        parsedCount++;
        for (const issue of parsed.issues) expect(issue.line).toBeGreaterThanOrEqual(1);
      } catch (error) {
        expect(error).toBeInstanceOf(DatasetError);
      }
    }
    expect(parsedCount).toBeGreaterThan(300);
  });
});

describe('tokenization and loss masks', async () => {
  const byteBpe = await loadTokenizerFixture('byte_bpe');
  const llama = await loadTokenizerFixture('llama');
  const targetText = (tokenizer: Tokenizer, ids: Int32Array, targets: Uint8Array) => tokenizer.decode(Array.from(ids).filter((_, i) => targets[i] === 1));

  it('prompt/completion: segments encoded apart, the loss only on the completion and eos', () => {
    const { tokenizer } = byteBpe;
    const data = prepareDataset(fixture('prompt_completion.jsonl'), { tokenizer, maxTokens: 64 });
    expect(data.format).toBe('prompt-completion');
    expect(data.stats.spanMethod).toBe('segments');
    expect(data.examples.map((e) => e.line)).toEqual([1, 2, 8, 13]);
    const first = data.examples[0];
    const prompt = tokenizer.encode('What is the capital of France?', { addSpecialTokens: false });
    const completion = tokenizer.encode(' Paris.', { addSpecialTokens: false });
    const eos = tokenizer.special.eos!.id;
    expect(Array.from(first.ids)).toEqual([...prompt, ...completion, eos]);
    expect(Array.from(first.targets)).toEqual([...prompt.map(() => 0), ...completion.map(() => 1), 1]);
    expect(targetText(tokenizer, first.ids, first.targets)).toBe(' Paris.<|im_end|>');
    expect(data.stats.targetTokens).toBe(data.examples.reduce((sum, e) => sum + e.targets.reduce((a, b) => a + b, 0), 0));
    expect(data.issueCount).toBe(8);
  });

  it('text: every token after the first is a target; a tokenizer that adds bos gets it', () => {
    const data = prepareDataset('{"text": "hello world"}', { tokenizer: llama.tokenizer, maxTokens: 64 });
    const { ids, targets } = data.examples[0];
    expect(ids[0]).toBe(llama.tokenizer.special.bos!.id);
    expect(ids[ids.length - 1]).toBe(llama.tokenizer.special.eos!.id);
    expect(targets[0]).toBe(0);
    expect(Array.from(targets.subarray(1)).every((t) => t === 1)).toBe(true);
    expect(llama.tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('hello world');
  });

  it('chat (ChatML, byte-level BPE): assistant turns only, and the tokens are exactly the rendered text', () => {
    const { tokenizer, template } = byteBpe;
    const data = prepareDataset(fixture('chat.jsonl'), { tokenizer, chatTemplate: template, maxTokens: 256 });
    expect(data.format).toBe('chat');
    // Line 3 is fine for ChatML; line 4 has no assistant turn, line 5 a number as content.
    expect(data.examples.map((e) => e.line)).toEqual([1, 2, 3]);
    expect(data.issues.map((i) => [i.line, i.kind])).toEqual([
      [4, 'field'],
      [5, 'field'],
    ]);
    const lines = readFileSync(new URL('chat.jsonl', DATASETS), 'utf8').split('\n');
    const second = data.examples[1];
    const rendered = template.render(JSON.parse(lines[1]).messages);
    expect(tokenizer.decode(second.ids)).toBe(rendered);
    expect(Array.from(second.ids)).toEqual(tokenizer.encode(rendered, { addSpecialTokens: false }));
    expect(targetText(tokenizer, second.ids, second.targets)).toBe('Paris.<|im_end|>\nMadrid.<|im_end|>\n');
  });

  it('chat (Llama 2 template, SentencePiece-style tokenizer): the prefix method keeps the text; refused conversations are reported', () => {
    const { tokenizer, template } = llama;
    const data = prepareDataset(fixture('chat.jsonl'), { tokenizer, chatTemplate: template, maxTokens: 256 });
    expect(data.stats.spanMethod).toBe('prefix');
    expect(data.examples.map((e) => e.line)).toEqual([1, 2]);
    const template3 = data.issues.find((i) => i.line === 3)!;
    expect(template3.kind).toBe('template');
    expect(template3.message).toMatch(/line 3: .*Conversation roles must alternate/);
    const lines = readFileSync(new URL('chat.jsonl', DATASETS), 'utf8').split('\n');
    const second = data.examples[1];
    const rendered = template.render(JSON.parse(lines[1]).messages);
    // Encoding the segments apart would insert a "▁" at each boundary; the prefix method does not.
    expect(Array.from(second.ids)).toEqual(tokenizer.encode(rendered, { addSpecialTokens: false }));
    expect(targetText(tokenizer, second.ids, second.targets)).toBe('Paris. </s> Madrid. </s>');
    const forced = tokenizeDataset(parseDataset(fixture('chat.jsonl')), { tokenizer, chatTemplate: template, maxTokens: 256, spanMethod: 'segments' });
    expect(tokenizer.decode(forced.examples[1].ids)).not.toBe(rendered); // what the probe protects against
  });

  it('a chat dataset without a chat template is refused', () => {
    const error = caught(() => prepareDataset(fixture('chat.jsonl'), { tokenizer: byteBpe.tokenizer, maxTokens: 64 }));
    expect(error).toBeInstanceOf(DatasetError);
    expect(error.message).toMatch(/no chat template/);
  });

  it('examples longer than the context: masked ones truncated, text split into windows, both counted', () => {
    const { tokenizer } = byteBpe;
    const long = 'one two three four five six seven eight nine ten eleven twelve';
    const pc = prepareDataset(`{"prompt": "Count:", "completion": " ${long}"}\n{"prompt": "a", "completion": " b"}`, { tokenizer, maxTokens: 8 });
    expect(pc.stats.truncated).toBe(1);
    const full = tokenizer.encode(`Count: ${long}`, { addSpecialTokens: false }).length + 1; // + eos
    expect(pc.stats.truncatedTokens).toBe(full - 8);
    expect(pc.examples[0].ids.length).toBe(8);

    const text = prepareDataset(JSON.stringify({ text: long }), { tokenizer, maxTokens: 8 });
    const ids = [...tokenizer.encode(long, { addSpecialTokens: false }), tokenizer.special.eos!.id];
    expect(text.stats.split).toBe(1);
    // Windows of 8 overlapping by one: every token but the first is a target exactly once.
    expect(text.stats.targetTokens).toBe(ids.length - 1);
    const windows = text.examples.map((e) => Array.from(e.ids));
    expect(windows.every((w) => w.length <= 8)).toBe(true);
    expect([...windows[0], ...windows.slice(1).flatMap((w) => w.slice(1))]).toEqual(ids);
  });

  it('all labels masked (the completion lies past the context) refuses to start', () => {
    const prompt = 'a very long prompt that fills the whole context window before the answer';
    const input = `{"prompt": "${prompt}", "completion": " yes"}\n{"prompt": "${prompt}!", "completion": " no"}`;
    const error = caught(() => prepareDataset(input, { tokenizer: byteBpe.tokenizer, maxTokens: 6, fileName: 'masked.jsonl' }));
    expect(error).toBeInstanceOf(DatasetError);
    expect(error.message).toMatch(/^"masked.jsonl": every label is masked: 2 examples had no token to learn/);
    expect((error as DatasetError).field).toBe('labels');
  });

  it('zero examples after filtering is a DatasetError listing the first bad lines', () => {
    const input = '{"prompt": 1, "completion": " x"}\nnot json\n{"prompt": "p", "completion": ""}';
    const error = caught(() => prepareDataset(input, { tokenizer: byteBpe.tokenizer, maxTokens: 32, format: 'prompt-completion', fileName: 'bad.jsonl' })) as DatasetError;
    expect(error).toBeInstanceOf(DatasetError);
    expect(error.message).toMatch(/^"bad.jsonl": has no usable examples \(0 prompt-completion records; 3 bad lines, first: line 1: prompt is a number/);
    expect(issueLines(error.issues)).toEqual([1, 2, 3]);
  });

  it('token ids beyond the model vocabulary are refused (tokenizer of another model)', () => {
    const error = caught(() => prepareDataset('{"text": "hello"}', { tokenizer: byteBpe.tokenizer, maxTokens: 32, modelVocabSize: 100 }));
    expect(error).toBeInstanceOf(DatasetError);
    expect(error.message).toMatch(/line 1: token id \d+ is outside the model's vocabulary of 100/);
  });
});
