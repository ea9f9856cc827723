// Generation through the KV cache on the tiny fixtures: greedy decoding reproduces the PyTorch reference's
// continuation token for token, one [V] row is read back per step, sampling follows the CPU sampler on the
// reference logits, and every way to stop (stop token, length, full context, abort, breaking the loop) frees
// the cache. Text streaming is checked on the CPU with a byte-level tokenizer whose tokens split characters.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseTokenizer, type Tokenizer } from '../../src/io/tokenizer.ts';
import { checkTokenizerFitsModel, generate, generateTokens, TextStream, type GenerationStep } from '../../src/train/generate.ts';
import { createRng, sampleToken } from '../../src/train/sampling.ts';
import { MODEL_FIXTURES, readGolden, sliceTokens, withModel } from '../models/helpers.ts';

/** A tokenizer with one character per id 0..V−1 (no merges, no special tokens), so any id sequence is a text. */
function charTokenizer(vocabSize: number): { tokenizer: Tokenizer; text: (ids: readonly number[]) => string } {
  const charOf = (id: number) => String.fromCodePoint(id < 95 ? 32 + id : 0x3b1 + id - 95); // ASCII, then Greek
  const vocab = Object.fromEntries(Array.from({ length: vocabSize }, (_, id) => [charOf(id), id]));
  const tokenizer = parseTokenizer({ tokenizerJson: JSON.stringify({ model: { type: 'BPE', vocab, merges: [] }, decoder: { type: 'Fuse' } }) });
  return { tokenizer, text: (ids) => ids.map(charOf).join('') };
}

describe.each(MODEL_FIXTURES)('%s', (fixture) => {
  it('greedy generation reproduces the reference continuation, reading back one row of logits per step', async () => {
    const golden = await readGolden(fixture);
    await withModel(fixture, async (engine, model) => {
      const V = model.config.vocabSize;
      const reads: number[] = [];
      const gpu = engine.gpu;
      const read = gpu.read.bind(gpu);
      gpu.read = (buffer, bytes, offset) => (reads.push(bytes), read(buffer, bytes, offset));
      try {
        const result = await generate(model, golden.ids[0], { temperature: 0, maxNewTokens: golden.greedy.length });
        expect(result.tokens).toEqual(golden.greedy);
        expect(result.stopReason).toBe('maxNewTokens');
        expect(result.promptTokens).toBe(golden.ids[0].length);
      } finally {
        gpu.read = read;
      }
      expect(reads).toEqual(golden.greedy.map(() => V * 4));
    });
  });
});

