// The pure sampling functions (CPU): greedy tie-breaking, temperature, top-k and top-p sets, repetition
// penalty as transformers applies it, the seeded generator, and draws whose frequencies match the distribution.

import { describe, expect, it } from 'vitest';
import {
  applyRepetitionPenalty,
  argmax,
  checkSamplingOptions,
  createRng,
  drawFrom,
  randomSeed,
  sampleToken,
  samplingDistribution,
  softmax,
  topKFilter,
  topPFilter,
} from '../../src/train/sampling.ts';

const kept = (values: ArrayLike<number>) => Array.from(values).flatMap((v, i) => (v > 0 && v !== -Infinity ? [i] : []));
const finite = (values: Float64Array) => Array.from(values).flatMap((v, i) => (v !== -Infinity ? [i] : []));

describe('greedy', () => {
  it('argmax picks the lowest id among equal maxima and skips NaN', () => {
    expect(argmax([1, 3, 2, 3])).toBe(1);
    expect(argmax([NaN, -1, -1])).toBe(1);
    expect(() => argmax([NaN])).toThrow(RangeError);
  });

  it('temperature 0 is the argmax of the penalized logits and uses no random number', () => {
    let calls = 0;
    const rng = () => (calls++, 0.5);
    expect(sampleToken([1, 5, 4.9], { temperature: 0 }, [], rng)).toBe(1);
    // The penalty applies to greedy decoding too: 5 / 1.2 < 4.9.
    expect(sampleToken([1, 5, 4.9], { temperature: 0, repetitionPenalty: 1.2 }, [1], rng)).toBe(2);
    expect(calls).toBe(0);
  });
});

describe('temperature', () => {
  it('gives softmax(logits / T)', () => {
    const logits = [0.5, -1, 2, 0];
    for (const T of [0.25, 1, 3]) {
      const probs = samplingDistribution(logits, { temperature: T });
      const z = logits.map((x) => Math.exp(x / T));
      const sum = z.reduce((a, b) => a + b, 0);
      z.forEach((value, i) => expect(probs[i]).toBeCloseTo(value / sum, 12));
    }
    // Lower temperature sharpens, higher flattens.
    const cold = samplingDistribution(logits, { temperature: 0.25 });
    const hot = samplingDistribution(logits, { temperature: 3 });
    expect(cold[2]).toBeGreaterThan(0.99);
    expect(hot[2]).toBeLessThan(0.5);
    expect(hot[1]).toBeGreaterThan(0.1);
  });

  it('refuses a distribution at temperature 0', () => {
    expect(() => samplingDistribution([1, 2], { temperature: 0 })).toThrow(/greedy/);
  });
});

describe('top-k', () => {
  it('keeps the k largest logits', () => {
    expect(finite(topKFilter(Float64Array.of(0.1, 3, -2, 2, 1), 2))).toEqual([1, 3]);
    expect(finite(topKFilter(Float64Array.of(0.1, 3, -2, 2, 1), 1))).toEqual([1]);
    // k of 0 or ≥ V: unchanged.
    expect(finite(topKFilter(Float64Array.of(1, 2, 3), 0))).toEqual([0, 1, 2]);
    expect(finite(topKFilter(Float64Array.of(1, 2, 3), 5))).toEqual([0, 1, 2]);
  });

  it('keeps every token tied with the k-th', () => {
    expect(finite(topKFilter(Float64Array.of(1, 2, 2, 0, 2), 2))).toEqual([1, 2, 4]);
  });

  it('renormalizes the kept probabilities', () => {
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
    const probs = samplingDistribution(logits, { topK: 2 });
    expect(probs[0]).toBeCloseTo(0.5 / 0.8, 12);
    expect(probs[1]).toBeCloseTo(0.3 / 0.8, 12);
    expect(probs[2]).toBe(0);
  });
});

