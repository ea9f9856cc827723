// `tabtune generate` on the llama fixture given a character tokenizer (one character per id, so the golden
// prompt and continuation are texts): greedy output is the PyTorch reference's continuation, streamed without
// --json; with a seed, sampling draws what the CPU sampler draws from the reference logits; mistakes are one
// line. With the demo model present, its greedy generation is deterministic text.

import { copyFileSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRng, sampleToken } from '../../src/train/sampling.ts';
import { readGolden, sliceTokens } from '../models/helpers.ts';
import { runCli, runCliAsync, type CliResult } from './run.ts';

const MODELS = 'tests/fixtures/models';
const DEMO = 'public/demo';

/** One character per token id 0..V−1: ASCII from the space, then Greek letters; a Fuse decoder joins them. */
const charOf = (id: number) => String.fromCodePoint(id < 95 ? 32 + id : 0x3b1 + id - 95);
const textOf = (ids: readonly number[]) => ids.map(charOf).join('');

/** The llama fixture in a temporary folder with a character tokenizer beside it. */
function llamaWithTokenizer(vocabSize = 101): string {
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-gen-'));
  for (const file of ['config.json', 'model.safetensors']) copyFileSync(join(MODELS, 'llama', file), join(dir, file));
  const vocab = Object.fromEntries(Array.from({ length: vocabSize }, (_, id) => [charOf(id), id]));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE', vocab, merges: [] }, decoder: { type: 'Fuse' } }));
  return dir;
}

type Result = CliResult;

function expectOneLineError(result: { status: number; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(result.status, result.stderr).toBe(1);
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('tabtune '));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toContain('    at ');
}

describe('tabtune generate', () => {
  let model: string;
  let prompt: string;
  let greedy: number[];
  let referenceLast: Float32Array; // the reference's logits after the prompt
  const sampling = { temperature: 1.5, topK: 50, topP: 0.95, repetitionPenalty: 1.2 };
  let runs: { json: Promise<Result>; streamed: Promise<Result>; sampled: Promise<Result> };

  beforeAll(async () => {
    model = llamaWithTokenizer();
    const golden = await readGolden('llama');
    prompt = textOf(golden.ids[0]);
    greedy = golden.greedy;
    const [, T, V] = golden.shape;
    referenceLast = sliceTokens(golden.logits, golden.shape, T - 1, T).subarray(0, V);
    const base = ['generate', '--model', model, '--prompt', prompt];
    runs = {
      json: runCliAsync([...base, '--max-new-tokens', String(greedy.length), '--json']),
      streamed: runCliAsync([...base, '--max-new-tokens', String(greedy.length), '--temperature', '0']),
      sampled: runCliAsync([
        ...base,
        ...['--max-new-tokens', '2', '--seed', '7', '--temperature', '1.5', '--top-k', '50', '--top-p', '0.95', '--repetition-penalty', '1.2', '--json'],
      ]),
    };
  });

  it('greedy: the reference continuation as one JSON object {text, tokens}', async () => {
    const { status, stdout, stderr } = await runs.json;
    expect(status, stderr).toBe(0);
    expect(stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(stdout)).toEqual({ text: textOf(greedy), tokens: greedy });
    expect(stderr).toMatch(/generated 6 tokens after a prompt of 6 \(stopped: max new tokens\)/);
  });

  it('streams the same text to stdout without --json', async () => {
    const { status, stdout, stderr } = await runs.streamed;
    expect(status, stderr).toBe(0);
    expect(stdout).toBe(`${textOf(greedy)}\n`);
  });

  it('samples with the seed: the first token is what the CPU sampler draws from the reference logits', async () => {
    const { status, stdout, stderr } = await runs.sampled;
    expect(status, stderr).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.tokens).toHaveLength(2);
    expect(result.text).toBe(textOf(result.tokens));
    const expected = sampleToken(referenceLast, sampling, (await readGolden('llama')).ids[0], createRng(7));
    expect(result.tokens[0]).toBe(expected);
    expect(stderr).toMatch(/seed 7/);
  });

  it('refuses mistakes in one line', () => {
    const base = ['generate', '--model', model, '--prompt', prompt];
    expectOneLineError(runCli([...base, '--temperature=-1']), /--temperature must be a number ≥ 0/);
    expectOneLineError(runCli([...base, '--top-p', '1.5']), /--top-p must be a number in \(0, 1\]/);
    expectOneLineError(runCli([...base, '--top-k', '2.5']), /--top-k must be an integer ≥ 0/);
    expectOneLineError(runCli([...base, '--max-new-tokens', '0']), /--max-new-tokens must be a positive integer/);
    expectOneLineError(runCli([...base, '--seed', 'abc']), /--seed must be an integer ≥ 0/);
    expectOneLineError(runCli(['generate', '--model', model]), /--prompt is required/);
    // A folder with the weights but no tokenizer.
    const noTokenizer = mkdtempSync(join(tmpdir(), 'tabtune-gen-'));
    for (const file of ['config.json', 'model.safetensors']) copyFileSync(join(MODELS, 'llama', file), join(noTokenizer, file));
    expectOneLineError(runCli(['generate', '--model', noTokenizer, '--prompt', 'hi']), /tokenizer\.json.*no such file/);
    // A tokenizer with more tokens than the embedding has rows does not belong to the model.
    expectOneLineError(runCli(['generate', '--model', llamaWithTokenizer(120), '--prompt', 'hi']), /tokenizer\.json.*only 101 rows/);
  });

  // The demo model's 4096-token head makes each step take seconds on SwiftShader: few tokens, both runs at once.
  const demoPresent = ['config.json', 'model.safetensors', 'tokenizer.json'].every((file) => existsSync(join(DEMO, file)));
  it.skipIf(!demoPresent)(
    'the demo model generates the same text on every greedy run',
    async () => {
      const args = ['generate', '--model', DEMO, '--prompt', 'And God said', '--max-new-tokens', '2', '--json'];
      const [a, b] = await Promise.all([runCliAsync(args), runCliAsync(args)]);
      expect(a.status, a.stderr).toBe(0);
      expect(b.status, b.stderr).toBe(0);
      const first = JSON.parse(a.stdout);
      expect(JSON.parse(b.stdout)).toEqual(first);
      expect(first.tokens.length).toBeGreaterThan(0);
      expect(first.text).toMatch(/[a-z]{2,}/i); // words, not noise
    },
    300_000,
  );
});
