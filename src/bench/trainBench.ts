// End-to-end training steps: LoRA, QLoRA and a bottleneck adapter on a model with a real checkpoint's shapes
// (SmolLM2-135M on a real GPU, a tiny Llama on a software adapter), through the same Trainer the app and the CLI
// use. Reported per method: ms per optimizer step, tokens per second, submits / passes / dispatches / readbacks
// per step, GPU bytes by category at the activation peak, and the model-FLOP utilisation against the device's
// measured matmul ceiling. With `--only profile`, one step per method is profiled kernel by kernel instead.
//
// FLOPs counted per step (the base is frozen, so no weight gradients for it): linears 2·T·P forward plus 2·T·P
// for the input gradients (P = linear weights incl. the LM head, T = tokens); causal attention 2·B·S²·C per layer
// forward and twice that backward. Adapter products are left out (under 1% at rank 8).

import type { Engine } from '../engine/engine.ts';
import type { KernelTime } from '../gpu/kernelProfile.ts';
import type { MemoryReport } from '../engine/memory.ts';
import { loadModel } from '../models/load.ts';
import type { CausalLM } from '../models/model.ts';
import { BottleneckModel, bottleneckConfig } from '../peft/bottleneckModel.ts';
import { attachLora } from '../peft/peftModel.ts';
import { quantizeLinears } from '../peft/qlora.ts';
import type { TokenizedExample } from '../train/data.ts';
import { packDataset } from '../train/packing.ts';
import { Trainer, type TrainingState } from '../train/trainer.ts';
import { AdapterTrainingView } from '../train/trainingView.ts';
import { SMOLLM2_135M_CONFIG, syntheticModelFiles, TINY_LLAMA_CONFIG } from './syntheticModel.ts';

export type BenchMethod = 'lora' | 'qlora' | 'adapter';

export interface TrainBenchResult {
  model: string;
  method: BenchMethod;
  batch: number;
  seqLen: number;
  trainableParameters: number;
  msPerStep: number;
  tokensPerSecond: number;
  perStep: { submits: number; passes: number; dispatches: number; readbacks: number };
  /** Live GPU bytes by category at the largest total seen (after a forward, activations alive). */
  peakMemory: MemoryReport;
  gflopsPerStep: number;
  achievedGflops: number;
  /** achievedGflops / the matmul ceiling passed in; null without one. */
  mfu: number | null;
}

interface BenchShape {
  name: string;
  config: Record<string, unknown>;
  batch: number;
  seqLen: number;
  warmupSteps: number;
  measuredSteps: number;
}

const REAL_GPU: BenchShape = { name: 'SmolLM2-135M shapes', config: SMOLLM2_135M_CONFIG, batch: 1, seqLen: 512, warmupSteps: 3, measuredSteps: 10 };
const SOFTWARE: BenchShape = { name: 'tiny Llama (2×64)', config: TINY_LLAMA_CONFIG, batch: 1, seqLen: 32, warmupSteps: 1, measuredSteps: 3 };

function randomExamples(count: number, length: number, vocab: number, seed: number): TokenizedExample[] {
  let s = seed;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % vocab);
  return Array.from({ length: count }, (_, i) => ({ line: i + 1, ids: Int32Array.from({ length }, next), targets: new Uint8Array(length).fill(1) }));
}

function stepFlops(model: CausalLM, batch: number, seqLen: number): number {
  const c = model.config;
  const tokens = batch * seqLen;
  const perLayer = c.hiddenSize * (c.numHeads * c.headDim) + 2 * c.hiddenSize * (c.numKvHeads * c.headDim) + c.numHeads * c.headDim * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize;
  const linear = c.numLayers * perLayer + c.hiddenSize * c.vocabSize;
  const attention = 2 * batch * seqLen * seqLen * c.numHeads * c.headDim * c.numLayers;
  return 4 * tokens * linear + 3 * attention;
}

/** Attach `method` and return its trainable tensors and how the trainer sets dropout on it. */
async function attach(model: CausalLM, method: BenchMethod) {
  if (method === 'adapter') {
    const bottleneck = BottleneckModel.attach(model);
    bottleneck.addAdapter('bench', bottleneckConfig('pfeiffer', { reductionFactor: 16 }), { seed: 0 });
    const setState = (state: TrainingState) => (state.training ? bottleneck.train(state.seed) : bottleneck.eval());
    return { params: [...bottleneck.trainableParameters().values()], setState };
  }
  if (method === 'qlora') await quantizeLinears(model, { quantType: 'nf4', doubleQuant: true });
  const peft = attachLora(model, { r: 8, alpha: 16, dropout: 0 }, { seed: 0 });
  const setState = (state: TrainingState) => peft.train(state.training);
  return { params: [...peft.trainableParameters().values()], setState };
}