describe('top-p', () => {
  const logits = () => Float64Array.of(Math.log(0.2), Math.log(0.5), Math.log(0.3)); // ids by probability: 1, 2, 0

  it('keeps the smallest set of most likely tokens whose probability reaches p', () => {
    expect(finite(topPFilter(logits(), 0.5))).toEqual([1]); // 0.5 ≥ 0.5
    expect(finite(topPFilter(logits(), 0.4))).toEqual([1]);
    expect(finite(topPFilter(logits(), 0.51))).toEqual([1, 2]);
    expect(finite(topPFilter(logits(), 0.8))).toEqual([1, 2]); // 0.5 + 0.3 = 0.8 (float64 rounding aside)
    expect(finite(topPFilter(logits(), 0.81))).toEqual([0, 1, 2]);
    expect(finite(topPFilter(logits(), 1))).toEqual([0, 1, 2]);
  });

  it('always keeps at least one token, the most likely', () => {
    expect(finite(topPFilter(Float64Array.of(0, 10, 0), 1e-9))).toEqual([1]);
  });

  it('breaks ties in probability by the lower token id', () => {
    expect(finite(topPFilter(Float64Array.of(1, 1, 1, 1), 0.5))).toEqual([0, 1]);
    expect(finite(topPFilter(Float64Array.of(0, 1, 1, 1), 0.25))).toEqual([1]); // each of 1, 2, 3: e / (1 + 3e) ≈ 0.297
    expect(finite(topPFilter(Float64Array.of(0, 1, 1, 1), 0.3))).toEqual([1, 2]);
  });

  it('agrees with the transformers formulation (ascending sort, drop while cumulative ≤ 1 − p) on random logits', () => {
    // TopPLogitsWarper: sort ascending, cumulative softmax, remove tokens whose cumulative is ≤ 1 − p, keep the last.
    const transformersTopP = (logits: Float64Array, p: number): number[] => {
      const probs = softmax(logits);
      const ascending = Array.from(probs.keys()).sort((a, b) => probs[a] - probs[b]);
      let cumulative = 0;
      const removed = new Set<number>();
      ascending.forEach((id, rank) => {
        cumulative += probs[id];
        if (cumulative <= 1 - p && rank < ascending.length - 1) removed.add(id);
      });
      return Array.from(probs.keys()).filter((id) => !removed.has(id));
    };
    const rng = createRng(99);
    for (let trial = 0; trial < 300; trial++) {
      const V = 2 + Math.floor(rng() * 30);
      const logits = Float64Array.from({ length: V }, () => (rng() * 2 - 1) * 4);
      const p = 0.05 + 0.9 * rng();
      expect(finite(topPFilter(Float64Array.from(logits), p)), `trial ${trial}`).toEqual(transformersTopP(logits, p));
    }
  });

  it('applies after top-k, on the renormalized probabilities (as transformers does)', () => {
    // Probabilities 0.4, 0.3, 0.2, 0.1; top-k 3 → 4/9, 3/9, 2/9; top-p 0.7 → 4/9 + 3/9 = 7/9 ≥ 0.7.
    const probs = samplingDistribution([0.4, 0.3, 0.2, 0.1].map(Math.log), { topK: 3, topP: 0.7 });
    expect(kept(probs)).toEqual([0, 1]);
    expect(probs[0]).toBeCloseTo(4 / 7, 12);
    expect(probs[1]).toBeCloseTo(3 / 7, 12);
  });
});

describe('repetition penalty', () => {
  it('divides positive and multiplies negative logits of tokens already present, once each', () => {
    const out = applyRepetitionPenalty([2, -2, 0, 3, -1], [0, 1, 2, 0, 0, 1, 99, -1], 2);
    expect(Array.from(out)).toEqual([1, -4, 0, 3, -1]);
  });

  it('is the identity at 1 and does not modify its input', () => {
    const logits = Float32Array.of(1, -1);
    expect(Array.from(applyRepetitionPenalty(logits, [0, 1], 1))).toEqual([1, -1]);
    applyRepetitionPenalty(logits, [0, 1], 3);
    expect(Array.from(logits)).toEqual([1, -1]);
  });

  it('applies before temperature: a penalty below 1 encourages repetition', () => {
    const probs = samplingDistribution([1, 1], { temperature: 0.5, repetitionPenalty: 0.5 }, [0]);
    const z0 = Math.exp(2 / 0.5);
    const z1 = Math.exp(1 / 0.5);
    expect(probs[0]).toBeCloseTo(z0 / (z0 + z1), 12);
  });
});

