// Text generation with a KV cache: one forward over the prompt (prefill) fills the cache, then one forward per
// new token (decode) attends over it. Per step only the last position's logits ([V] f32) are read back: the
// prefill's final hidden state of the last prompt position is copied out before the LM head, so a long prompt
// never materializes [T, V] logits. The token is chosen on the CPU by sampling.ts.
//
// Generation stops at the first stop token (the tokenizer's eos ids; the stop token is not part of the output),
// after maxNewTokens, when the cache reaches the model's context length, or when the AbortSignal fires; the
// result says which. Text is streamed UTF-8-safely: after each token the whole generated sequence is decoded
// and the new suffix is emitted, holding back trailing U+FFFD (a multi-byte character whose remaining bytes
// are in tokens still to come), so no delta ever holds half a character.

import { tokenTensor, type CausalLM } from '../models/model.ts';
import { TokenizerError, TOKENIZER_FILE, type Tokenizer } from '../io/tokenizer.ts';
import type { Tensor } from '../engine/tensor.ts';
import { checkSamplingOptions, createRng, randomSeed, sampleToken, type SamplingOptions } from './sampling.ts';

/** What text streaming needs from a tokenizer. */
export interface TokenDecoder {
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
}

export type StopReason = 'eos' | 'maxNewTokens' | 'context' | 'aborted';

export interface GenerateOptions extends SamplingOptions {
  /** The most tokens to generate (≥ 1). */
  maxNewTokens: number;
  /** Token ids that end generation (e.g. tokenizer.special.eosIds); not included in the output. */
  stopTokens?: readonly number[];
  /** Seed of the sampling RNG; default a random one (reported in the result). Unused when greedy. */
  seed?: number;
  /** Stops generation between steps; the result then has stopReason 'aborted'. */
  signal?: AbortSignal;
  /** Decodes text deltas when given. */
  decoder?: TokenDecoder;
  /** Passed to the decoder (default false: text is the exact decoding of the tokens). */
  skipSpecialTokens?: boolean;
  /**
   * Token ids ≥ this are never chosen (default V). Checkpoints often pad the embedding beyond the tokenizer's
   * vocabulary: pass tokenizer.vocabSize so that padding rows, which name no token, cannot be sampled.
   */
  vocabLimit?: number;
  /** Most positions (prompt + generated) the cache holds; default and maximum: the model's context length. */
  maxLength?: number;
}

export interface GenerationStep {
  /** The new token. */
  token: number;
  /** 0-based index of the token among the generated ones. */
  index: number;
  /** New text since the previous step (empty while a character is incomplete, or without a decoder). */
  text: string;
}

export interface GenerationResult {
  /** The generated tokens (prompt and stop token excluded). */
  tokens: number[];
  /** The decoding of `tokens` (empty without a decoder); equals the concatenation of every step's text and `finalText`. */
  text: string;
  /** Text held back at the end (an incomplete character that stayed incomplete), emitted after the last step. */
  finalText: string;
  stopReason: StopReason;
  /** The stop token that ended generation, when stopReason is 'eos'. */
  stopToken: number | null;
  promptTokens: number;
  seed: number;
}

/**
 * Incremental, UTF-8-safe decoding: push tokens, get the text they add. The whole sequence is decoded each
 * time (decoders that strip a leading space or join byte tokens then behave exactly as on the full sequence)
 * and trailing U+FFFD are held back until a later token completes the character or flush() gives up.
 * If a later decoding rewrites text already emitted (a decoder cleanup rule), emitted text is not retracted:
 * deltas continue from the emitted length.
 */
export class TextStream {
  private readonly ids: number[] = [];
  private emitted = 0;
  private full = '';

  constructor(
    private readonly decoder: TokenDecoder,
    private readonly options: { skipSpecialTokens?: boolean } = {},
  ) {}

  push(token: number): string {
    this.ids.push(token);
    this.full = this.decoder.decode(this.ids, { skipSpecialTokens: this.options.skipSpecialTokens ?? false });
    let end = this.full.length;
    while (end > this.emitted && this.full.charCodeAt(end - 1) === 0xfffd) end--;
    if (end <= this.emitted) return '';
    const delta = this.full.slice(this.emitted, end);
    this.emitted = end;
    return delta;
  }

  /** Whatever is still held back (a character that never completed). */
  flush(): string {
    if (this.full.length <= this.emitted) return '';
    const rest = this.full.slice(this.emitted);
    this.emitted = this.full.length;
    return rest;
  }

  /** The decoding of every token pushed. */
  get text(): string {
    return this.full;
  }
}

