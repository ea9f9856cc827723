// `tabtune train --model SRC --data FILE --method lora|qlora|adapter [...] --out DIR [--json]`: attach a
// parameter-efficient adapter to a frozen model, train it on a dataset (src/train), and write the adapter files to
// DIR (PEFT's adapter_config.json + adapter_model.safetensors for LoRA and QLoRA, AdapterHub's adapter_config.json +
// adapter.safetensors for bottleneck adapters) and a checkpoint (DIR/checkpoint.safetensors) every --save-every steps
// and at the end. `--resume DIR` continues from DIR's checkpoint; a larger --steps extends the run (the schedule is
// then laid over the new total). Every option is checked, and the dataset read and tokenized, before the GPU is taken.

import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Engine } from '../../engine/engine.ts';
import type { Tensor } from '../../engine/tensor.ts';
import { acquireNodeGpu } from '../../gpu/node.ts';
import { loadChatTemplate } from '../../io/chatTemplate.ts';
import { quoteName } from '../../io/errors.ts';
import { loadTokenizer } from '../../io/tokenizer.ts';
import type { ModelConfig } from '../../models/config.ts';
import { BottleneckError } from '../../peft/bottleneck.ts';
import { exportBottleneckAdapter } from '../../peft/bottleneckFiles.ts';
import { BottleneckModel, bottleneckConfig } from '../../peft/bottleneckModel.ts';
import { LoraConfigError } from '../../peft/loraLinear.ts';
import { exportLoraAdapter } from '../../peft/peftFiles.ts';
import { attachLora } from '../../peft/peftModel.ts';
import { inspectBaseModel, loadBaseModel } from '../../peft/baseModel.ts';
import { ALL_LINEAR, TargetSelectionError } from '../../peft/targets.ts';
import { checkpointSaver, loadCheckpoint, type LoadedCheckpoint } from '../../train/checkpoint.ts';
import { parseDataset, requireUsable, tokenizeDataset } from '../../train/data.ts';
import { checkTokenizerFitsModel } from '../../train/generate.ts';
import { nodeCheckpointStorage } from '../../train/nodeCheckpointStorage.ts';
import { packDataset } from '../../train/packing.ts';
import { HyperparameterError, SCHEDULE_KINDS, type ScheduleKind } from '../../train/schedule.ts';
import { resolveTrainerConfig, ResumeMismatchError, Trainer, type TrainerConfig, type TrainerSnapshot, type TrainingState } from '../../train/trainer.ts';
import { resolveModelSource } from '../modelSource.ts';
import { parseOptions, progress, requireOption, UsageError } from '../usage.ts';
import { AdapterTrainingView } from '../../train/trainingView.ts';

export const TRAIN_METHODS = ['lora', 'qlora', 'adapter'] as const;
export type TrainMethod = (typeof TRAIN_METHODS)[number];
const PLACEMENTS = ['pfeiffer', 'houlsby'] as const;
const MAX_DATA_BYTES = 512 * 1024 * 1024;
const ADAPTER_NAME = 'default';

/** A number option (or its default); anything that is not a finite number is refused by name. */
function numberOption(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(parsed)) throw new UsageError(`train: --${name} must be a number, got '${value}'`);
  return parsed;
}

function integerIn(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`train: --${name} must be an integer${max === Number.MAX_SAFE_INTEGER ? ` ≥ ${min}` : ` in [${min}, ${max}]`}, got ${value}`);
  }
  return value;
}

/** HyperparameterError fields are the options' long names, except these. */
const FIELD_TO_OPTION: Record<string, string> = { batch: 'batch', minLrRatio: 'lr', config: 'steps' };

/** Settings as a TrainerConfig, checked (UsageError naming the option) without touching the GPU. */
function checkedTrainerConfig(config: TrainerConfig): TrainerConfig {
  try {
    resolveTrainerConfig(config);
  } catch (error) {
    if (error instanceof HyperparameterError) {
      const option = FIELD_TO_OPTION[error.field] ?? error.field;
      throw new UsageError(`train: --${option} ${error.message.slice(error.field.length + 2)}`);
    }
    throw error;
  }
  return config;
}

