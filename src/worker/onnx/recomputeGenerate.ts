// Generation from a model that has no KV cache (an exported ONNX graph: ids [1, T] → logits [1, T, V]): every
// step runs the whole growing sequence again and takes the last position's logits. Token choice, stop tokens,
// text streaming and the result match the engine's generate (src/train/generate.ts), so the same prompt, settings
// and seed give the same tokens whenever the two models' logits agree.
//
// Each step costs a forward over T positions, so the n-th new token costs O(prompt + n) instead of O(1):
// fine for the short runs of a playground, and the price of an export that stays a plain graph.

import { TextStream, type GenerationResult, type GenerationStep, type StopReason, type TokenDecoder } from '../../train/generate.ts';
import { checkSamplingOptions, createRng, randomSeed, sampleToken, type SamplingOptions } from '../../train/sampling.ts';

/** The logits row [V] of the last position of `ids` (one run of the model over the whole sequence). */
export type LastLogits = (ids: readonly number[]) => Promise<Float32Array>;

export interface RecomputeOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Default: a random seed (reported in the result). Unused when greedy. */
  seed?: number;
  stopTokens?: readonly number[];
  signal?: AbortSignal;
  decoder?: TokenDecoder;
  skipSpecialTokens?: boolean;
  /** Token ids ≥ this are never chosen (tokenizer.vocabSize when the logits are padded beyond it). */
  vocabLimit?: number;
  /** Most positions (prompt + generated) fed to the model. */
  contextLength: number;
  onStep?: (step: GenerationStep) => void;
}

export async function generateByRecomputing(lastLogits: LastLogits, prompt: readonly number[], options: RecomputeOptions): Promise<GenerationResult> {
  const sampling = checkSamplingOptions(options);
  const { maxNewTokens, contextLength } = options;
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 1) throw new RangeError(`generate: maxNewTokens must be an integer ≥ 1, got ${maxNewTokens}`);
  if (prompt.length === 0) throw new RangeError('generate: the prompt has no tokens');
  if (prompt.length > contextLength) throw new RangeError(`generate: the prompt has ${prompt.length} tokens, more than the ${contextLength} positions of the model's context`);
  const stopTokens = new Set(options.stopTokens ?? []);
  const seed = options.seed ?? randomSeed();
  const rng = createRng(seed);
  const stream = options.decoder ? new TextStream(options.decoder, { skipSpecialTokens: options.skipSpecialTokens }) : null;

  const ids = [...prompt];
  const tokens: number[] = [];
  let stopReason: StopReason = 'maxNewTokens';
  let stopToken: number | null = null;
  for (;;) {
    if (options.signal?.aborted) {
      stopReason = 'aborted';
      break;
    }
    const logits = await lastLogits(ids);
    const limit = options.vocabLimit ?? logits.length;
    const row = limit < logits.length ? maskFrom(logits, limit) : logits;
    const token = sampleToken(row, sampling, ids, rng);
    if (stopTokens.has(token)) {
      stopReason = 'eos';
      stopToken = token;
      break;
    }
    tokens.push(token);
    ids.push(token);
    const text = stream ? stream.push(token) : ''; // pushed even without onStep: the result's text needs every token
    options.onStep?.({ token, index: tokens.length - 1, text });
    if (tokens.length >= maxNewTokens) break;
    // The next step would feed every id so far: one more than the context holds is the end.
    if (ids.length > contextLength) {
      stopReason = 'context';
      break;
    }
  }
  const finalText = stream ? stream.flush() : '';
  return { tokens, text: stream ? stream.text : '', finalText, stopReason, stopToken, promptTokens: prompt.length, seed };
}

function maskFrom(logits: Float32Array, limit: number): Float32Array {
  const masked = logits.slice();
  masked.fill(-Infinity, limit);
  return masked;
}
