// Choosing the next token from one row of logits [V], on the CPU, as Hugging Face transformers' generate()
// does: first the logits processor (repetition penalty, which also applies to greedy decoding), then the
// warpers in transformers' order — temperature, top-k, top-p — then a draw from the softmax of what is left.
// Temperature 0 is greedy decoding (argmax after the penalty; warpers do not change the argmax).
//
// Tie-breaking, everywhere the same:
//   - argmax returns the lowest token id among equal maxima (torch.argmax returns the first maximum);
//   - top-k keeps every token whose logit is ≥ the k-th largest, so tokens tied with the k-th are all kept
//     (transformers removes `scores < topk(scores, k).values[-1]`);
//   - top-p orders tokens by probability, highest first, equal probabilities by lower token id, and keeps
//     the shortest prefix of that order whose cumulative probability is ≥ p (at least one token);
//   - the draw walks the kept tokens in id order against one uniform number in [0, 1).
// Everything is computed in float64; the logits read back from the GPU are f32.

/** A source of uniform numbers in [0, 1). */
export type Rng = () => number;

export interface SamplingOptions {
  /** 0: greedy. Otherwise logits are divided by it before the softmax. Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (ties with the k-th kept); 0 or undefined: off. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability sums to ≥ p; 1 or undefined: off. */
  topP?: number;
  /** > 1 discourages tokens already present (prompt and generated): positive logits ÷ r, negative × r. Default 1 (off). */
  repetitionPenalty?: number;
}

export interface CheckedSampling {
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
}

/** Validate and fill in the defaults; RangeError naming the bad option. */
export function checkSamplingOptions(options: SamplingOptions = {}): CheckedSampling {
  const temperature = options.temperature ?? 1;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  const repetitionPenalty = options.repetitionPenalty ?? 1;
  if (!Number.isFinite(temperature) || temperature < 0) throw new RangeError(`sampling: temperature must be a finite number ≥ 0, got ${temperature}`);
  if (!Number.isSafeInteger(topK) || topK < 0) throw new RangeError(`sampling: top-k must be an integer ≥ 0 (0 turns it off), got ${topK}`);
  if (!Number.isFinite(topP) || topP <= 0 || topP > 1) throw new RangeError(`sampling: top-p must be in (0, 1], got ${topP}`);
  if (!Number.isFinite(repetitionPenalty) || repetitionPenalty <= 0) {
    throw new RangeError(`sampling: repetition penalty must be a finite number > 0, got ${repetitionPenalty}`);
  }
  return { temperature, topK, topP, repetitionPenalty };
}

/** Index of the largest value; the lowest index among ties. NaN is never chosen over a number. */
export function argmax(values: ArrayLike<number>): number {
  let best = -1;
  for (let i = 0; i < values.length; i++) {
    if (Number.isNaN(values[i])) continue;
    if (best === -1 || values[i] > values[best]) best = i;
  }
  if (best === -1) throw new RangeError('argmax: no number among the values');
  return best;
}

/**
 * A copy of `logits` with every token id that occurs in `previous` penalized once (duplicates count once):
 * a logit > 0 is divided by `penalty`, a logit ≤ 0 multiplied by it (transformers'
 * RepetitionPenaltyLogitsProcessor). Ids outside [0, V) are ignored.
 */
export function applyRepetitionPenalty(logits: ArrayLike<number>, previous: Iterable<number>, penalty: number): Float64Array {
  const out = Float64Array.from(logits);
  if (penalty === 1) return out;
  const seen = new Set<number>();
  for (const id of previous) {
    if (!Number.isInteger(id) || id < 0 || id >= out.length || seen.has(id)) continue;
    seen.add(id);
    out[id] = out[id] < 0 ? out[id] * penalty : out[id] / penalty;
  }
  return out;
}

/** In place: logits of every token below the k-th largest become −∞ (ties with the k-th are kept). k ≤ 0 or ≥ V: unchanged. */
export function topKFilter(logits: Float64Array, k: number): Float64Array {
  if (k <= 0 || k >= logits.length) return logits;
  const sorted = Float64Array.from(logits).sort(); // ascending; −∞ first
  const threshold = sorted[sorted.length - k];
  for (let i = 0; i < logits.length; i++) if (logits[i] < threshold) logits[i] = -Infinity;
  return logits;
}

