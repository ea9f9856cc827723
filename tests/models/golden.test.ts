// Every fixture architecture against golden logits from the independent PyTorch reference
// (tests/fixtures/models/make_tiny_models.py, float64): full-sequence logits and incremental decoding
// through the KV cache. Greedy generation and the module API are in model.test.ts.

import { afterAll, describe, expect, it } from 'vitest';
import { tokenTensor } from '../../src/models/model.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { MODEL_FIXTURES, readGolden, sliceTokens, withModel } from './helpers.ts';

const TOLERANCE = 1e-4;
const errors: string[] = [];

afterAll(() => {
  console.info(`max relative error vs golden:\n  ${errors.join('\n  ')}`);
});

describe.each(MODEL_FIXTURES)('%s', (fixture) => {
  it('logits of a batch of 2 match the golden values', async () => {
    const golden = await readGolden(fixture);
    await withModel(fixture, async (engine, model) => {
      const logits = model.forward(tokenTensor(engine, golden.ids, model.config.vocabSize));
      expect(logits.shape).toEqual(golden.shape);
      const actual = await logits.read();
      const error = relativeError(actual, golden.logits);
      errors.push(`${fixture} full forward: ${error.toExponential(2)}`);
      expectClose(actual, golden.logits, TOLERANCE, `${fixture} logits`);
      // Not trivially close: the logits vary across the vocabulary.
      expect(Math.max(...golden.logits) - Math.min(...golden.logits)).toBeGreaterThan(1);
    });
  });

  it('prefill then one token at a time through the KV cache matches the full sequence', async () => {
    const golden = await readGolden(fixture);
    const [B, T] = golden.shape;
    const prefill = 2;
    await withModel(fixture, async (engine, model) => {
      const cache = model.createKVCache(B, T + 1);
      try {
        let t = 0;
        let worst = 0;
        while (t < T) {
          const step = t === 0 ? prefill : 1;
          const ids = golden.ids.map((row) => row.slice(t, t + step));
          const logits = model.forward(tokenTensor(engine, ids, model.config.vocabSize), { kvCache: cache });
          expect(logits.shape).toEqual([B, step, golden.shape[2]]);
          const expected = sliceTokens(golden.logits, golden.shape, t, t + step);
          const actual = await logits.read();
          worst = Math.max(worst, relativeError(actual, expected));
          expectClose(actual, expected, TOLERANCE, `${fixture} tokens ${t}..${t + step - 1} through the cache`);
          t += step;
          expect(cache.length).toBe(t);
        }
        errors.push(`${fixture} KV-cache decode: ${worst.toExponential(2)}`);
        // The same positions without a cache, given as an offset: same logits for the last token.
        const tail = model.forward(tokenTensor(engine, golden.ids, model.config.vocabSize));
        expectClose(sliceTokens(await tail.read(), golden.shape, T - 1, T), sliceTokens(golden.logits, golden.shape, T - 1, T), TOLERANCE);
      } finally {
        cache.dispose();
      }
    });
  });
});
