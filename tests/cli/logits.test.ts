// `tabtune logits` against the golden logits of every fixture (the PyTorch reference), and the one-line
// errors for a user's mistakes, which are found before the GPU is touched.

import { beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from '../helpers/numeric.ts';
import { MODEL_FIXTURES, readGolden, sliceTokens, type ModelFixture } from '../models/helpers.ts';
import { runCli, runCliAsync } from './run.ts';

const MODELS = 'tests/fixtures/models';

/** The one line a user's mistake prints: no stack trace. */
function expectOneLineError(result: { status: number; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(result.status, result.stderr).toBe(1);
  expect(result.stdout).toBe('');
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('tabtune '));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toContain('    at ');
}

describe('tabtune logits', () => {
  const runs = new Map<ModelFixture, Promise<{ status: number; stdout: string; stderr: string }>>();
  beforeAll(async () => {
    for (const fixture of MODEL_FIXTURES) {
      const golden = await readGolden(fixture);
      runs.set(fixture, runCliAsync(['logits', '--model', `${MODELS}/${fixture}`, '--tokens', golden.ids[0].join(','), '--json']));
    }
  });

  it.each(MODEL_FIXTURES)('%s: one row of logits per position, equal to the golden logits', async (fixture) => {
    const golden = await readGolden(fixture);
    const { status, stdout, stderr } = await runs.get(fixture)!;
    expect(status, stderr).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1); // exactly one JSON object
    const { logits } = JSON.parse(lines[0]) as { logits: number[][] };
    const [, T, V] = golden.shape;
    expect(logits).toHaveLength(T);
    for (const row of logits) expect(row).toHaveLength(V);
    const expected = sliceTokens(golden.logits, golden.shape, 0, T).subarray(0, T * V); // row 0 of the batch
    expectClose(logits.flat(), expected, 1e-4, `${fixture} logits`);
  });

  it('refuses bad --tokens, ids outside the vocabulary, too many tokens and a missing folder, each in one line', () => {
    expectOneLineError(runCli(['logits', '--model', `${MODELS}/llama`, '--tokens', '1,x,3']), /--tokens .*item 2 is 'x'/);
    expectOneLineError(runCli(['logits', '--model', `${MODELS}/llama`, '--tokens', '1,-2']), /--tokens .*item 2 is '-2'/);
    expectOneLineError(runCli(['logits', '--model', `${MODELS}/llama`, '--tokens', '']), /--tokens is required/);
    expectOneLineError(runCli(['logits', '--model', `${MODELS}/llama`, '--tokens', '5,101']), /token id 101 .*vocabulary of 101/);
    const long = Array.from({ length: 129 }, () => '1').join(',');
    expectOneLineError(runCli(['logits', '--model', `${MODELS}/llama`, '--tokens', long]), /129 tokens .*context of 128/);
    expectOneLineError(runCli(['logits', '--model', 'no/such/folder', '--tokens', '1']), /no such folder/);
    expectOneLineError(runCli(['logits', '--model', './missing', '--tokens', '1']), /no such folder/);
    expectOneLineError(runCli(['logits', '--model', `${MODELS}/llama/config.json`, '--tokens', '1']), /is a file/);
    expectOneLineError(runCli(['logits', '--model', `${MODELS}/llama`, '--tokens', '1', '--bogus']), /Unknown option '--bogus'/);
  });
});