describe('seeded random numbers', () => {
  it('repeat for a seed and differ between seeds', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const high = createRng(42 + 2 ** 40);
    const first = Array.from({ length: 100 }, a);
    expect(Array.from({ length: 100 }, b)).toEqual(first);
    expect(Array.from({ length: 100 }, c)).not.toEqual(first);
    expect(Array.from({ length: 100 }, high)).not.toEqual(first);
    for (const u of first) {
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
    }
  });

  it('are uniform: mean, variance and deciles of 100 000 draws', () => {
    const rng = createRng(7);
    const n = 100_000;
    const bins = new Array(10).fill(0);
    let sum = 0;
    let squares = 0;
    for (let i = 0; i < n; i++) {
      const u = rng();
      sum += u;
      squares += u * u;
      bins[Math.floor(u * 10)]++;
    }
    expect(sum / n).toBeCloseTo(0.5, 2);
    expect(squares / n - (sum / n) ** 2).toBeCloseTo(1 / 12, 2);
    const chi2 = bins.reduce((acc, count) => acc + (count - n / 10) ** 2 / (n / 10), 0);
    expect(chi2).toBeLessThan(27.88); // χ²(9) at p = 0.001
  });

  it('refuses seeds that are not non-negative safe integers; randomSeed gives one', () => {
    expect(() => createRng(-1)).toThrow(RangeError);
    expect(() => createRng(1.5)).toThrow(RangeError);
    expect(() => createRng(2 ** 53)).toThrow(RangeError);
    const seed = randomSeed();
    expect(Number.isSafeInteger(seed) && seed >= 0).toBe(true);
  });

  it('make sampling reproducible', () => {
    const logits = [0.3, 1.2, -0.5, 0.9, 0.1, 2.0];
    const run = (seed: number) => {
      const rng = createRng(seed);
      return Array.from({ length: 50 }, () => sampleToken(logits, { temperature: 1.3, topK: 5, topP: 0.95 }, [], rng));
    };
    expect(run(5)).toEqual(run(5));
    expect(run(5)).not.toEqual(run(6));
  });
});

describe('draws', () => {
  it('have the frequencies of the distribution (chi-square)', () => {
    const logits = [0.2, -1, 1.5, 0.7, -0.3];
    const options = { temperature: 0.8, topK: 4 }; // token 1 is removed by top-k
    const probs = samplingDistribution(logits, options);
    const rng = createRng(2024);
    const n = 20_000;
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[sampleToken(logits, options, [], rng)]++;
    expect(counts[1]).toBe(0);
    let chi2 = 0;
    for (let i = 0; i < logits.length; i++) if (probs[i] > 0) chi2 += (counts[i] - n * probs[i]) ** 2 / (n * probs[i]);
    expect(chi2).toBeLessThan(16.27); // χ²(3) at p = 0.001
    expect(chi2).toBeGreaterThan(0); // not a degenerate generator
  });

  it('drawFrom walks the cumulative probabilities in id order and never returns a zero-probability id', () => {
    const probs = [0.25, 0, 0.5, 0.25];
    expect(drawFrom(probs, () => 0)).toBe(0);
    expect(drawFrom(probs, () => 0.2499)).toBe(0);
    expect(drawFrom(probs, () => 0.25)).toBe(2);
    expect(drawFrom(probs, () => 0.75)).toBe(3);
    expect(drawFrom([0.3, 0.3, 0], () => 0.9999999)).toBe(1); // the rounding gap falls to the last kept id
    expect(() => drawFrom([0, 0], () => 0.5)).toThrow(RangeError);
  });
});

describe('checks', () => {
  it('refuses bad options by name', () => {
    expect(() => checkSamplingOptions({ temperature: -1 })).toThrow(/temperature/);
    expect(() => checkSamplingOptions({ temperature: NaN })).toThrow(/temperature/);
    expect(() => checkSamplingOptions({ topK: 1.5 })).toThrow(/top-k/);
    expect(() => checkSamplingOptions({ topP: 0 })).toThrow(/top-p/);
    expect(() => checkSamplingOptions({ topP: 1.01 })).toThrow(/top-p/);
    expect(() => checkSamplingOptions({ repetitionPenalty: 0 })).toThrow(/repetition penalty/);
    expect(checkSamplingOptions()).toEqual({ temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 });
  });

  it('refuses NaN or +∞ logits; −∞ is a masked token', () => {
    const rng = createRng(1);
    expect(() => sampleToken([0, NaN], { temperature: 1 }, [], rng)).toThrow(/non-finite/);
    expect(() => sampleToken([0, Infinity], { temperature: 0 }, [], rng)).toThrow(/non-finite/);
    expect(sampleToken([-Infinity, 0], { temperature: 1 }, [], rng)).toBe(1);
    expect(Array.from(softmax([-Infinity, 0]))).toEqual([0, 1]);
  });
});
