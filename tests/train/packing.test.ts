// Packing, the validation split and the seeded row order (src/train/packing.ts), and the learning-rate schedule
// and hyperparameter checks (src/train/schedule.ts, resolveTrainerConfig). CPU only.

import { describe, expect, it } from 'vitest';
import type { TokenizedExample } from '../../src/train/data.ts';
import { gatherRows, IGNORE_INDEX, packDataset, packedFingerprint, packSequences, RowSampler } from '../../src/train/packing.ts';
import { createSchedule, HyperparameterError } from '../../src/train/schedule.ts';
import { resolveTrainerConfig } from '../../src/train/trainer.ts';

const example = (line: number, ids: number[], targets: number[]): TokenizedExample => ({ line, ids: Int32Array.from(ids), targets: Uint8Array.from(targets) });
const X = IGNORE_INDEX;

describe('packing', () => {
  it('fills rows greedily with whole examples; labels are next tokens, masked across boundaries, prompts and padding', () => {
    const examples = [
      example(1, [10, 11, 12, 13], [0, 0, 1, 1]), // a prompt of 2 tokens, a completion of 2
      example(2, [20, 21, 22], [0, 1, 1]),
      example(3, [30, 31, 32, 33, 34, 35], [0, 1, 1, 1, 1, 1]), // does not fit after the first two: next row
      example(4, [40, 41], [0, 1]),
    ];
    const packed = packSequences(examples, { seqLen: 8, padId: 0 });
    expect(packed.rows).toBe(2);
    expect(Array.from(packed.inputs)).toEqual([10, 11, 12, 13, 20, 21, 22, 0, 30, 31, 32, 33, 34, 35, 40, 41]);
    expect(Array.from(packed.labels)).toEqual([
      // row 0: 10→(11 masked) 11→12 12→13 13→(20: other example) 20→21 21→22 22→(pad) pad
      X, 12, 13, X, 21, 22, X, X,
      // row 1: 30→31 … 34→35, 35→(40: other example), 40→41
      31, 32, 33, 34, 35, X, 41, X,
    ]);
    expect(Array.from(packed.targetsPerRow)).toEqual([4, 6]);
    expect(packed.targetTokens).toBe(10);
    expect(packed.realTokens).toBe(15);
  });

  it('a row holds L + 1 tokens: the last one only as a label', () => {
    const packed = packSequences([example(1, [1, 2, 3, 4, 5], [0, 1, 1, 1, 1])], { seqLen: 4, padId: 9 });
    expect(Array.from(packed.inputs)).toEqual([1, 2, 3, 4]);
    expect(Array.from(packed.labels)).toEqual([2, 3, 4, 5]);
    expect(() => packSequences([example(7, [1, 2, 3, 4, 5, 6], [0, 1, 1, 1, 1, 1])], { seqLen: 4, padId: 0 })).toThrow(/line 7 has 6 tokens, over the 5/);
  });

  it('the validation split is held out by example, seeded and disjoint from training', () => {
    const examples = Array.from({ length: 20 }, (_, i) => example(i + 1, [i + 1, 100 + i], [0, 1]));
    const a = packDataset({ examples }, { seqLen: 4, padId: 0, seed: 5 });
    const b = packDataset({ examples }, { seqLen: 4, padId: 0, seed: 5 });
    const c = packDataset({ examples }, { seqLen: 4, padId: 0, seed: 6 });
    expect(a.validation!.examples).toBe(2);
    expect(a.train.examples).toBe(18);
    expect(packedFingerprint(a.train)).toBe(packedFingerprint(b.train));
    expect(packedFingerprint(a.train)).not.toBe(packedFingerprint(c.train));
    const firstTokens = (p: { inputs: Int32Array }) => new Set(Array.from(p.inputs).filter((t) => t > 0 && t <= 20));
    const train = firstTokens(a.train);
    const validation = firstTokens(a.validation!);
    expect(train.size + validation.size).toBe(20);
    for (const t of validation) expect(train.has(t)).toBe(false);
    expect(packDataset({ examples }, { seqLen: 4, padId: 0, seed: 5, validationExamples: 5 }).validation!.examples).toBe(5);
    expect(packDataset({ examples }, { seqLen: 4, padId: 0, seed: 5, validationFraction: 0 }).validation).toBeNull();
    expect(packDataset({ examples: examples.slice(0, 1) }, { seqLen: 4, padId: 0, seed: 5 }).validation).toBeNull();
    expect(() => packDataset({ examples }, { seqLen: 4, padId: 0, seed: 5, validationExamples: 20 })).toThrow(RangeError);
  });

  it('rows are drawn epoch by epoch, each a permutation; a sampler restored at a position continues identically', () => {
    const sampler = new RowSampler(7, 42);
    const drawn = sampler.next(21);
    for (let epoch = 0; epoch < 3; epoch++) expect([...drawn.slice(epoch * 7, epoch * 7 + 7)].sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(drawn.slice(0, 7)).not.toEqual(drawn.slice(7, 14));
    const resumed = new RowSampler(7, 42, 10);
    expect(resumed.next(11)).toEqual(drawn.slice(10));
    expect(new RowSampler(7, 43).next(7)).not.toEqual(drawn.slice(0, 7));
  });

  it('gatherRows copies rows and counts their targets', () => {
    const packed = packSequences([example(1, [1, 2, 3], [0, 1, 1]), example(2, [4, 5, 6, 7], [0, 0, 0, 1])], { seqLen: 3, padId: 0 });
    const batch = gatherRows(packed, [1, 0]);
    expect(Array.from(batch.inputs)).toEqual([4, 5, 6, 1, 2, 3]);
    expect(Array.from(batch.labels)).toEqual([X, X, 7, 2, 3, X]);
    expect(batch.targets).toBe(3);
  });
});

describe('learning-rate schedule', () => {
  it('warm-up then constant, linear or cosine', () => {
    const at = (kind: 'constant' | 'linear' | 'cosine', minLrRatio = 0) => {
      const schedule = createSchedule({ lr: 1e-3, steps: 10, warmupSteps: 4, kind, minLrRatio });
      return Array.from({ length: 10 }, (_, s) => schedule.lrAt(s));
    };
    const warm = [0.25e-3, 0.5e-3, 0.75e-3, 1e-3];
    expect(at('constant')).toEqual([...warm, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]);
    const linear = at('linear');
    expect(linear.slice(0, 4)).toEqual(warm);
    [1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6].forEach((f, k) => expect(linear[4 + k]).toBeCloseTo(1e-3 * f, 15));
    const cosine = at('cosine');
    [0, 1, 2, 3, 4, 5].forEach((k) => expect(cosine[4 + k]).toBeCloseTo(1e-3 * 0.5 * (1 + Math.cos((Math.PI * k) / 6)), 15));
    expect(at('linear', 0.1)[9]).toBeCloseTo(1e-3 * (0.1 + 0.9 / 6), 15);
    expect(createSchedule({ lr: 2e-4, steps: 3 }).lrAt(2)).toBe(2e-4);
  });

  it('refuses warm-up longer than training, a learning rate ≤ 0, NaN or absurd, zero steps', () => {
    const refuse = (options: Parameters<typeof createSchedule>[0], field: string) => {
      let error: unknown;
      try {
        createSchedule(options);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(HyperparameterError);
      expect((error as HyperparameterError).field).toBe(field);
      return (error as Error).message;
    };
    expect(refuse({ lr: 1e-3, steps: 10, warmupSteps: 11 }, 'warmup')).toBe('warmup: 11 warm-up steps is longer than the 10 training steps');
    for (const lr of [0, -1e-4, NaN, Infinity, 5]) refuse({ lr, steps: 10 }, 'lr');
    refuse({ lr: 1e-3, steps: 0 }, 'steps');
    refuse({ lr: 1e-3, steps: 1.5 }, 'steps');
    refuse({ lr: 1e-3, steps: 10, kind: 'step' as never }, 'schedule');
  });

  it('trainer settings: batch, accumulation and steps of 0, a seed out of range, bad betas are refused by name', () => {
    const base = { steps: 10, batchSize: 2, lr: 1e-3 };
    const field = (config: Parameters<typeof resolveTrainerConfig>[0]) => {
      try {
        resolveTrainerConfig(config);
      } catch (error) {
        expect(error).toBeInstanceOf(HyperparameterError);
        return (error as HyperparameterError).field;
      }
      return null;
    };
    expect(field(base)).toBeNull();
    expect(field({ ...base, batchSize: 0 })).toBe('batch');
    expect(field({ ...base, gradAccum: 0 })).toBe('grad-accum');
    expect(field({ ...base, steps: 0 })).toBe('steps');
    expect(field({ ...base, seed: -1 })).toBe('seed');
    expect(field({ ...base, seed: 2 ** 32 })).toBe('seed');
    expect(field({ ...base, beta2: 1 })).toBe('beta2');
    expect(field({ ...base, lr: 1e6 })).toBe('lr');
    expect(field({ ...base, warmupSteps: 20 })).toBe('warmup');
    expect(field({ ...base, maxGradNorm: 0 })).toBe('max-grad-norm');
    expect(resolveTrainerConfig({ ...base, maxGradNorm: null }).maxGradNorm).toBeNull();
  });
});
