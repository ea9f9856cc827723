// The train call's request checks (src/worker/calls/train.ts), which run before anything touches the GPU or the
// saved run: a learning-rate schedule outside the list, warm-up steps that are not fewer than the steps, and a seed
// outside [0, 2^32) are refused with a BadRequestError naming the setting; a request that passes them goes on to
// need a loaded model (NoModelError here, where none is loaded).

import { describe, expect, it } from 'vitest';
import { trainCall } from '../../../src/worker/calls/train.ts';
import type { CallContext } from '../../../src/worker/engineState.ts';
import { BadRequestError, NoModelError } from '../../../src/worker/failures.ts';
import type { TrainRequest } from '../../../src/worker/protocol.ts';

const request: TrainRequest = {
  method: { method: 'lora', r: 8, alpha: 16, dropout: 0, useRslora: false, targetModules: null, reductionFactor: 16, placement: 'pfeiffer' },
  dataset: 'first example\n\nsecond example\n',
  steps: 10,
  seqLen: 16,
  batchSize: 1,
  lr: 0.01,
  schedule: 'cosine',
  warmupSteps: 2,
  seed: 7,
  checkpointEvery: 0,
  validationShare: 0,
  evalEvery: 0,
  model: { source: { kind: 'demo' }, label: 'Demo model' },
  fromCheckpoint: false,
};

const ctx: CallContext = { id: 1, signal: new AbortController().signal, emit: () => undefined };

async function failureOf(patch: Record<string, unknown>): Promise<Error> {
  try {
    await trainCall({ ...request, ...patch } as TrainRequest, ctx);
  } catch (error) {
    return error as Error;
  }
  throw new Error('the request was accepted');
}

describe('train request checks', () => {
  it('refuses a schedule outside constant, linear, cosine, naming it', async () => {
    for (const schedule of ['step', 'Cosine', '', undefined, 3]) {
      const error = await failureOf({ schedule });
      expect(error).toBeInstanceOf(BadRequestError);
      expect(error.message).toBe(`the learning-rate schedule must be one of constant, linear, cosine, got ${JSON.stringify(schedule)}`);
    }
  });

  it('refuses warm-up steps that are negative, fractional, or not fewer than the steps', async () => {
    expect((await failureOf({ warmupSteps: -1 })).message).toBe('the warm-up steps must be an integer in [0, 100000], got -1');
    expect((await failureOf({ warmupSteps: 1.5 })).message).toBe('the warm-up steps must be an integer in [0, 100000], got 1.5');
    expect((await failureOf({ warmupSteps: undefined })).message).toBe('the warm-up steps must be an integer in [0, 100000], got undefined');
    const tooLong = await failureOf({ warmupSteps: 10 });
    expect(tooLong).toBeInstanceOf(BadRequestError);
    expect(tooLong.message).toBe('the warm-up steps must be fewer than the 10 steps of the run, got 10');
  });

  it('refuses a seed outside [0, 2^32)', async () => {
    for (const seed of [-1, 2 ** 32, 0.5, Number.NaN]) {
      const error = await failureOf({ seed });
      expect(error).toBeInstanceOf(BadRequestError);
      expect(error.message).toBe(`the seed must be an integer in [0, 4294967295], got ${seed}`);
    }
  });

  it('lets every schedule, the longest warm-up and the extreme seeds through to the model check', async () => {
    for (const patch of [{ schedule: 'constant', warmupSteps: 0, seed: 0 }, { schedule: 'linear', warmupSteps: 9, seed: 2 ** 32 - 1 }, { schedule: 'cosine' }]) {
      expect(await failureOf(patch)).toBeInstanceOf(NoModelError);
    }
  });
});