/** A trainer for `steps` steps of `method` on `shape`'s synthetic model, handed to `use`, then freed with the model. */
async function withBenchTrainer<T>(
  engine: Engine,
  shape: BenchShape,
  method: BenchMethod,
  steps: number,
  use: (trainer: Trainer, view: AdapterTrainingView, model: CausalLM, params: readonly { size: number }[]) => Promise<T>,
): Promise<T> {
  const { model } = await loadModel(engine, syntheticModelFiles(shape.config, shape.name));
  try {
    const { params, setState } = await attach(model, method);
    const view = new AdapterTrainingView(model, params, setState);
    const examples = randomExamples(steps * shape.batch, shape.seqLen + 1, model.config.vocabSize, 7);
    const packed = packDataset({ examples }, { seqLen: shape.seqLen, padId: 0, seed: 0, validationExamples: 0 });
    const trainer = new Trainer(view, { train: packed.train }, { steps, batchSize: shape.batch, lr: 1e-4, schedule: 'constant', seed: 0 });
    try {
      return await use(trainer, view, model, params);
    } finally {
      trainer.dispose();
    }
  } finally {
    model.dispose();
  }
}

async function benchMethod(engine: Engine, shape: BenchShape, method: BenchMethod, ceilingGflops: number | null): Promise<TrainBenchResult> {
  return withBenchTrainer(engine, shape, method, shape.warmupSteps + shape.measuredSteps, async (trainer, view, model, params) => {
    await trainer.run({ untilStep: shape.warmupSteps }); // compiles pipelines, fills the buffer pool
    const before = { ...engine.gpu.counters };
    const started = performance.now();
    await trainer.run();
    const ms = (performance.now() - started) / shape.measuredSteps;
    const after = engine.gpu.counters;
    const per = (key: keyof typeof before) => (after[key] - before[key]) / shape.measuredSteps;
    const gflopsPerStep = stepFlops(model, shape.batch, shape.seqLen) / 1e9;
    const achievedGflops = gflopsPerStep / (ms / 1000);
    return {
      model: shape.name,
      method,
      batch: shape.batch,
      seqLen: shape.seqLen,
      trainableParameters: params.reduce((sum, p) => sum + p.size, 0),
      msPerStep: ms,
      tokensPerSecond: (shape.batch * shape.seqLen) / (ms / 1000),
      perStep: { submits: per('submits'), passes: per('passes'), dispatches: per('dispatches'), readbacks: per('readbacks') },
      peakMemory: view.peakMemory,
      gflopsPerStep,
      achievedGflops,
      mfu: ceilingGflops ? achievedGflops / ceilingGflops : null,
    };
  });
}

export interface TrainProfileResult {
  model: string;
  method: BenchMethod;
  batch: number;
  seqLen: number;
  /** The summed GPU time of the step's timed kernels (each in a pass of its own: a little above a plain step's). */
  kernelMs: number;
  kernels: KernelTime[];
  untimed: number;
}

/**
 * Where a training step's GPU time goes: one step after the warm-up, every dispatch timed (Gpu.profileKernels),
 * summed by kernel. Null without timestamp-query.
 */
async function profileMethod(engine: Engine, shape: BenchShape, method: BenchMethod): Promise<TrainProfileResult | null> {
  return withBenchTrainer(engine, shape, method, shape.warmupSteps + 1, async (trainer) => {
    await trainer.run({ untilStep: shape.warmupSteps });
    const profile = await engine.gpu.profileKernels(async () => void (await trainer.run()));
    if (!profile) return null;
    const kernelMs = profile.kernels.reduce((sum, k) => sum + k.ms, 0);
    return { model: shape.name, method, batch: shape.batch, seqLen: shape.seqLen, kernelMs, kernels: profile.kernels, untimed: profile.untimed };
  });
}

export async function runTrainProfiles(engine: Engine, options: { quick: boolean; log: (line: string) => void }): Promise<TrainProfileResult[]> {
  const shape = options.quick ? SOFTWARE : REAL_GPU;
  const results: TrainProfileResult[] = [];
  for (const method of ['lora', 'qlora'] as const) {
    const result = await profileMethod(engine, shape, method);
    if (!result) {
      options.log('profile: this adapter has no timestamp-query; nothing to profile');
      break;
    }
    const top = result.kernels[0];
    options.log(`profile ${method} on ${shape.name}: ${result.kernelMs.toFixed(1)} ms of kernels; largest ${top.kernel} ×${top.dispatches} ${top.ms.toFixed(1)} ms`);
    results.push(result);
  }
  return results;
}

export async function runTrainBenchmarks(
  engine: Engine,
  options: { quick: boolean; ceilingGflops: number | null; log: (line: string) => void },
): Promise<TrainBenchResult[]> {
  const shape = options.quick ? SOFTWARE : REAL_GPU;
  const results: TrainBenchResult[] = [];
  for (const method of ['lora', 'qlora', 'adapter'] as const) {
    const result = await benchMethod(engine, shape, method, options.ceilingGflops);
    options.log(`train ${method} on ${shape.name}: ${result.msPerStep.toFixed(1)} ms/step, ${result.tokensPerSecond.toFixed(0)} tokens/s, ${result.perStep.submits} submits/step`);
    results.push(result);
  }
  return results;
}
