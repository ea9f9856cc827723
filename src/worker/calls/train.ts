// Training the attached adapter in the worker: tokenize and pack the dataset, then run the Trainer, reporting every
// step as an event; a cancel stops at a step boundary.

import { requireUsable } from '../../train/data.ts';
import { packDataset } from '../../train/packing.ts';
import { Trainer, type TrainingState } from '../../train/trainer.ts';
import { AdapterTrainingView } from '../../train/trainingView.ts';
import { engineState, requireLoaded, type CallContext } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import type { Result, TrainRequest } from '../protocol.ts';
import { tokenize } from './dataset.ts';
import { attachMethod } from './method.ts';

export async function trainCall(payload: TrainRequest, ctx: CallContext): Promise<Result<'train'>> {
  const current = requireLoaded();
  if (!Number.isSafeInteger(payload.steps) || payload.steps < 1 || payload.steps > 100_000) throw new BadRequestError(`steps must be an integer in [1, 100000], got ${payload.steps}`);
  const dataset = tokenize(current, payload.dataset, payload.seqLen);
  requireUsable(dataset);
  if (engineState.adapted?.key !== JSON.stringify(payload.method)) await attachMethod(payload.method);
  const attached = engineState.adapted!;
  const padId = current.tokenizer.special.pad?.id ?? current.tokenizer.special.eos?.id ?? 0;
  // Every example trains: a validation split of a pasted handful of lines would leave little to learn from.
  const packed = packDataset(dataset, { seqLen: payload.seqLen, padId, seed: payload.seed, validationExamples: 0 });
  const setState = (state: TrainingState) => {
    if (attached.peft) {
      attached.peft.train(state.training);
      attached.peft.runtime.seed = state.seed;
      attached.peft.runtime.offset = 0;
    } else if (attached.bottleneck) {
      if (state.training) attached.bottleneck.train(state.seed);
      else attached.bottleneck.eval();
    }
  };
  const view = new AdapterTrainingView(current.model, attached.params, setState);
  const trainer = new Trainer(view, { train: packed.train, validation: null }, { steps: payload.steps, batchSize: payload.batchSize, lr: payload.lr, schedule: 'constant', seed: payload.seed }, {
    onEvent: (event) => {
      if (event.type === 'step') {
        ctx.emit({ type: 'trainStep', step: event.step, steps: payload.steps, loss: event.loss, skipped: false, tokensPerSecond: event.tokensPerSecond, elapsedMs: event.elapsedMs, etaMs: event.etaMs });
      } else if (event.type === 'skip') {
        ctx.emit({ type: 'trainStep', step: event.step, steps: payload.steps, loss: event.loss, skipped: true, tokensPerSecond: 0, elapsedMs: 0, etaMs: 0 });
      }
    },
  });
  try {
    const result = await trainer.run({ signal: ctx.signal });
    return { stopReason: result.stopReason, step: result.step, tokensPerSecond: result.tokensPerSecond };
  } finally {
    trainer.dispose();
    setState({ training: false, seed: 0 });
  }
}