/** Adapter errors from src/peft are plain Errors: turn them into one-line user errors. */
function asUsageError(error: unknown, what: string): unknown {
  if (error instanceof LoraConfigError) return new UsageError(`train: ${what}: ${error.message} (${error.field})`);
  if (error instanceof TargetSelectionError || error instanceof BottleneckError) return new UsageError(`train: ${what}: ${error.message}`);
  return error;
}

/** Write files into `dir`, each beside its target first and then renamed over it. */
export async function writeFilesAtomically(dir: string, files: ReadonlyMap<string, Uint8Array>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of files) {
    const target = join(dir, name);
    const partial = join(dir, `.${name}.partial-${process.pid}`);
    try {
      await writeFile(partial, bytes);
      await rename(partial, target);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
  }
}

async function readDataFile(path: string): Promise<Uint8Array> {
  const stats = await stat(path).catch(() => null);
  if (!stats) throw new UsageError(`train: --data ${quoteName(path)}: no such file`);
  if (!stats.isFile()) throw new UsageError(`train: --data ${quoteName(path)} is not a file`);
  if (stats.size > MAX_DATA_BYTES) throw new UsageError(`train: --data ${quoteName(path)} is ${stats.size} bytes, over the ${MAX_DATA_BYTES}-byte cap`);
  return new Uint8Array(await readFile(path));
}

/** Refuse a checkpoint of another model or method before the GPU is taken (the trainer checks the rest). */
function checkResumeFits(dir: string, loaded: LoadedCheckpoint, config: ModelConfig, method: TrainMethod): void {
  const saved = loaded.snapshot.model;
  const ours = { modelType: config.modelType, vocabSize: config.vocabSize, hiddenSize: config.hiddenSize, numLayers: config.numLayers, numHeads: config.numHeads, numKvHeads: config.numKvHeads };
  for (const key of Object.keys(ours) as (keyof typeof ours)[]) {
    if (saved[key] !== ours[key]) {
      const error = new ResumeMismatchError('model', `the checkpoint is for another model (${key} ${String(saved[key])}, this model has ${String(ours[key])})`);
      throw new UsageError(`train: --resume ${quoteName(dir)}: ${error.name}: ${error.message}`);
    }
  }
  const savedMethod = loaded.extraMetadata.method;
  if (savedMethod !== undefined && savedMethod !== method) {
    const error = new ResumeMismatchError('method', `the checkpoint was trained with --method ${savedMethod}, this run has ${method}`);
    throw new UsageError(`train: --resume ${quoteName(dir)}: ${error.name}: ${error.message}`);
  }
}

