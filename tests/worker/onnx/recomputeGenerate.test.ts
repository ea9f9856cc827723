// Generation without a KV cache, as the playground runs an exported ONNX model: here the demo model's export runs
// in ONNX Runtime Web (wasm backend, one thread, in Node) and the loop reproduces PyTorch's greedy tokens
// (tests/fixtures/demo/golden.json) and the engine's sampled tokens for the same seed; stop tokens, the context
// limit, the vocabulary limit and a cancel end it as the engine's generate does.

import * as ort from 'onnxruntime-web';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx } from '../../../src/export/exportOnnx.ts';
import { localDirectory } from '../../../src/io/sources/localDirectory.ts';
import { loadTokenizer, type Tokenizer } from '../../../src/io/tokenizer.ts';
import { loadModel } from '../../../src/models/load.ts';
import type { CausalLM } from '../../../src/models/model.ts';
import { generate } from '../../../src/train/generate.ts';
import { generateByRecomputing, type LastLogits } from '../../../src/worker/onnx/recomputeGenerate.ts';
import { testEngine } from '../../helpers/gpu.ts';

const DEMO = fileURLToPath(new URL('../../../public/demo/', import.meta.url));
const golden = JSON.parse(readFileSync(new URL('../../fixtures/demo/golden.json', import.meta.url), 'utf8')) as {
  cases: { prompt: string; input_ids: number[]; greedy_new_tokens: number[]; greedy_top2_margins: number[] }[];
};

let model: CausalLM;
let tokenizer: Tokenizer;
let session: ort.InferenceSession;
let onnxLastLogits: LastLogits;
let runs = 0;

beforeAll(async () => {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  const engine = await testEngine();
  const files = localDirectory(DEMO);
  tokenizer = await loadTokenizer(files);
  ({ model } = await loadModel(engine, files));
  session = await ort.InferenceSession.create(await exportOnnx(model), { executionProviders: ['wasm'] });
  onnxLastLogits = async (ids) => {
    runs++;
    const out = (await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]) })).logits;
    const V = out.dims[2];
    return (out.data as Float32Array).slice((ids.length - 1) * V);
  };
});

afterAll(async () => {
  await session?.release();
  model?.dispose();
});

const contextLength = () => model.config.maxPositions;

describe('generateByRecomputing on the demo model exported to ONNX', () => {
  it.each(golden.cases.map((c) => [c.prompt, c] as const))('greedy after %j gives PyTorch\'s tokens', async (_, goldenCase) => {
    const n = 10;
    expect(Math.min(...goldenCase.greedy_top2_margins.slice(0, n))).toBeGreaterThan(1e-3); // no near-tie for float rounding to flip
    const prompt = tokenizer.encode(goldenCase.prompt);
    expect(prompt).toEqual(goldenCase.input_ids);
    const streamed: string[] = [];
    runs = 0;
    const result = await generateByRecomputing(onnxLastLogits, prompt, {
      maxNewTokens: n,
      temperature: 0,
      contextLength: contextLength(),
      decoder: tokenizer,
      skipSpecialTokens: true,
      onStep: (step) => streamed.push(step.text),
    });
    expect(result.tokens).toEqual(goldenCase.greedy_new_tokens.slice(0, n));
    expect(result.stopReason).toBe('maxNewTokens');
    expect(result.promptTokens).toBe(prompt.length);
    expect(streamed.join('') + result.finalText).toBe(tokenizer.decode(result.tokens, { skipSpecialTokens: true }));
    expect(result.text).toBe(tokenizer.decode(result.tokens, { skipSpecialTokens: true }));
    expect(runs).toBe(n); // one run of the whole sequence per token
  });

  it('samples the engine\'s tokens for the same seed and settings', async () => {
    const prompt = tokenizer.encode(golden.cases[0].prompt);
    const settings = { maxNewTokens: 8, temperature: 0.9, topK: 40, topP: 0.95, repetitionPenalty: 1.1, seed: 1234 };
    const engineRun = await generate(model, prompt, { ...settings, decoder: tokenizer, skipSpecialTokens: true });
    const onnxRun = await generateByRecomputing(onnxLastLogits, prompt, { ...settings, contextLength: contextLength(), decoder: tokenizer, skipSpecialTokens: true });
    expect(onnxRun.tokens).toEqual(engineRun.tokens);
    expect(onnxRun.text).toBe(engineRun.text);
    expect(onnxRun.seed).toBe(1234);
    // Sampling at this temperature leaves the greedy path somewhere in 8 tokens.
    expect(onnxRun.tokens).not.toEqual(golden.cases[0].greedy_new_tokens.slice(0, 8));
  });

  it('stops at a stop token (left out of the output), at the context\'s end, and when cancelled', async () => {
    const goldenCase = golden.cases[0];
    const prompt = tokenizer.encode(goldenCase.prompt);
    const greedy = { temperature: 0, decoder: tokenizer, skipSpecialTokens: true };
    const third = goldenCase.greedy_new_tokens[2];
    const eos = await generateByRecomputing(onnxLastLogits, prompt, { ...greedy, maxNewTokens: 10, stopTokens: [third], contextLength: contextLength() });
    expect(eos.tokens).toEqual(goldenCase.greedy_new_tokens.slice(0, 2));
    expect(eos.stopReason).toBe('eos');
    expect(eos.stopToken).toBe(third);

    // A context of prompt + 3 positions: 3 tokens fed back, the 4th generated last (as the engine's KV cache allows).
    const context = await generateByRecomputing(onnxLastLogits, prompt, { ...greedy, maxNewTokens: 10, contextLength: prompt.length + 3 });
    expect(context.tokens).toEqual(goldenCase.greedy_new_tokens.slice(0, 4));
    expect(context.stopReason).toBe('context');
    const engineContext = await generate(model, prompt, { ...greedy, maxNewTokens: 10, maxLength: prompt.length + 3 });
    expect(engineContext.tokens).toEqual(context.tokens);
    expect(engineContext.stopReason).toBe('context');

    const controller = new AbortController();
    const cancelled = await generateByRecomputing(onnxLastLogits, prompt, {
      ...greedy,
      maxNewTokens: 10,
      contextLength: contextLength(),
      signal: controller.signal,
      onStep: (step) => step.index === 1 && controller.abort(),
    });
    expect(cancelled.tokens).toEqual(goldenCase.greedy_new_tokens.slice(0, 2));
    expect(cancelled.stopReason).toBe('aborted');
  });

  it('never picks ids at or above the vocabulary limit', async () => {
    const goldenCase = golden.cases[0];
    const prompt = tokenizer.encode(goldenCase.prompt);
    const first = goldenCase.greedy_new_tokens[0];
    // With every id from the greedy choice up masked, the choice is the best of the rest.
    const row = await onnxLastLogits(prompt);
    let best = 0;
    for (let i = 1; i < first; i++) if (row[i] > row[best]) best = i;
    const limited = await generateByRecomputing(onnxLastLogits, prompt, { maxNewTokens: 1, temperature: 0, vocabLimit: first, contextLength: contextLength() });
    expect(limited.tokens).toEqual([best]);
    expect(best).not.toBe(first);
  });
});
