// `tabtune eval` on the llama fixture with a character tokenizer, so a text file can hold exactly the golden
// token ids: its loss must be the cross entropy computed here, in float64, from the PyTorch reference's
// logits. Also JSONL documents, the windowing and document helpers on the CPU, and one-line errors.

import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate } from '../../src/io/chatTemplate.ts';
import { parseTokenizer } from '../../src/io/tokenizer.ts';
import { EvalDataError, evalWindows, readEvalDocuments, tokenizeDocuments } from '../../src/train/evaluate.ts';
import { expectClose } from '../helpers/numeric.ts';
import { readGolden } from '../models/helpers.ts';
import { runCli, runCliAsync, type CliResult } from './run.ts';

const MODELS = 'tests/fixtures/models';

/** One character per token id 0..V−1: ASCII from the space, then Greek letters; a Fuse decoder joins them. */
const charOf = (id: number) => String.fromCodePoint(id < 95 ? 32 + id : 0x3b1 + id - 95);
const textOf = (ids: readonly number[]) => ids.map(charOf).join('');
const tokenizerJson = (vocabSize: number) =>
  JSON.stringify({ model: { type: 'BPE', vocab: Object.fromEntries(Array.from({ length: vocabSize }, (_, id) => [charOf(id), id])), merges: [] }, decoder: { type: 'Fuse' } });

type Result = CliResult;

function expectOneLineError(result: Result, pattern: RegExp): void {
  expect(result.status, result.stderr).toBe(1);
  expect(result.stdout).toBe('');
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('tabtune '));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toContain('    at ');
}

/** Mean cross entropy (nats) of next-token prediction along row 0 of the golden logits, in float64. */
function referenceLoss(ids: readonly number[], logits: Float32Array, V: number): number {
  let total = 0;
  for (let t = 0; t + 1 < ids.length; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    const max = Math.max(...row);
    const logSum = Math.log(row.reduce((sum, x) => sum + Math.exp(x - max), 0)) + max;
    total += logSum - row[ids[t + 1]];
  }
  return total / (ids.length - 1);
}

describe('tabtune eval', () => {
  let dir: string;
  let ids: number[];
  let expectedLoss: number;
  let runs: { text: Promise<Result>; jsonl: Promise<Result> };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tabtune-eval-'));
    for (const file of ['config.json', 'model.safetensors']) copyFileSync(join(MODELS, 'llama', file), join(dir, file));
    writeFileSync(join(dir, 'tokenizer.json'), tokenizerJson(101));
    const golden = await readGolden('llama');
    ids = golden.ids[0];
    expectedLoss = referenceLoss(ids, golden.logits, golden.shape[2]);
    writeFileSync(join(dir, 'data.txt'), textOf(ids));
    // Two documents: joined with the EOS token (config.json's eos_token_id 2) between them.
    const lines = [JSON.stringify({ text: textOf(ids) }), '', JSON.stringify({ prompt: textOf(golden.ids[1].slice(0, 2)), completion: textOf(golden.ids[1].slice(2)) })];
    writeFileSync(join(dir, 'data.jsonl'), `${lines.join('\n')}\n`);
    runs = {
      text: runCliAsync(['eval', '--model', dir, '--data', join(dir, 'data.txt'), '--json']),
      jsonl: runCliAsync(['eval', '--model', dir, '--data', join(dir, 'data.jsonl'), '--max-length', '5', '--json']),
    };
  });

  it('gives the loss of the reference logits on a text file, and perplexity = exp(loss)', async () => {
    const { status, stdout, stderr } = await runs.text;
    expect(status, stderr).toBe(0);
    expect(stdout.trim().split('\n')).toHaveLength(1);
    const result = JSON.parse(stdout);
    expect(Object.keys(result).sort()).toEqual(['loss', 'perplexity', 'tokens']);
    expect(result.tokens).toBe(ids.length - 1);
    expect(Number.isFinite(result.loss)).toBe(true);
    expectClose([result.loss], [expectedLoss], 1e-4, 'loss');
    expect(result.perplexity).toBeCloseTo(Math.exp(result.loss), 10);
    expect(expectedLoss).toBeGreaterThan(1); // a random tiny model is far from certain
  });

  it('reads JSONL documents and evaluates in windows of --max-length', async () => {
    const { status, stdout, stderr } = await runs.jsonl;
    expect(status, stderr).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.tokens).toBe(6 + 1 + 6 - 1); // two documents of 6 tokens and an EOS between them
    expect(Number.isFinite(result.loss) && result.loss > 0).toBe(true);
    expect(result.perplexity).toBeCloseTo(Math.exp(result.loss), 10);
    expect(stderr).toMatch(/window 3\/3/);
  });

  it('refuses a missing file, a bad JSONL line, a bad --max-length and a missing --data in one line', () => {
    expectOneLineError(runCli(['eval', '--model', dir, '--data', join(dir, 'nope.txt')]), /--data .*nope\.txt": no such file/);
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"text": "ab"}\n{"title": 1}\n');
    expectOneLineError(runCli(['eval', '--model', dir, '--data', bad]), /bad\.jsonl": line 2 has no "text" string/);
    writeFileSync(bad, '{"text": "ab"}\n{oops\n');
    expectOneLineError(runCli(['eval', '--model', dir, '--data', bad]), /line 2 is not JSON/);
    expectOneLineError(runCli(['eval', '--model', dir, '--data', join(dir, 'data.txt'), '--max-length', '500']), /--max-length 500 .*context of 128/);
    expectOneLineError(runCli(['eval', '--model', dir]), /--data is required/);
  });
});

