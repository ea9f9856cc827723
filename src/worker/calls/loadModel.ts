// Loading a model: open its source (the demo folder, the hub, picked files), check the config against the device
// before downloading the weights, fetch, check every header, then replace the loaded model and upload tensor by
// tensor, with rate-limited progress events throughout.

import { loadChatTemplate } from '../../io/chatTemplate.ts';
import { browserFiles } from '../../io/sources/browserFiles.ts';
import { defaultCache } from '../../io/sources/cache.ts';
import { hubFiles } from '../../io/sources/hub.ts';
import type { ModelFiles } from '../../io/sources/types.ts';
import { loadTokenizer } from '../../io/tokenizer.ts';
import { inspectBaseModel, loadBaseModel, readBaseModelConfig } from '../../peft/baseModel.ts';
import { checkTokenizerFitsModel } from '../../train/generate.ts';
import { disposeLoaded, engineState, requireDevice, type CallContext } from '../engineState.ts';
import { BadRequestError, DoesNotFitError } from '../failures.ts';
import { estimateInference } from '../memoryEstimate.ts';
import type { LoadPhase, ModelSource, ModelSummary, Payload } from '../protocol.ts';
import { staticFolder } from '../staticFolder.ts';
import { capacity } from './device.ts';
import { QLORA_QUANTIZATION } from './method.ts';

/** The files of the demo folder (public/demo/). */
const DEMO_FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
/** Progress events per second, at most (the last one of a phase is always sent). */
const PROGRESS_INTERVAL_MS = 100;

/** Rate-limited progress for one phase. */
function progressReporter(ctx: CallContext, phase: LoadPhase, unit: 'bytes' | 'tensors') {
  let last = 0;
  return (item: string, done: number, total: number | null) => {
    const now = performance.now();
    if (now - last < PROGRESS_INTERVAL_MS && done !== total) return;
    last = now;
    ctx.emit({ type: 'loadProgress', phase, item, done, total, unit });
  };
}

/** The files of a source, and how to download what a load needs (hub and demo fetch; picked files are local). */
async function openSource(source: ModelSource, ctx: CallContext): Promise<{ files: ModelFiles; name: string; fetchAll: () => Promise<void> }> {
  const fetchProgress = progressReporter(ctx, 'fetch', 'bytes');
  switch (source.kind) {
    case 'demo': {
      const files = staticFolder(source.baseUrl, DEMO_FILES, { name: 'the demo model', signal: ctx.signal, onProgress: fetchProgress });
      return { files, name: 'Demo model', fetchAll: async () => void (await files.open('model.safetensors')) };
    }
    case 'hub': {
      const files = await hubFiles(source.spec, { endpoint: source.endpoint, cache: await defaultCache(), signal: ctx.signal });
      return {
        files,
        name: files.name,
        fetchAll: async () => {
          await files.downloadModel((p) => fetchProgress(p.file, p.doneBytes, p.totalBytes));
        },
      };
    }
    case 'files': {
      if (!Array.isArray(source.files) || source.files.length === 0) throw new BadRequestError('no files were picked');
      const files = browserFiles(source.files);
      return { files, name: files.name, fetchAll: async () => {} };
    }
  }
}

export async function loadModelCall(payload: Payload<'loadModel'>, ctx: CallContext): Promise<ModelSummary> {
  const { engine } = requireDevice();
  const { files, name, fetchAll } = await openSource(payload.source, ctx);

  // The config alone decides whether the model can fit: check before downloading the weights.
  ctx.emit({ type: 'loadProgress', phase: 'check', item: 'config.json', done: 0, total: null, unit: 'bytes' });
  const { config, declaresQuantization } = await readBaseModelConfig(files);
  const asked = payload.weights ?? 'f32';
  if (asked !== 'f32' && asked !== 'nf4') throw new BadRequestError(`the weights must be f32 or nf4, got ${JSON.stringify(asked)}`);
  // Picked files are at hand: checked now, their headers also show a 4-bit checkpoint that config.json does not
  // declare (`tabtune quantize` output beside the original config).
  const { limits } = engine.gpu.info;
  const picked = payload.source.kind === 'files' ? await inspectBaseModel(files, limits) : null;
  const fourBit = declaresQuantization || (picked !== null && picked.prequantized !== null);
  const estimate = estimateInference(config, fourBit ? 'nf4' : asked, capacity());
  ctx.emit({ type: 'estimate', estimate });
  if (estimate.refusal !== null && !(payload.ignoreBudget && estimate.refusalOverridable)) throw new DoesNotFitError(estimate);

  await fetchAll();
  ctx.signal.throwIfAborted();
  ctx.emit({ type: 'loadProgress', phase: 'tokenizer', item: 'tokenizer.json', done: 0, total: null, unit: 'bytes' });
  const tokenizer = await loadTokenizer(files);
  checkTokenizerFitsModel(tokenizer, config.vocabSize);
  const chatTemplate = await loadChatTemplate(files, tokenizer);

  // Every header is checked against the config and the device before the old model goes (picked files were, above):
  // a load that fails on bad files leaves the loaded one in place.
  if (picked === null) await inspectBaseModel(files, limits);
  ctx.signal.throwIfAborted();
  disposeLoaded();
  const uploadProgress = progressReporter(ctx, 'upload', 'tensors');
  const options = { signal: ctx.signal, onProgress: (p: { tensor: string; loaded: number; total: number }) => uploadProgress(p.tensor, p.loaded, p.total) };
  // NF4: each block linear is quantized on the GPU as it streams in, the same codes QLoRA's attach would make.
  const quantize = asked === 'nf4' ? QLORA_QUANTIZATION : undefined;
  const before = engine.memory();
  const { model, plan, weights, prequantized, warnings } = await loadBaseModel(engine, files, { ...options, quantize });
  // What the weights hold on the GPU, by the engine's own accounting (a 4-bit checkpoint's state as it was stored).
  const after = engine.memory();
  const gpuWeightBytes = after.frozenWeights - before.frozenWeights + (after.quantState - before.quantState);
  const summary: ModelSummary = {
    name,
    sourceKind: payload.source.kind,
    modelType: config.modelType,
    family: config.family,
    parameterCount: plan.parameterCount,
    layers: config.numLayers,
    hiddenSize: config.hiddenSize,
    heads: config.numHeads,
    kvHeads: config.numKvHeads,
    headDim: config.headDim,
    intermediateSize: config.intermediateSize,
    vocabSize: config.vocabSize,
    maxPositions: config.maxPositions,
    tiedEmbeddings: config.tieWordEmbeddings,
    storedDtype: config.dtype,
    weights,
    prequantized: prequantized !== null,
    gpuWeightBytes,
    tokenizer: {
      type: tokenizer.modelType,
      vocabSize: tokenizer.vocabSize,
      eos: tokenizer.special.eos?.text ?? null,
      bos: tokenizer.special.bos?.text ?? null,
    },
    hasChatTemplate: chatTemplate !== null,
    warnings: [...warnings.map((w) => w.message), ...tokenizer.warnings],
  };
  engineState.loaded = { model, tokenizer, chatTemplate, summary, quantized: weights !== 'f32', files, plan };
  return summary;
}
