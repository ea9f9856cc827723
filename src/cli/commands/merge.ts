// `tabtune merge --model SRC --adapter DIR --out DIR [--quant nf4] [--json]`: fold a PEFT LoRA adapter into its
// base and write a Hugging Face model directory (config.json, tokenizer files, model.safetensors in f32 under the
// base checkpoint's own tensor names; src/peft/mergedExport.ts). With --quant nf4 the base is quantized on load, as
// QLoRA trained it, and the adapter is merged into the dequantized weights: the function the adapter was trained
// against. A pre-quantized bitsandbytes 4-bit base loads as stored (with or without --quant) and is merged the same
// way, dequant(W) + s·B·A, into an f32 folder without quantization_config (--json's `quant`: the 4-bit type the
// base was held in, null for f32). AdapterHub bottleneck adapters are refused: their non-linearity cannot be
// folded into a weight.

import { Engine } from '../../engine/engine.ts';
import { acquireNodeGpu } from '../../gpu/node.ts';
import { quoteName } from '../../io/errors.ts';
import { encodeSafetensors } from '../../io/safetensorsWriter.ts';
import { localDirectory } from '../../io/sources/localDirectory.ts';
import { LoraConfigError } from '../../peft/loraLinear.ts';
import { MERGED_WEIGHTS_FILE, mergedSideFiles, mergedTensors, mergedWeights } from '../../peft/mergedExport.ts';
import { importLoraAdapter } from '../../peft/peftFiles.ts';
import { inspectBaseModel, loadBaseModel } from '../../peft/baseModel.ts';
import { adapterKind } from '../adapterOption.ts';
import { resolveModelSource } from '../modelSource.ts';
import { parseOptions, progress, requireOption, UsageError } from '../usage.ts';
import { writeFilesAtomically } from './train.ts';

export async function mergeCommand(args: string[]) {
  const o = parseOptions('merge', args, { model: { type: 'string' }, adapter: { type: 'string' }, out: { type: 'string' }, quant: { type: 'string' } });
  const spec = requireOption('merge', 'model', o.model);
  const adapterDir = requireOption('merge', 'adapter', o.adapter);
  const out = requireOption('merge', 'out', o.out);
  if (o.quant !== undefined && o.quant !== 'nf4') throw new UsageError(`merge: --quant must be nf4, got '${o.quant}'`);
  if ((await adapterKind('merge', adapterDir)) === 'bottleneck') {
    throw new UsageError(
      `merge: --adapter ${quoteName(adapterDir)} is an AdapterHub bottleneck adapter, which cannot be merged into the weights (its non-linearity has no linear form); only LoRA adapters merge`,
    );
  }
  const files = await resolveModelSource('merge', spec);
  // The config and every header are checked before the GPU is taken.
  const { prequantized } = await inspectBaseModel(files);
  if (prequantized !== null && o.quant !== undefined) {
    progress(`--quant ${o.quant}: ${files.name} is already 4-bit (bitsandbytes ${prequantized}); its weights load as stored`);
  }
  const side = await mergedSideFiles(files);

  const gpu = await acquireNodeGpu();
  try {
    const engine = new Engine(gpu);
    const loaded = await loadBaseModel(engine, files, { quantize: o.quant === 'nf4' ? { quantType: 'nf4', doubleQuant: true } : undefined });
    progress(`loaded ${loaded.plan.tensors.length} tensors from ${files.name}${prequantized === null ? '' : ` (linear layers 4-bit ${prequantized}, as stored)`}`);
    const model = loaded.model;
    try {
      let imported;
      try {
        imported = await importLoraAdapter(model, localDirectory(adapterDir), { baseModelName: spec });
      } catch (error) {
        if (error instanceof LoraConfigError) throw new UsageError(`merge: --adapter ${quoteName(adapterDir)}: ${error.message}`);
        throw error;
      }
      for (const warning of imported.warnings) progress(`warning: ${warning}`);
      const merged = imported.peft.adapterConfig().paths.length;
      const tensors = mergedTensors(await mergedWeights(imported.peft, loaded.plan), loaded.plan);
      const weights = encodeSafetensors(tensors, { format: 'pt' }, { fileName: MERGED_WEIGHTS_FILE });
      const written = new Map(side);
      written.set(MERGED_WEIGHTS_FILE, concat([weights.header, ...weights.chunks], weights.byteLength));
      // Weights first, then config.json last: a folder with a config is a complete model.
      const ordered = new Map([...written].sort(([a], [b]) => (a === 'config.json' ? 1 : b === 'config.json' ? -1 : 0)));
      await writeFilesAtomically(out, ordered);
      const json = { out, mergedModules: merged, tensors: tensors.length, bytes: weights.byteLength, files: [...ordered.keys()], quant: loaded.weights === 'f32' ? null : loaded.weights };
      return { json, text: `merged the LoRA adapter into ${merged} linear layers; wrote ${out} (${tensors.length} tensors, ${weights.byteLength} bytes)` };
    } finally {
      model.dispose();
    }
  } finally {
    gpu.destroy();
  }
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}
