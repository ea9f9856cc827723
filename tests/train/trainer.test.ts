// The training loop (src/train/trainer.ts) on a tiny in-memory Llama (1 layer, hidden 16, vocabulary 32) and
// synthetic progressions: the loss falls; accumulated micro-batches give the gradients of one big batch; the same
// seed gives the same losses bit for bit, also across a pause; a checkpoint resumes the exact run; a poisoned
// step is skipped and reported with its number; settings are checked before the GPU is touched.
// Step counts are small: every kernel runs on a software GPU.

import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { clone } from '../../src/engine/kernels/elementwiseCore.ts';
import { mul } from '../../src/engine/ops/arithmetic.ts';
import type { Tensor } from '../../src/engine/tensor.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer } from '../../src/io/tokenizer.ts';
import { checkpointSaver, loadCheckpoint, memoryCheckpointStorage, resumeFromCheckpoint, type CheckpointStorage } from '../../src/train/checkpoint.ts';
import { prepareDataset } from '../../src/train/data.ts';
import { AdamW, loraPlusGroups } from '../../src/train/adamw.ts';
import { packDataset, type PackedDataset } from '../../src/train/packing.ts';
import { HyperparameterError } from '../../src/train/schedule.ts';
import { ResumeMismatchError, Trainer, type StepRecord, type TrainerConfig, type TrainEvent, type TrainableModel } from '../../src/train/trainer.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { makeTrainable, progressions, tinyLlama, type TestModel } from './helpers.ts';

const log: string[] = [];
afterAll(() => console.info(log.join('\n')));

const SUBSET = ['model.layers.0.mlp.down_proj.weight', 'model.norm.weight', 'lm_head.weight'];
const data: PackedDataset = packDataset({ examples: progressions(60, 32, 12, 1) }, { seqLen: 16, padId: 0, seed: 1, validationExamples: 8 });

async function freshModel(engine: Engine, which: 'all' | readonly string[] = SUBSET): Promise<TestModel> {
  return makeTrainable(await tinyLlama(engine), which);
}

async function readAll(tensors: readonly Tensor[]): Promise<Float32Array[]> {
  return Promise.all(tensors.map(async (t) => Float32Array.from((await t.read()) as Float32Array)));
}

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const lossBits = (history: readonly StepRecord[]) => history.map((r) => [r.step, bits(Float32Array.of(r.loss))[0], bits(Float32Array.of(r.gradNorm))[0], r.skipped]);

