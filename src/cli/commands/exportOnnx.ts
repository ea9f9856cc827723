// `tabtune export-onnx --model SRC [--adapter DIR] --out FILE`: the model (with a LoRA adapter merged in)
// as one ONNX file for ONNX Runtime Web or transformers.js: input_ids int64 [batch, sequence] → logits.

import { rename, rm, writeFile } from 'node:fs/promises';
import { exportOnnx } from '../../export/exportOnnx.ts';
import { PeftModel } from '../../peft/peftModel.ts';
import { adapterKind } from '../adapterOption.ts';
import { withModel } from '../modelSource.ts';
import { parseOptions, progress, requireOption, UsageError } from '../usage.ts';

export async function exportOnnxCommand(args: string[]) {
  const options = parseOptions('export-onnx', args, { model: { type: 'string' }, adapter: { type: 'string' }, out: { type: 'string' } });
  const spec = requireOption('export-onnx', 'model', options.model);
  const out = requireOption('export-onnx', 'out', options.out);
  if (options.adapter !== undefined && (await adapterKind('export-onnx', options.adapter)) === 'bottleneck') {
    throw new UsageError('export-onnx: bottleneck adapters cannot be merged into the weights, so they cannot be exported; only LoRA adapters merge');
  }
  return withModel('export-onnx', spec, { tokenizer: false, adapter: options.adapter }, async ({ model: loaded, config }) => {
    const model = loaded instanceof PeftModel ? await loaded.mergeAndUnload() : loaded;
    const bytes = await exportOnnx(model);
    // Beside the target, then renamed over it: an interrupted export never leaves a half-written file.
    const partial = `${out}.partial-${process.pid}`;
    try {
      await writeFile(partial, bytes);
      await rename(partial, out);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
    progress(`wrote ${out}`);
    const json = { out, architecture: config.modelType, bytes: bytes.byteLength, merged: loaded instanceof PeftModel };
    return { json, text: `wrote ${out} (${bytes.byteLength} bytes, ${config.modelType}${json.merged ? ', LoRA merged' : ''})` };
  });
}