export async function trainCommand(args: string[]) {
  const o = parseOptions('train', args, {
    model: { type: 'string' },
    data: { type: 'string' },
    method: { type: 'string' },
    r: { type: 'string' },
    alpha: { type: 'string' },
    dropout: { type: 'string' },
    rslora: { type: 'boolean', default: false },
    targets: { type: 'string' },
    'reduction-factor': { type: 'string' },
    placement: { type: 'string' },
    steps: { type: 'string' },
    lr: { type: 'string' },
    batch: { type: 'string' },
    seq: { type: 'string' },
    'grad-accum': { type: 'string' },
    warmup: { type: 'string' },
    schedule: { type: 'string' },
    seed: { type: 'string' },
    'eval-every': { type: 'string' },
    'save-every': { type: 'string' },
    resume: { type: 'string' },
    out: { type: 'string' },
  });
  // Every option first: a mistake exits before anything is read or the GPU is taken.
  const method = requireOption('train', 'method', o.method) as TrainMethod;
  if (!TRAIN_METHODS.includes(method)) throw new UsageError(`train: --method must be one of ${TRAIN_METHODS.join(', ')}, got '${o.method}'`);
  const spec = requireOption('train', 'model', o.model);
  const dataPath = requireOption('train', 'data', o.data);
  const out = requireOption('train', 'out', o.out);
  const r = integerIn('r', numberOption('r', o.r, 8), 1);
  const alpha = numberOption('alpha', o.alpha, 16);
  if (alpha === 0) throw new UsageError('train: --alpha must be a number other than 0');
  const dropout = numberOption('dropout', o.dropout, 0);
  if (!(dropout >= 0 && dropout < 1)) throw new UsageError(`train: --dropout must be in [0, 1), got ${dropout}`);
  const targetText = o.targets ?? null;
  const targets = targetText === null ? null : targetText === ALL_LINEAR ? ALL_LINEAR : targetText.split(',').map((t) => t.trim());
  if (Array.isArray(targets) && targets.some((t) => t === '')) throw new UsageError(`train: --targets must be a comma-separated list of module names or ${ALL_LINEAR}, got '${targetText}'`);
  const reductionFactor = integerIn('reduction-factor', numberOption('reduction-factor', o['reduction-factor'], 16), 1);
  const placement = o.placement ?? 'pfeiffer';
  if (!(PLACEMENTS as readonly string[]).includes(placement)) throw new UsageError(`train: --placement must be pfeiffer or houlsby, got '${placement}'`);
  if (method !== 'adapter' && (o['reduction-factor'] !== undefined || o.placement !== undefined)) throw new UsageError(`train: --reduction-factor and --placement are for --method adapter`);
  if (method === 'adapter' && (o.r !== undefined || o.alpha !== undefined || o.rslora || o.targets !== undefined)) throw new UsageError('train: --r, --alpha, --rslora and --targets are for --method lora or qlora');
  const steps = integerIn('steps', numberOption('steps', o.steps, 50), 1);
  const lr = numberOption('lr', o.lr, 2e-4);
  const warmup = numberOption('warmup', o.warmup, 0);
  if (warmup > 0 && warmup >= steps) throw new UsageError(`train: --warmup ${warmup} must be shorter than the ${steps} training steps`);
  const schedule = (o.schedule ?? 'constant') as ScheduleKind;
  if (!SCHEDULE_KINDS.includes(schedule)) throw new UsageError(`train: --schedule must be one of ${SCHEDULE_KINDS.join(', ')}, got '${o.schedule}'`);
  const seq = integerIn('seq', numberOption('seq', o.seq, 128), 1);
  const seed = numberOption('seed', o.seed, 0);
  const evalEvery = integerIn('eval-every', numberOption('eval-every', o['eval-every'], 10), 0);
  const saveEvery = integerIn('save-every', numberOption('save-every', o['save-every'], 0), 0);
  const trainerConfig = checkedTrainerConfig({
    steps,
    batchSize: numberOption('batch', o.batch, 4),
    gradAccum: numberOption('grad-accum', o['grad-accum'], 1),
    lr,
    schedule,
    warmupSteps: warmup,
    evalEvery,
    evalAtStart: true,
    seed,
  });

  // The model's config and tokenizer, the dataset, and a checkpoint to resume: still no GPU.
  const content = await readDataFile(dataPath);
  const files = await resolveModelSource('train', spec);
  // The config and every weight header are checked before the GPU is taken; a checkpoint stored in 4-bit has
  // no float weights, so only QLoRA trains on it.
  const { config, prequantized } = await inspectBaseModel(files);
  if (prequantized !== null && method !== 'qlora') {
    throw new UsageError(`train: ${files.name ?? spec} is stored in 4-bit (bitsandbytes ${prequantized}), so only --method qlora trains on it; use its unquantized version for --method ${method}`);
  }
  if (seq > config.maxPositions) throw new UsageError(`train: --seq ${seq} is longer than the model's ${config.maxPositions} positions`);
  const tokenizer = await loadTokenizer(files);
  checkTokenizerFitsModel(tokenizer, config.vocabSize);
  for (const warning of tokenizer.warnings) progress(`warning: ${warning}`);
  const parsed = parseDataset(content, { fileName: dataPath });
  const chatTemplate = parsed.format === 'chat' ? await loadChatTemplate(files, tokenizer) : null;
  const dataset = tokenizeDataset(parsed, { tokenizer, chatTemplate, maxTokens: seq + 1, modelVocabSize: config.vocabSize });
  requireUsable(dataset);
  if (dataset.issueCount > 0) progress(`warning: ${dataset.issueCount} bad line${dataset.issueCount === 1 ? '' : 's'} skipped: ${dataset.issues.map((i) => i.message).join('; ')}`);
  const padId = tokenizer.special.pad?.id ?? tokenizer.special.eos?.id ?? 0;
  const packed = packDataset(dataset, { seqLen: seq, padId, seed });
  progress(`data: ${dataset.stats.examples} ${dataset.format} examples, ${packed.train.rows} training rows of ${seq} tokens, ${packed.validation?.rows ?? 0} validation rows`);
  let resumed: LoadedCheckpoint | null = null;
  if (o.resume !== undefined) {
    resumed = await loadCheckpoint(nodeCheckpointStorage(o.resume));
    if (!resumed) throw new UsageError(`train: --resume ${quoteName(o.resume)} holds no checkpoint`);
    checkResumeFits(o.resume, resumed, config, method);
  }

  const gpu = await acquireNodeGpu();
  try {
    const engine = new Engine(gpu);
    const onProgress = ({ loaded, total }: { loaded: number; total: number }) => {
      const storage = prequantized !== null ? ` (linear layers 4-bit ${prequantized}, as stored)` : method === 'qlora' ? ' (linear layers in NF4)' : '';
      if (loaded === total) progress(`loaded ${total} tensors from ${files.name}${storage}`);
    };
    const quantize = method === 'qlora' ? ({ quantType: 'nf4', doubleQuant: true } as const) : undefined;
    const loaded = await loadBaseModel(engine, files, { onProgress, quantize });
    const base = loaded.model;
    try {
      let params: Tensor[];
      let setState: (state: TrainingState) => void;
      let exportFiles: () => Promise<Map<string, Uint8Array>>;
      let adapterSummary: Record<string, unknown>;
      if (method === 'adapter') {
        let adapted: BottleneckModel;
        try {
          adapted = BottleneckModel.attach(base);
          adapted.addAdapter(ADAPTER_NAME, bottleneckConfig(placement, { reductionFactor, dropout }), { seed });
        } catch (error) {
          throw asUsageError(error, 'the adapter');
        }
        params = [...adapted.trainableParameters().values()];
        setState = (state) => (state.training ? adapted.train(state.seed) : adapted.eval());
        exportFiles = () => exportBottleneckAdapter(adapted, { modelName: files.name ?? spec });
        adapterSummary = { placement, reductionFactor };
      } else {
        let peft;
        try {
          peft = attachLora(base, { r, alpha, dropout, useRslora: o.rslora ?? false, targetModules: targets }, { seed });
        } catch (error) {
          throw asUsageError(error, 'the LoRA adapter');
        }
        const runtime = peft.runtime;
        params = [...peft.trainableParameters().values()];
        setState = (state) => {
          peft.train(state.training);
          runtime.seed = state.seed;
          runtime.offset = 0;
        };
        exportFiles = () => exportLoraAdapter(peft, { baseModelNameOrPath: spec });
        adapterSummary = { r, alpha, dropout, rslora: o.rslora ?? false, targets: peft.adapterConfig().paths.length };
      }
      const trainableParameters = params.reduce((sum, p) => sum + p.size, 0);
      const view = new AdapterTrainingView(base, params, setState);
      const saver = checkpointSaver(nodeCheckpointStorage(out), {
        every: saveEvery > 0 ? saveEvery : steps,
        extraMetadata: { method, model: spec, adapter: JSON.stringify(adapterSummary) },
      });
      const trainer = new Trainer(view, packed, trainerConfig, {
        checkpoint: saver,
        onEvent: (event) => {
          view.sample();
          if (event.type === 'step') {
            progress(`step ${event.step}/${steps} loss ${event.loss.toFixed(4)} grad-norm ${event.gradNorm.toFixed(3)} lr ${event.lr.toExponential(2)} ${Math.round(event.tokensPerSecond)} tok/s`);
          } else if (event.type === 'skip') progress(`step ${event.step}/${steps} skipped: ${event.reason}`);
          else if (event.type === 'eval') progress(`eval after step ${event.step}: loss ${event.loss.toFixed(4)} perplexity ${event.perplexity.toFixed(3)}`);
          else if (event.type === 'diverged') progress(`stopping: ${event.consecutiveSkips} steps in a row were skipped (step ${event.step})`);
          else if (event.type === 'checkpoint') progress(`checkpoint at step ${event.step} (${event.bytes} bytes) in ${out}`);
          else if (event.type === 'checkpoint-failed') progress(`checkpoint at step ${event.step} failed: ${event.error.message}`);
        },
      });
      try {
        if (resumed) {
          let snapshot: TrainerSnapshot = resumed.snapshot;
          if (snapshot.config.steps !== steps && snapshot.progress.step <= steps) {
            progress(`resuming at step ${snapshot.progress.step}: the run goes on to ${steps} steps (it was set to ${snapshot.config.steps}; the schedule now spans ${steps})`);
            snapshot = { ...snapshot, config: { ...snapshot.config, steps } };
          } else progress(`resuming at step ${snapshot.progress.step} of ${steps}`);
          try {
            trainer.restore(snapshot);
          } catch (error) {
            if (error instanceof ResumeMismatchError) throw new UsageError(`train: --resume ${quoteName(o.resume!)}: ${error.name}: ${error.message}`);
            throw error;
          }
        }
        const result = await trainer.run();
        if (result.stopReason === 'checkpoint-failed') throw result.checkpointError!;
        const adapterFiles = await exportFiles();
        await writeFilesAtomically(out, adapterFiles);
        const applied = result.history.filter((h) => !h.skipped);
        const evals = result.evals;
        const json = {
          method,
          steps: result.step,
          stopReason: result.stopReason,
          skippedSteps: result.skippedSteps,
          firstLoss: applied[0]?.loss ?? null,
          lastLoss: applied[applied.length - 1]?.loss ?? null,
          valLossBefore: evals.find((e) => e.step === 0)?.loss ?? null,
          valLossAfter: evals.length > 0 ? evals[evals.length - 1].loss : null,
          trainableParameters,
          tokensPerSecond: result.tokensPerSecond,
          peakGpuBytes: view.peakBytes,
          out,
          files: [...adapterFiles.keys(), 'checkpoint.safetensors'],
        };
        const fmt = (v: number | null) => (v === null ? 'n/a' : v.toFixed(4));
        const text = [
          `trained ${method} for ${result.step} steps (${result.stopReason}); ${trainableParameters} trainable parameters`,
          `loss ${fmt(json.firstLoss)} → ${fmt(json.lastLoss)}; validation loss ${fmt(json.valLossBefore)} → ${fmt(json.valLossAfter)}`,
          `${Math.round(result.tokensPerSecond)} tokens/s, peak GPU memory ${(view.peakBytes / 1e6).toFixed(1)} MB; adapter files in ${out}`,
        ].join('\n');
        return { json, text };
      } finally {
        trainer.dispose();
      }
    } finally {
      base.dispose();
    }
  } finally {
    gpu.destroy();
  }
}
