// `tabtune export-onnx --model SRC [--adapter DIR] --out FILE`: the model (with a LoRA adapter merged in)
// as one ONNX file for ONNX Runtime Web or transformers.js: input_ids int64 [batch, sequence] → logits. The weights
// are merged on the host (src/peft/mergedExport.ts), so a 4-bit base is written dequantized, as the app does.

import { rename, rm, writeFile } from 'node:fs/promises';
import { exportOnnxFromWeights } from '../../export/exportOnnx.ts';
import { mergedWeights } from '../../peft/mergedExport.ts';
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
  return withModel('export-onnx', spec, { tokenizer: false, adapter: options.adapter }, async ({ model: loaded, config, plan }) => {
    const bytes = exportOnnxFromWeights(config, await mergedWeights(loaded, plan));
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