describe('evaluation data (CPU)', () => {
  const tokenizer = parseTokenizer({ tokenizerJson: tokenizerJson(101), config: '{"eos_token_id": 2}' });

  it('cuts N tokens into windows that predict every token after the first once', () => {
    expect(evalWindows(6, 128)).toEqual([{ start: 0, length: 5 }]);
    expect(evalWindows(13, 5)).toEqual([
      { start: 0, length: 5 },
      { start: 5, length: 5 },
      { start: 10, length: 2 },
    ]);
    expect(evalWindows(11, 5)).toEqual([
      { start: 0, length: 5 },
      { start: 5, length: 5 },
    ]);
    expect(evalWindows(1, 5)).toEqual([]);
  });

  it('reads text, prompt/completion and chat lines, and joins documents with EOS', () => {
    const template = new ChatTemplate("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}");
    const documents = readEvalDocuments(
      ['{"text": "ab"}', '', '{"prompt": "c", "completion": "d"}', '{"messages": [{"role": "user", "content": "hi"}]}'].join('\r\n'),
      'x.jsonl',
      template,
    );
    expect(documents).toEqual([
      { text: 'ab', addSpecialTokens: true },
      { text: 'cd', addSpecialTokens: true },
      { text: 'user: hi\n', addSpecialTokens: false },
    ]);
    const eos = tokenizer.special.eos!.id;
    expect(eos).toBe(2);
    expect(tokenizeDocuments(tokenizer, documents.slice(0, 2))).toEqual([...tokenizer.encode('ab'), eos, ...tokenizer.encode('cd')]);
    // A plain text file is one document, whatever it holds.
    expect(readEvalDocuments('{"text": "ab"}\n', 'notes.txt')).toEqual([{ text: '{"text": "ab"}\n', addSpecialTokens: true }]);
  });

  it('names the file and line of a bad document', () => {
    expect(() => readEvalDocuments('{"messages": []}', 'chat.jsonl')).toThrow(/line 1 holds chat "messages", but the model has no chat template/);
    expect(() => readEvalDocuments('[1]', 'a.jsonl')).toThrow(EvalDataError);
    expect(() => readEvalDocuments('\n\n', 'a.jsonl')).toThrow(/holds no JSON lines/);
    expect(() => readEvalDocuments('', 'a.txt')).toThrow(/is empty/);
  });
});