describe('generation on the llama fixture', () => {
  it('samples the first token as the CPU sampler does on the reference logits, reproducibly per seed', async () => {
    const golden = await readGolden('llama');
    const [, T, V] = golden.shape;
    const referenceLast = sliceTokens(golden.logits, golden.shape, T - 1, T).subarray(0, V); // row 0, last position
    const sampling = { temperature: 1.5, topK: 40, topP: 0.9, repetitionPenalty: 1.3 };
    await withModel('llama', async (_engine, model) => {
      const runs = [];
      for (const seed of [11, 11, 12]) runs.push(await generate(model, golden.ids[0], { ...sampling, seed, maxNewTokens: 3 }));
      expect(runs[0].tokens).toEqual(runs[1].tokens);
      expect(runs[0].tokens).not.toEqual(runs[2].tokens);
      expect(runs[0].seed).toBe(11);
      for (const [i, seed] of [11, 12].entries()) {
        const run = runs[i === 0 ? 0 : 2];
        expect(run.tokens[0]).toBe(sampleToken(referenceLast, sampling, golden.ids[0], createRng(seed)));
      }
    });
  });

  it('stops at a stop token without emitting it', async () => {
    const golden = await readGolden('llama');
    await withModel('llama', async (_engine, model) => {
      const result = await generate(model, golden.ids[0], { temperature: 0, maxNewTokens: 10, stopTokens: [golden.greedy[2], 0] });
      expect(result.tokens).toEqual(golden.greedy.slice(0, 2));
      expect(result.stopReason).toBe('eos');
      expect(result.stopToken).toBe(golden.greedy[2]);
    });
  });

  it('stops when the context is full', async () => {
    const golden = await readGolden('llama');
    const prompt = golden.ids[0];
    await withModel('llama', async (_engine, model) => {
      // 8 positions: the prompt's 6, then 2 fed-back tokens; the third new token needs no position.
      const result = await generate(model, prompt, { temperature: 0, maxNewTokens: 10, maxLength: prompt.length + 2 });
      expect(result.tokens).toEqual(golden.greedy.slice(0, 3));
      expect(result.stopReason).toBe('context');
      await expect(generate(model, prompt, { temperature: 0, maxNewTokens: 1, maxLength: prompt.length - 1 })).rejects.toThrow(/more than the 5 positions/);
    });
  });

  // (llama keeps no index tensors between forwards, so any growth of live memory would be a leak.)
  it('stops on abort and when the consumer leaves the loop, freeing the cache', async () => {
    const golden = await readGolden('llama');
    await withModel('llama', async (engine, model) => {
      const before = engine.memory().total;
      const controller = new AbortController();
      const result = await generate(model, golden.ids[0], {
        temperature: 0,
        maxNewTokens: 10,
        signal: controller.signal,
        onStep: (step) => step.index === 1 && controller.abort(),
      });
      expect(result.tokens).toEqual(golden.greedy.slice(0, 2));
      expect(result.stopReason).toBe('aborted');
      expect(engine.memory().total).toBe(before);

      const seen: number[] = [];
      for await (const step of generateTokens(model, golden.ids[0], { temperature: 0, maxNewTokens: 10 })) {
        seen.push(step.token);
        if (seen.length === 3) break;
      }
      expect(seen).toEqual(golden.greedy.slice(0, 3));
      expect(engine.memory().total).toBe(before);
    });
  });

  it('streams text deltas that add up to the decoding of the tokens', async () => {
    const golden = await readGolden('llama');
    const { tokenizer, text } = charTokenizer(101);
    expect(tokenizer.encode(text(golden.ids[0]))).toEqual(golden.ids[0]);
    await withModel('llama', async (_engine, model) => {
      const steps: GenerationStep[] = [];
      const result = await generate(model, golden.ids[0], { temperature: 0, maxNewTokens: 6, decoder: tokenizer, onStep: (s) => steps.push(s) });
      expect(steps.map((s) => s.token)).toEqual(golden.greedy);
      expect(steps.map((s) => s.index)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(steps.map((s) => s.text)).toEqual(golden.greedy.map((id) => text([id])));
      expect(result.text).toBe(text(golden.greedy));
      expect(result.finalText).toBe('');
    });
  });

  it('never picks ids beyond vocabLimit and applies the repetition penalty', async () => {
    const golden = await readGolden('gpt2');
    await withModel('gpt2', async (_engine, model) => {
      // gpt2's greedy continuation repeats token 66 six times.
      expect(golden.greedy.every((id) => id === golden.greedy[0])).toBe(true);
      const limited = await generate(model, golden.ids[0], { temperature: 0, maxNewTokens: 4, vocabLimit: golden.greedy[0] });
      expect(limited.tokens.every((id) => id < golden.greedy[0])).toBe(true);
      const penalized = await generate(model, golden.ids[0], { temperature: 0, maxNewTokens: 4, repetitionPenalty: 1e6 });
      expect(penalized.tokens[0]).toBe(golden.greedy[0]);
      expect(new Set([...golden.ids[0], ...penalized.tokens]).size).toBe(new Set(golden.ids[0]).size + 4); // nothing repeats
    });
  });

  it('refuses bad options', async () => {
    await withModel('llama', async (_engine, model) => {
      await expect(generate(model, [1, 2], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens/);
      await expect(generate(model, [], { maxNewTokens: 1 })).rejects.toThrow(/no tokens/);
      await expect(generate(model, [1, 2], { maxNewTokens: 1, temperature: -1 })).rejects.toThrow(/temperature/);
      await expect(generate(model, [1, 500], { maxNewTokens: 1 })).rejects.toThrow(/outside the vocabulary/);
    });
  });
});

describe('text streaming (CPU)', () => {
  const folder = new URL('../fixtures/tokenizers/byte_bpe/', import.meta.url);
  const tokenizer = parseTokenizer({
    tokenizerJson: readFileSync(new URL('tokenizer.json', folder), 'utf8'),
    tokenizerConfig: readFileSync(new URL('tokenizer_config.json', folder), 'utf8'),
  });

  it('never emits part of a multi-byte character', () => {
    const text = 'héllo 日本 ok ✓ 🙂!';
    const ids = tokenizer.encode(text);
    // The byte-level tokens split characters: some prefixes decode to U+FFFD.
    expect(ids.some((_, i) => tokenizer.decode(ids.slice(0, i + 1)).endsWith('\ufffd'))).toBe(true);
    const stream = new TextStream(tokenizer);
    const deltas = ids.map((id) => stream.push(id));
    for (const delta of deltas) expect(delta).not.toContain('\ufffd');
    expect(deltas.join('') + stream.flush()).toBe(text);
    expect(stream.text).toBe(text);
    expect(deltas.filter((d) => d === '').length).toBeGreaterThan(0); // held back while a character was incomplete
  });

  it('gives up holding back at flush when a character never completes', () => {
    const ids = tokenizer.encode('a日');
    const stream = new TextStream(tokenizer);
    const deltas = ids.slice(0, -1).map((id) => stream.push(id));
    expect(deltas.join('')).toBe('a');
    expect(stream.flush()).toMatch(/^\ufffd+$/);
    expect(stream.flush()).toBe('');
  });

  it('checks that a tokenizer fits the embedding (a larger embedding is fine)', () => {
    expect(() => checkTokenizerFitsModel(tokenizer, tokenizer.vocabSize)).not.toThrow();
    expect(() => checkTokenizerFitsModel(tokenizer, tokenizer.vocabSize + 100)).not.toThrow();
    expect(() => checkTokenizerFitsModel(tokenizer, 101)).toThrow(/only 101 rows/);
  });
});
