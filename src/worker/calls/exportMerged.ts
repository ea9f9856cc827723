// The loaded model with its attached LoRA / QLoRA adapter merged into the weights, as a download: a zip of a
// Hugging Face model folder (config.json, model.safetensors, the tokenizer files; loadable by transformers and
// by tabtune's own loader) or one .onnx file (kept in engineState.lastOnnx for the playground).
//
// The merge (peft/mergedExport.ts) happens on the host, tensor by tensor, and leaves the model and its adapter
// exactly as they are, so training or generating after an export computes what it computed before.
//
// Bottleneck adapters are refused: their non-linearity sits between their two projections, so no linear layer
// can absorb them, and a "merged" folder holding the base plus separate adapter files would not be what
// transformers or ONNX Runtime runs. Their adapter download (AdapterHub files) goes with the base model instead.
// With no adapter attached the base model is exported as it is.

import type { ModelFiles } from '../../io/sources/types.ts';
import { writeSafetensors } from '../../io/safetensorsWriter.ts';
import { writeZip } from '../../io/zipFiles.ts';
import { exportOnnxFromWeights } from '../../export/exportOnnx.ts';
import { PROTOBUF_MAX_BYTES } from '../../export/onnxProto.ts';
import type { WeightPlan } from '../../models/weights.ts';
import { MERGED_WEIGHTS_FILE, mergedSideFiles, mergedTensors, mergedWeights } from '../../peft/mergedExport.ts';
import { engineState, requireLoaded, type CallContext } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import type { MergedDownloadFormat, Payload, Result } from '../protocol.ts';

export const BOTTLENECK_NOT_MERGEABLE =
  'bottleneck adapters cannot be merged into the model: their non-linearity sits between two projections, so no linear weight can absorb them. Download the adapter (AdapterHub files) and use it with the base model instead';

/** The zip of a Hugging Face folder: config.json, model.safetensors, then the tokenizer and generation files. */
export async function mergedFolderZip(weights: ReadonlyMap<string, Float32Array>, plan: WeightPlan, files: ModelFiles, zipName: string): Promise<Uint8Array> {
  const side = await mergedSideFiles(files);
  const model = writeSafetensors(mergedTensors(weights, plan), { format: 'pt' }, { fileName: MERGED_WEIGHTS_FILE });
  const entries: [string, Uint8Array][] = [['config.json', side.get('config.json')!], [MERGED_WEIGHTS_FILE, model]];
  for (const [name, bytes] of side) if (name !== 'config.json') entries.push([name, bytes]);
  return writeZip(entries, zipName);
}

const FORMATS: readonly MergedDownloadFormat[] = ['zip', 'onnx'];
/** The largest file of each format, checked against the f32 weights before anything is read back. */
const LIMITS: Record<MergedDownloadFormat, { bytes: number; what: string }> = {
  zip: { bytes: 0xffffffff, what: 'a zip archive without ZIP64 holds (4 GiB)' },
  onnx: { bytes: PROTOBUF_MAX_BYTES, what: 'one .onnx file holds (2 GiB; external data is not written)' },
};
/** Progress events per second, at most (the last one of a phase is always sent). */
const PROGRESS_INTERVAL_MS = 100;

export async function exportMergedCall(payload: Payload<'exportMerged'>, ctx: CallContext): Promise<Result<'exportMerged'>> {
  const current = requireLoaded();
  const { format } = payload;
  if (!FORMATS.includes(format)) throw new BadRequestError(`the merged model format must be ${FORMATS.join(' or ')}, got ${JSON.stringify(format)}`);
  const { adapted } = engineState;
  if (adapted?.bottleneck) throw new BadRequestError(`${BOTTLENECK_NOT_MERGEABLE}.`);
  const limit = LIMITS[format];
  if (current.plan.f32Bytes >= limit.bytes) {
    throw new BadRequestError(`the merged model takes ${(current.plan.f32Bytes / 2 ** 30).toFixed(2)} GiB in f32, more than ${limit.what}`);
  }
  const stem = adapted ? `tabtune-${adapted.summary.settings.method}-merged` : 'tabtune-base-model';
  const fileName = `${stem}.${format}`;

  let last = 0;
  const weights = await mergedWeights(current.model, current.plan, (tensor, done, total) => {
    const now = performance.now();
    if (now - last < PROGRESS_INTERVAL_MS && done !== total) return;
    last = now;
    ctx.emit({ type: 'exportProgress', phase: 'read', item: tensor, done, total });
  });
  ctx.emit({ type: 'exportProgress', phase: 'write', item: fileName, done: 0, total: 1 });
  let bytes: Uint8Array;
  if (format === 'zip') {
    bytes = await mergedFolderZip(weights, current.plan, current.files, fileName);
  } else {
    const metadata = new Map([['base_model', current.summary.name], ['adapter', adapted ? adapted.summary.settings.method : 'none']]);
    bytes = exportOnnxFromWeights(current.model.config, weights, { metadata });
    engineState.lastOnnx = { fileName, bytes };
  }
  ctx.emit({ type: 'exportProgress', phase: 'write', item: fileName, done: 1, total: 1 });
  return { fileName, bytes };
}