describe('training a tiny model', () => {
  it('the loss and the validation loss fall; events report step, loss, lr, rate and ETA; only trainable tensors hold optimizer state', async () => {
    const engine = await testEngine();
    const model = await freshModel(engine, 'all');
    const events: TrainEvent[] = [];
    const before = engine.memory().optimizerState;
    const trainer = new Trainer(
      model,
      data,
      { steps: 8, batchSize: 4, lr: 2e-2, warmupSteps: 2, schedule: 'cosine', evalEvery: 4, evalAtStart: true, seed: 3 },
      { onEvent: (e) => events.push(e) },
    );
    const trainableBytes = model.trainableParameters().reduce((sum, p) => sum + p.byteLength, 0);
    expect(engine.memory().optimizerState - before).toBe(2 * trainableBytes);

    const result = await trainer.run();
    expect(result.stopReason).toBe('completed');
    const losses = result.history.map((r) => r.loss);
    const evals = result.evals.map((e) => [e.step, e.loss]);
    log.push(`train losses ${losses.map((l) => l.toFixed(3)).join(' ')}; validation ${evals.map(([s, l]) => `@${s} ${l.toFixed(3)}`).join(', ')}`);
    expect(result.evals.map((e) => e.step)).toEqual([0, 4, 8]);
    expect(result.evals[0].loss).toBeGreaterThan(3);
    expect(result.evals[2].loss).toBeLessThan(result.evals[0].loss - 0.6);
    expect(result.evals[2].perplexity).toBeCloseTo(Math.exp(result.evals[2].loss), 10);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-3))).toBeLessThan(mean(losses.slice(0, 3)) - 0.3);

    const steps = events.filter((e): e is Extract<TrainEvent, { type: 'step' }> => e.type === 'step');
    expect(steps.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    steps.forEach((e, s) => {
      expect(e.lr).toBe(trainer.schedule.lrAt(s));
      expect(e.tokens).toBe((s + 1) * 4 * 16);
      expect(e.tokensPerSecond).toBeGreaterThan(0);
      expect(Number.isFinite(e.gradNorm) && e.gradNorm > 0).toBe(true);
    });
    expect(steps[7].etaMs).toBe(0);
    expect(steps[1].etaMs).toBeGreaterThan(steps[6].etaMs);
    expect(events.filter((e) => e.type === 'eval')).toHaveLength(3);
    // The model was told training vs evaluation, with a distinct dropout seed per training forward.
    const trainingSeeds = model.states.filter((s) => s.training).map((s) => s.seed);
    expect(trainingSeeds).toHaveLength(8);
    expect(new Set(trainingSeeds).size).toBe(8);
    expect(model.states.filter((s) => !s.training)).toHaveLength(3);
    for (const p of model.trainableParameters()) expect(p.grad).toBeNull();
    trainer.dispose();
    expect(engine.memory().optimizerState).toBe(before);
    model.dispose();
  });

  it('gradient accumulation: k micro-batches give the gradients of one batch of k× rows (rows with different label counts)', async () => {
    const engine = await testEngine();
    const grads = async (config: Pick<TrainerConfig, 'batchSize' | 'gradAccum'>) => {
      const model = await freshModel(engine);
      const trainer = new Trainer(model, { train: data.train }, { ...config, steps: 2, lr: 1e-2, seed: 9, maxGradNorm: null });
      // Capture the accumulated gradients just before each update.
      const captured: Tensor[][] = [];
      const step = trainer.optimizer.step.bind(trainer.optimizer);
      trainer.optimizer.step = (lr: number, guard?: Tensor) => {
        captured.push(trainer.optimizer.params.map((p) => engine.keep(clone(p.grad!))));
        return step(lr, guard);
      };
      const result = await trainer.run();
      const values = await Promise.all(captured.map(readAll));
      captured.flat().forEach((t) => t.dispose());
      const params = await readAll(trainer.optimizer.params);
      // Frozen weights got no gradient; only the trainable ones hold optimizer state.
      for (const [name, tensor] of model.parameters()) if (!SUBSET.includes(name)) expect(tensor.grad, name).toBeNull();
      const subsetBytes = trainer.optimizer.params.reduce((sum, p) => sum + p.byteLength, 0);
      expect(engine.memory().optimizerState).toBe(2 * subsetBytes);
      trainer.dispose();
      model.dispose();
      return { history: result.history, values, params };
    };
    const whole = await grads({ batchSize: 4, gradAccum: 1 });
    expect(new Set(Array.from(data.train.targetsPerRow)).size).toBeGreaterThan(3); // rows really differ in label counts
    for (const split of [
      { batchSize: 2, gradAccum: 2 },
      { batchSize: 1, gradAccum: 4 },
    ]) {
      const parts = await grads(split);
      let worst = 0;
      whole.values.forEach((stepGrads, s) =>
        stepGrads.forEach((g, i) => {
          worst = Math.max(worst, relativeError(parts.values[s][i], g));
          expectClose(parts.values[s][i], g, 1e-5, `step ${s + 1} ${SUBSET[i]} (batch ${split.batchSize} × ${split.gradAccum})`);
        }),
      );
      log.push(`accumulation ${split.batchSize}×${split.gradAccum} vs 4×1: worst gradient relative error ${worst.toExponential(2)}`);
      parts.history.forEach((r, s) => {
        expect(Math.abs(r.loss - whole.history[s].loss) / whole.history[s].loss).toBeLessThan(2e-6);
        expect(Math.abs(r.gradNorm - whole.history[s].gradNorm) / whole.history[s].gradNorm).toBeLessThan(1e-5);
      });
      log.push(
        `accumulation ${split.batchSize}×${split.gradAccum} vs 4×1: losses ${parts.history.map((r) => r.loss).join(', ')} vs ${whole.history.map((r) => r.loss).join(', ')}`,
      );
    }
  });

  it('the same seed gives bit-identical losses, also when paused by an AbortSignal and continued; another seed differs', async () => {
    const engine = await testEngine();
    const config: TrainerConfig = { steps: 4, batchSize: 2, gradAccum: 2, lr: 1e-2, seed: 21 }; // evaluates at the end
    const train = async (seed: number, pauseAfter?: number, steps = config.steps) => {
      const model = await freshModel(engine);
      const controller = new AbortController();
      const trainer = new Trainer(model, data, { ...config, seed, steps }, {
        onEvent: (e) => {
          if (e.type === 'step' && e.step === pauseAfter) controller.abort();
        },
      });
      const first = await trainer.run({ signal: controller.signal });
      const stops = [first.stopReason, first.step];
      const result = pauseAfter === undefined ? first : await trainer.run();
      const params = await readAll(trainer.optimizer.params);
      trainer.dispose();
      model.dispose();
      return { result, params, stops };
    };
    const a = await train(21);
    const b = await train(21, 2);
    const c = await train(22, undefined, 2);
    // The report of step 2 arrives after step 3 was recorded (reports come a step late): the pause takes effect there.
    expect(b.stops).toEqual(['aborted', 3]);
    expect(a.result.stopReason).toBe('completed');
    expect(b.result.stopReason).toBe('completed');
    expect(lossBits(b.result.history)).toEqual(lossBits(a.result.history));
    expect(b.result.evals.map((e) => e.loss)).toEqual(a.result.evals.map((e) => e.loss));
    a.params.forEach((p, i) => expect(bits(b.params[i])).toEqual(bits(p)));
    expect(c.result.history.map((r) => r.loss)).not.toEqual(a.result.history.slice(0, 2).map((r) => r.loss));
    log.push(`seed 21: ${a.result.history.map((r) => r.loss).join(', ')}; seed 22: ${c.result.history.map((r) => r.loss).join(', ')}`);
  });

  it('a checkpoint resumes the uninterrupted run exactly; a failed checkpoint write pauses training and loses nothing', async () => {
    const engine = await testEngine();
    const config: TrainerConfig = { steps: 6, batchSize: 2, lr: 1e-2, warmupSteps: 1, schedule: 'linear', evalEvery: 3, seed: 5 };
    const storage = memoryCheckpointStorage();
    let failWrites = true;
    const flaky: CheckpointStorage = {
      name: 'flaky',
      read: (name) => storage.read(name),
      replace: async (name, chunks) => {
        if (failWrites) throw new Error('QuotaExceededError');
        await storage.replace(name, chunks);
      },
    };
    const events: TrainEvent[] = [];
    let atStep4: Uint8Array | null = null;
    const modelA = await freshModel(engine);
    const trainerA = new Trainer(modelA, data, config, {
      checkpoint: checkpointSaver(flaky, { every: 2 }),
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'checkpoint' && e.step === 4) atStep4 = storage.files.get('checkpoint.safetensors')!.slice();
      },
    });
    const stopped = await trainerA.run();
    expect(stopped.stopReason).toBe('checkpoint-failed');
    expect(stopped.step).toBe(2);
    const failure = events.find((e) => e.type === 'checkpoint-failed') as Extract<TrainEvent, { type: 'checkpoint-failed' }>;
    expect(failure.step).toBe(2);
    expect(failure.bytesNeeded).toBeGreaterThan(1000);
    expect(failure.error.message).toMatch(/QuotaExceededError.*previous checkpoint is kept/);
    expect(storage.files.size).toBe(0);
    failWrites = false; // space freed: continue, nothing was lost
    const full = await trainerA.run();
    expect(full.stopReason).toBe('completed');
    expect(full.history.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(atStep4).not.toBeNull();
    const finalA = await readAll(trainerA.optimizer.params);

    // Resume the step-4 checkpoint on a fresh model.
    const resumeStorage = memoryCheckpointStorage(new Map([['checkpoint.safetensors', atStep4!]]));
    const modelB = await freshModel(engine);
    const trainerB = new Trainer(modelB, data, config);
    expect(await resumeFromCheckpoint(trainerB, resumeStorage)).toBe(true);
    expect(trainerB.step).toBe(4);
    const resumed = await trainerB.run();
    expect(lossBits(resumed.history)).toEqual(lossBits(full.history));
    expect(resumed.evals.map((e) => [e.step, e.loss])).toEqual(full.evals.map((e) => [e.step, e.loss]));
    const finalB = await readAll(trainerB.optimizer.params);
    finalA.forEach((p, i) => expect(bits(finalB[i])).toEqual(bits(p)));
    log.push(`resume from step 4: steps 5–6 ${resumed.history.slice(4).map((r) => r.loss).join(', ')} = ${full.history.slice(4).map((r) => r.loss).join(', ')}`);

    // A checkpoint is refused by another seed, other data and another model, before anything is uploaded.
    const snapshot = (await loadCheckpoint(resumeStorage))!.snapshot;
    const refuse = (trainer: Trainer, field: string) => {
      let error: unknown;
      try {
        trainer.restore(snapshot);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ResumeMismatchError);
      expect((error as ResumeMismatchError).field).toBe(field);
      trainer.dispose();
    };
    refuse(new Trainer(modelB, data, { ...config, seed: 6 }), 'seed');
    const otherData = packDataset({ examples: progressions(60, 32, 12, 2) }, { seqLen: 16, padId: 0, seed: 1 });
    refuse(new Trainer(modelB, otherData, config), 'data');
    const modelC = makeTrainable(await tinyLlama(engine, { vocab: 40 }), SUBSET);
    refuse(new Trainer(modelC, data, config), 'model');
    for (const t of [trainerA, trainerB]) t.dispose();
    for (const m of [modelA, modelB, modelC]) m.dispose();
  });

  it('a poisoned step (NaN loss and gradients) is skipped and reported with its number; training goes on; endless NaN stops', async () => {
    const engine = await testEngine();
    const base = await freshModel(engine);
    let poison: (trainingForward: number) => boolean = (n) => n === 3;
    let trainingForwards = 0;
    const nan = engine.keep(engine.full([], NaN));
    const poisoned: TrainableModel = Object.assign(Object.create(base) as TestModel, {
      setTrainingState(state: { training: boolean; seed: number }) {
        if (state.training) trainingForwards++;
        base.setTrainingState?.(state);
      },
      hidden(ids: Tensor) {
        const h = base.hidden(ids);
        return poison(trainingForwards) ? mul(h, nan) : h;
      },
    });
    const events: TrainEvent[] = [];
    const trainer = new Trainer(poisoned, { train: data.train }, { steps: 5, batchSize: 2, lr: 1e-2, seed: 4 }, { onEvent: (e) => events.push(e) });
    const states = async () => [...(await readAll(trainer.optimizer.params)), ...(await readAll(trainer.optimizer.states.flatMap((s) => [s.m, s.v])))];
    await trainer.run({ untilStep: 2 });
    const beforeStep3 = await states();
    const paused = await trainer.run({ untilStep: 3 });
    expect(paused.stopReason).toBe('until');
    const afterStep3 = await states();
    afterStep3.forEach((a, i) => expect(bits(a)).toEqual(bits(beforeStep3[i]))); // weights and moments untouched
    const result = await trainer.run();
    expect(result.stopReason).toBe('completed');
    expect(result.skippedSteps).toEqual([3]);
    const skip = events.find((e) => e.type === 'skip') as Extract<TrainEvent, { type: 'skip' }>;
    expect(skip.step).toBe(3);
    expect(skip.reason).toMatch(/the loss is NaN; the update was not applied/);
    expect(result.history.filter((r) => r.step !== 3).every((r) => Number.isFinite(r.loss) && !r.skipped)).toBe(true);
    expect(events.filter((e) => e.type === 'step').map((e) => (e as StepRecord).step)).toEqual([1, 2, 4, 5]);
    const final = await states();
    expect(bits(final[0])).not.toEqual(bits(afterStep3[0]));
    for (const array of final) expect(array.every(Number.isFinite)).toBe(true);
    trainer.dispose();

    // Every step poisoned: stops after maxConsecutiveSkips, nothing applied.
    poison = () => true;
    trainingForwards = 0;
    const initial = await readAll(base.trainableParameters());
    const stuck = new Trainer(poisoned, { train: data.train }, { steps: 10, batchSize: 2, lr: 1e-2, seed: 4, maxConsecutiveSkips: 2 }, { onEvent: (e) => events.push(e) });
    const diverged = await stuck.run();
    expect(diverged.stopReason).toBe('diverged');
    expect(diverged.skippedSteps).toEqual([1, 2, 3]);
    expect(events.some((e) => e.type === 'diverged' && e.step === 2)).toBe(true);
    (await readAll(base.trainableParameters())).forEach((p, i) => expect(bits(p)).toEqual(bits(initial[i])));
    stuck.dispose();
    nan.dispose();
    base.dispose();
  });

  it('from a dataset file: prompt/completion through the tokenizer, packing and training', async () => {
    const engine = await testEngine();
    const files = localDirectory(new URL('../fixtures/tokenizers/byte_bpe/', import.meta.url).pathname);
    const tokenizer = await loadTokenizer(files);
    const bytes = new Uint8Array(readFileSync(new URL('../fixtures/datasets/prompt_completion.jsonl', import.meta.url)));
    const dataset = prepareDataset(bytes, { tokenizer, maxTokens: 33, modelVocabSize: tokenizer.vocabSize, fileName: 'prompt_completion.jsonl' });
    expect(dataset.issueCount).toBe(8);
    const packed = packDataset(dataset, { seqLen: 32, padId: tokenizer.special.pad!.id, seed: 2, validationFraction: 0 });
    expect(packed.train.targetTokens).toBe(dataset.stats.targetTokens);
    const model = makeTrainable(await tinyLlama(engine, { vocab: tokenizer.vocabSize }), 'all');
    const trainer = new Trainer(model, packed, { steps: 6, batchSize: packed.train.rows, lr: 2e-2, schedule: 'constant', seed: 1 });
    const { history } = await trainer.run();
    log.push(`prompt/completion fixture, ${packed.train.rows} rows, ${packed.train.targetTokens} target tokens: losses ${history.map((r) => r.loss.toFixed(3)).join(' ')}`);
    expect(history[5].loss).toBeLessThan(history[0].loss - 1);
    trainer.dispose();
    model.dispose();
  });

  it('parameter groups: a LoRA+ ratio scales one group\'s learning rate; a NaN guard skips the whole update', async () => {
    const engine = await testEngine();
    const make = (name: string) => engine.keep(engine.tensor(new Float32Array([1, -2, 3, 0.5]), [4], { name, requiresGrad: true }));
    const a = make('x.lora_A.weight');
    const b = make('x.lora_B.weight');
    const groups = loraPlusGroups([a, b], (p) => p.name.includes('lora_B'), 16);
    expect(groups.map((g) => [g.name, g.params.map((p) => p.name), g.lrScale])).toEqual([
      ['lora_A', ['x.lora_A.weight'], 1],
      ['lora_B', ['x.lora_B.weight'], 16],
    ]);
    const optimizer = new AdamW(groups, { weightDecay: 0, maxGradNorm: 1 });
    const setGrads = (value: number) => {
      for (const p of [a, b]) p.grad = engine.keep(engine.tensor(new Float32Array([0.1, -0.2, value, 0.4]), [4]));
    };
    const start = await readAll([a, b]);
    setGrads(0.3);
    engine.scope(() => void optimizer.step(1e-3, engine.full([], 2.5)));
    const once = await readAll([a, b]);
    // Adam's first update is lr · g / (|g| + eps) per element: 1e-3 for A, 16e-3 for B, against the gradient's sign.
    expectClose(Array.from(once[0], (x, i) => x - start[0][i]), [-1e-3, 1e-3, -1e-3, -1e-3], 1e-4, 'group A update');
    expectClose(Array.from(once[1], (x, i) => x - start[1][i]), [-16e-3, 16e-3, -16e-3, -16e-3], 1e-4, 'group B update');
    setGrads(0.3);
    engine.scope(() => void optimizer.step(1e-3, engine.full([], NaN))); // a NaN loss: nothing changes
    const skipped = await readAll([a, b]);
    skipped.forEach((x, i) => expect(bits(x)).toEqual(bits(once[i])));
    setGrads(NaN); // a NaN gradient in one group skips both
    engine.scope(() => void optimizer.step(1e-3));
    (await readAll([a, b])).forEach((x, i) => expect(bits(x)).toEqual(bits(once[i])));
    optimizer.dispose();
    a.dispose();
    b.dispose();
  });

  it('settings, trainable tensors and data are checked before any GPU allocation', async () => {
    const engine = await testEngine();
    const model = await freshModel(engine);
    const before = engine.memory();
    const refuse = (build: () => unknown, field: string, says: RegExp) => {
      let error: unknown;
      try {
        build();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(HyperparameterError);
      expect((error as HyperparameterError).field).toBe(field);
      expect((error as Error).message).toMatch(says);
    };
    const config: TrainerConfig = { steps: 3, batchSize: 2, lr: 1e-3 };
    refuse(() => new Trainer(model, data, { ...config, lr: -1 }), 'lr', /\(0, 1\]/);
    refuse(() => new Trainer(model, data, { ...config, warmupSteps: 4 }), 'warmup', /longer than the 3 training steps/);
    refuse(() => new Trainer(model, data, { ...config, batchSize: 0 }), 'batch', /integer/);
    const long = packDataset({ examples: progressions(10, 32, 12, 1) }, { seqLen: 80, padId: 0, seed: 1 });
    refuse(() => new Trainer(model, long, config), 'seq', /80 is longer than the model's 64 positions/);
    const masked = packDataset({ examples: progressions(10, 32, 12, 1).map((e) => ({ ...e, targets: new Uint8Array(e.ids.length) })) }, { seqLen: 16, padId: 0, seed: 1 });
    refuse(() => new Trainer(model, masked, config), 'data', /every label is masked/);
    const frozen = model.parameters().get('model.layers.0.self_attn.q_proj.weight')!;
    frozen.requiresGrad = true;
    refuse(() => new Trainer(model, data, config), 'trainable', /frozen weight "model.layers.0.self_attn.q_proj.weight" requires a gradient/);
    frozen.requiresGrad = false;
    const head = model.parameters().get('lm_head.weight')!;
    head.requiresGrad = false;
    refuse(() => new Trainer(model, data, config), 'trainable', /does not require a gradient/);
    head.requiresGrad = true;
    expect(engine.memory()).toEqual(before);
    model.dispose();
  });
});