/** Probabilities softmax(logits) in float64; −∞ logits get probability 0. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const probs = new Float64Array(logits.length);
  if (max === -Infinity) throw new RangeError('softmax: every logit is −∞');
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const p = logits[i] === -Infinity ? 0 : Math.exp(logits[i] - max);
    probs[i] = p;
    sum += p;
  }
  for (let i = 0; i < probs.length; i++) probs[i] /= sum;
  return probs;
}

/**
 * In place: logits outside the nucleus become −∞. The nucleus is the shortest run of tokens, by probability
 * (highest first, equal probabilities by lower id), whose cumulative probability is ≥ p; it holds at least one token.
 */
export function topPFilter(logits: Float64Array, p: number): Float64Array {
  if (p >= 1) return logits;
  const probs = softmax(logits);
  const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a] || a - b);
  let cumulative = 0;
  let kept = 0;
  while (kept < order.length && (kept === 0 || cumulative < p)) {
    cumulative += probs[order[kept]];
    kept++;
  }
  for (let i = kept; i < order.length; i++) logits[order[i]] = -Infinity;
  return logits;
}

/**
 * The distribution the next token is drawn from, [V] float64 summing to 1, for temperature > 0:
 * penalty, then logits / temperature, top-k, top-p, softmax.
 */
export function samplingDistribution(logits: ArrayLike<number>, options: SamplingOptions = {}, previous: Iterable<number> = []): Float64Array {
  const { temperature, topK, topP, repetitionPenalty } = checkSamplingOptions(options);
  if (temperature === 0) throw new RangeError('samplingDistribution: temperature 0 is greedy decoding, which has no distribution; use argmax');
  const scores = applyRepetitionPenalty(logits, previous, repetitionPenalty);
  checkFinite(scores);
  for (let i = 0; i < scores.length; i++) scores[i] /= temperature;
  topKFilter(scores, topK);
  topPFilter(scores, topP);
  return softmax(scores);
}

/** Draw an index from `probs` (non-negative, summing to about 1) with one number from `rng`. */
export function drawFrom(probs: ArrayLike<number>, rng: Rng): number {
  const u = rng();
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  if (last === -1) throw new RangeError('drawFrom: every probability is 0');
  return last; // u landed in the rounding gap above the float64 sum
}

/**
 * The next token: argmax of the penalized logits when temperature is 0 (no random number is used),
 * else a draw from {@link samplingDistribution}. `previous` is every token so far (prompt and generated).
 */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, previous: Iterable<number>, rng: Rng): number {
  const checked = checkSamplingOptions(options);
  if (checked.temperature === 0) {
    const scores = applyRepetitionPenalty(logits, previous, checked.repetitionPenalty);
    checkFinite(scores);
    return argmax(scores);
  }
  return drawFrom(samplingDistribution(logits, checked, previous), rng);
}

/** NaN or +∞ logits mean the model is broken; −∞ (a masked token) is fine. */
function checkFinite(scores: Float64Array): void {
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i]) || scores[i] === Infinity) {
      throw new RangeError(`sampling: the model produced a non-finite logit (${scores[i]}) for token ${i}`);
    }
  }
}

/**
 * A seeded generator of uniform numbers in [0, 1) with 53 random bits: xoshiro128** whose state is filled
 * by splitmix32 from the seed. The same seed gives the same sequence on every platform.
 */
export function createRng(seed: number): Rng {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be an integer in [0, 2^53), got ${seed}`);
  // Both halves of the seed feed the state, so seeds that differ only above bit 32 differ.
  let mix = (seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x9e3779b1);
  const splitmix32 = (): number => {
    mix = (mix + 0x9e3779b9) | 0;
    let z = mix;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  const s = Uint32Array.of(splitmix32(), splitmix32(), splitmix32(), splitmix32());
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1; // the all-zero state is a fixed point
  const next32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  };
  return () => ((next32() >>> 5) * 2 ** 26 + (next32() >>> 6)) / 2 ** 53;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A seed for when the caller gives none (reported back so the run can be repeated). */
export function randomSeed(): number {
  const words = new Uint32Array(2);
  globalThis.crypto.getRandomValues(words);
  return (words[0] & 0x1fffff) * 2 ** 32 + words[1];
}
