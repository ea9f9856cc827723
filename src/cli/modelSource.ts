// The CLI's model SRC argument: an existing local folder, or else a hub repository id `org/name[@revision]` or
// a hub URL, downloaded into the cache (TABTUNE_CACHE, else ~/.cache/tabtune) from HF_ENDPOINT (else
// https://huggingface.co) with progress on stderr; a cached model loads without any request. Also the
// shared steps of the commands that run a model: a GPU, the weights (as peft/baseModel.ts routes them: floats,
// floats quantized on load with --quant nf4, or a pre-quantized bitsandbytes 4-bit checkpoint as stored), the
// tokenizer.

import { stat } from 'node:fs/promises';
import { Engine } from '../engine/engine.ts';
import { acquireNodeGpu } from '../gpu/node.ts';
import type { Gpu } from '../gpu/runtime.ts';
import { hubFiles, type DownloadProgress } from '../io/sources/hub.ts';
import { localDirectory } from '../io/sources/localDirectory.ts';
import type { ModelFiles } from '../io/sources/types.ts';
import { loadTokenizer, type Tokenizer } from '../io/tokenizer.ts';
import type { ModelConfig } from '../models/config.ts';
import type { CausalLM } from '../models/model.ts';
import { inspectBaseModel, loadBaseModel, readBaseModelConfig, type LoadedBaseModel } from '../peft/baseModel.ts';
import { checkTokenizerFitsModel } from '../train/generate.ts';
import { adapterKind, attachAdapterFolder } from './adapterOption.ts';
import { progress, UsageError } from './usage.ts';

/** Whether `spec` can only mean a path (so a missing one is "no such folder", not a hub lookup). */
function looksLikePath(spec: string): boolean {
  return (
    /^(\.{1,2}|~)(\/|\\|$)/.test(spec) ||
    spec.startsWith('/') ||
    spec.includes('\\') ||
    spec.endsWith('/') ||
    (!/^[a-z][a-z0-9+.-]*:/i.test(spec) && spec.split('@')[0].split('/').length > 2)
  );
}

/** Resolve SRC; a hub model is downloaded (config, tokenizer files, weights) before this returns. */
export async function resolveModelSource(command: string, spec: string): Promise<ModelFiles> {
  const stats = await stat(spec).catch(() => null);
  if (stats?.isDirectory()) return localDirectory(spec);
  if (stats) throw new UsageError(`${command}: --model ${spec} is a file; give the model's folder, a hub id (org/name[@revision]) or a URL`);
  if (looksLikePath(spec)) throw new UsageError(`${command}: --model ${spec}: no such folder`);
  const hub = await hubFiles(spec);
  await hub.downloadModel(downloadReporter(hub.name));
  return hub;
}

/** Progress lines: at most one a second, plus one per finished file. */
function downloadReporter(name: string): (event: DownloadProgress) => void {
  let lastLine = 0;
  const shown = new Set<string>();
  return (event) => {
    const finished = event.fileTotal !== null && event.fileBytes >= event.fileTotal;
    const now = Date.now();
    if (finished ? shown.has(event.file) : now - lastLine < 1000) return;
    if (finished) shown.add(event.file);
    lastLine = now;
    const percent = event.fileTotal ? ` ${Math.floor((100 * event.fileBytes) / event.fileTotal)}%` : '';
    const overall = event.totalBytes ? `, ${megabytes(event.doneBytes)} of ${megabytes(event.totalBytes)} in all` : '';
    progress(`${name}: [${event.fileIndex + 1}/${event.fileCount}] ${event.file}${percent}${overall}`);
  };
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export interface CliModel extends Omit<LoadedBaseModel, 'model'> {
  /** The model to run: the base, or the base with the --adapter attached. */
  model: CausalLM;
  files: ModelFiles;
  engine: Engine;
  gpu: Gpu;
  /** Present when asked for (the model's tokenizer.json is then required). */
  tokenizer: Tokenizer | null;
}

/** What is known before the GPU is taken. */
export interface PreparedSource {
  files: ModelFiles;
  config: ModelConfig;
  tokenizer: Tokenizer | null;
}

/**
 * Resolve SRC, read its config (and tokenizer, checked to fit the embedding), run `prepare` (checks of the
 * command's input against them), check the weights' headers, then take the GPU, load the weights, run `use`,
 * and release everything. So a user's mistake found in the config, the tokenizer, `prepare` or the headers is
 * reported without touching the GPU.
 */
export async function withModel<T>(
  command: string,
  spec: string,
  options: {
    tokenizer: boolean;
    prepare?: (source: PreparedSource) => void | Promise<void>;
    /** --adapter DIR: a PEFT LoRA or AdapterHub bottleneck adapter attached after loading. */
    adapter?: string;
    /** --quant nf4: the base's linear layers quantized while they load (QLoRA's base); a 4-bit checkpoint loads as stored. */
    quant?: 'nf4';
  },
  use: (loaded: CliModel) => Promise<T>,
): Promise<T> {
  if (options.adapter !== undefined) await adapterKind(command, options.adapter); // a missing folder fails before the GPU
  const files = await resolveModelSource(command, spec);
  const { config } = await readBaseModelConfig(files);
  const tokenizer = options.tokenizer ? await loadTokenizer(files) : null;
  if (tokenizer) checkTokenizerFitsModel(tokenizer, config.vocabSize);
  for (const warning of tokenizer?.warnings ?? []) progress(`warning: ${warning}`);
  await options.prepare?.({ files, config, tokenizer });
  const { prequantized } = await inspectBaseModel(files);
  if (prequantized !== null && options.quant !== undefined) {
    progress(`--quant ${options.quant}: ${files.name} is already 4-bit (bitsandbytes ${prequantized}); its weights load as stored`);
  }
  const gpu = await acquireNodeGpu();
  try {
    const engine = new Engine(gpu);
    const stored = prequantized === null ? '' : ` (linear layers 4-bit ${prequantized}, as stored)`;
    const onProgress = ({ loaded: done, total }: { loaded: number; total: number }) => {
      if (done === total) progress(`loaded ${total} tensors from ${files.name}${stored}`);
    };
    const quantize = options.quant === 'nf4' ? { quantType: 'nf4' as const, doubleQuant: true } : undefined;
    const loaded = await loadBaseModel(engine, files, { onProgress, quantize });
    for (const warning of loaded.warnings) progress(`warning: ${warning.message}`);
    let model = loaded.model;
    try {
      if (options.adapter !== undefined) model = await attachAdapterFolder(command, model, options.adapter, spec);
      return await use({ ...loaded, model, files, engine, gpu, tokenizer });
    } finally {
      model.dispose();
    }
  } finally {
    gpu.destroy();
  }
}