/** Throws a TokenizerError when the tokenizer has ids the model's embedding lacks (a larger embedding is fine). */
export function checkTokenizerFitsModel(tokenizer: Pick<Tokenizer, 'vocabSize'>, vocabSize: number): void {
  if (tokenizer.vocabSize > vocabSize) {
    throw new TokenizerError(
      TOKENIZER_FILE,
      `has token ids up to ${tokenizer.vocabSize - 1}, but the model's embedding has only ${vocabSize} rows (vocab_size in config.json); the tokenizer does not belong to this model`,
      { field: 'model.vocab' },
    );
  }
}

/**
 * Generate after `prompt` (token ids), yielding each new token with its text delta; the generator's return
 * value is the GenerationResult. Breaking out of the loop ends generation and frees the cache.
 */
export async function* generateTokens(model: CausalLM, prompt: readonly number[], options: GenerateOptions): AsyncGenerator<GenerationStep, GenerationResult, void> {
  const sampling = checkSamplingOptions(options);
  const { engine, config } = model;
  const V = config.vocabSize;
  const maxNewTokens = options.maxNewTokens;
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 1) throw new RangeError(`generate: maxNewTokens must be an integer ≥ 1, got ${maxNewTokens}`);
  if (prompt.length === 0) throw new RangeError('generate: the prompt has no tokens');
  const contextLength = Math.min(options.maxLength ?? config.maxPositions, config.maxPositions);
  if (!Number.isSafeInteger(contextLength) || contextLength < 1) throw new RangeError(`generate: maxLength must be a positive integer, got ${options.maxLength}`);
  if (prompt.length > contextLength) {
    throw new RangeError(`generate: the prompt has ${prompt.length} tokens, more than the ${contextLength} positions of the model's context`);
  }
  const vocabLimit = Math.min(options.vocabLimit ?? V, V);
  if (!Number.isSafeInteger(vocabLimit) || vocabLimit < 1) throw new RangeError(`generate: vocabLimit must be a positive integer, got ${options.vocabLimit}`);
  const stopTokens = new Set(options.stopTokens ?? []);
  const seed = options.seed ?? randomSeed();
  const rng = createRng(seed);
  const stream = options.decoder ? new TextStream(options.decoder, { skipSpecialTokens: options.skipSpecialTokens }) : null;
  const C = config.hiddenSize;

  // The last generated token is never fed back, so prompt + maxNewTokens − 1 positions suffice.
  const cache = model.createKVCache(1, Math.min(prompt.length + maxNewTokens - 1, contextLength));
  const history = [...prompt];
  const tokens: number[] = [];
  let stopReason: StopReason = 'maxNewTokens';
  let stopToken: number | null = null;
  try {
    let input: readonly number[] = prompt;
    for (;;) {
      if (options.signal?.aborted) {
        stopReason = 'aborted';
        break;
      }
      const logits = await engine.scope(() => {
        const out = engine.noGrad(() => {
          const hidden = model.hidden(tokenTensor(engine, [input], V), { kvCache: cache }); // [1, T, C]
          return model.head(lastPosition(hidden, C)); // [1, 1, V]
        });
        return out.read() as Promise<Float32Array>;
      });
      const row = vocabLimit < V ? maskFrom(logits, vocabLimit) : logits;
      const token = sampleToken(row, sampling, history, rng);
      if (stopTokens.has(token)) {
        stopReason = 'eos';
        stopToken = token;
        break;
      }
      tokens.push(token);
      history.push(token);
      yield { token, index: tokens.length - 1, text: stream ? stream.push(token) : '' };
      if (tokens.length >= maxNewTokens) break;
      if (cache.length + 1 > cache.maxLength) {
        stopReason = 'context';
        break;
      }
      input = [token];
    }
  } finally {
    cache.dispose();
  }
  const finalText = stream ? stream.flush() : '';
  return { tokens, text: stream ? stream.text : '', finalText, stopReason, stopToken, promptTokens: prompt.length, seed };
}

/** generateTokens to completion, calling `onStep` for each token. */
export async function generate(
  model: CausalLM,
  prompt: readonly number[],
  options: GenerateOptions & { onStep?: (step: GenerationStep) => void },
): Promise<GenerationResult> {
  const steps = generateTokens(model, prompt, options);
  for (;;) {
    const next = await steps.next();
    if (next.done) return next.value;
    options.onStep?.(next.value);
  }
}

/** [1, T, C] → [1, 1, C] holding position T − 1 (the input itself when T = 1). */
function lastPosition(hidden: Tensor, C: number): Tensor {
  const T = hidden.shape[1];
  if (T === 1) return hidden;
  const last = hidden.engine.empty([1, 1, C]);
  hidden.engine.gpu.copy(hidden.buffer, (T - 1) * C * 4, last.buffer, 0, C * 4);
  return last;
}

function maskFrom(logits: Float32Array, limit: number): Float32Array {
  const masked = logits.slice();
  masked.fill(-Infinity, limit);
  return masked;
}
