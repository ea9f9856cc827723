// `tabtune quantize --model DIR --out FILE [--quant-type nf4|fp4] [--blocksize 64] [--double-quant]`:
// write a safetensors file in the bitsandbytes Linear4bit layout, quantized on the GPU tensor by tensor.

import { rename, rm, writeFile } from 'node:fs/promises';
import { Engine } from '../../engine/engine.ts';
import { acquireNodeGpu } from '../../gpu/node.ts';
import { encodeSafetensors } from '../../io/safetensorsWriter.ts';
import { localDirectory } from '../../io/sources/localDirectory.ts';
import { isQuantType } from '../../quant/codebooks.ts';
import { checkBlocksize } from '../../quant/quantState.ts';
import { quantizeModel } from '../../quant/quantizeModel.ts';
import { integerOption, parseOptions, progress, requireOption, UsageError } from '../usage.ts';

export async function quantizeCommand(args: string[]) {
  const options = parseOptions('quantize', args, {
    model: { type: 'string' },
    out: { type: 'string' },
    'quant-type': { type: 'string', default: 'nf4' },
    blocksize: { type: 'string' },
    'double-quant': { type: 'boolean', default: false },
  });
  const modelDir = requireOption('quantize', 'model', options.model);
  const out = requireOption('quantize', 'out', options.out);
  const quantType = options['quant-type'];
  if (!isQuantType(quantType)) throw new UsageError(`quantize: --quant-type must be nf4 or fp4, got '${quantType}'`);
  const blocksize = checkBlocksize('--blocksize', integerOption('quantize', 'blocksize', options.blocksize, 64));
  const doubleQuant = options['double-quant'] ?? false;

  const gpu = await acquireNodeGpu();
  try {
    const engine = new Engine(gpu);
    const result = await quantizeModel(engine, localDirectory(modelDir), {
      quantType,
      blocksize,
      doubleQuant,
      onProgress: ({ tensor, done, total, quantized }) => progress(`[${done}/${total}] ${quantized ? 'quantized' : 'copied   '} ${tensor}`),
    });
    const file = encodeSafetensors(result.tensors, { format: 'pt' }, { fileName: out });
    // Write beside the target, then rename over it: an interrupted run never leaves a half-written file.
    const partial = `${out}.partial-${process.pid}`;
    try {
      await writeFile(partial, Buffer.concat([file.header, ...file.chunks]));
      await rename(partial, out);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
    const json = { out, quantType, blocksize, doubleQuant, quantizedLinears: result.quantized.length, tensors: result.tensors.length, bytes: file.byteLength };
    return { json, text: `wrote ${out}: ${result.quantized.length} linear weights in ${quantType}${doubleQuant ? ' with double quantization' : ''}, ${file.byteLength} bytes` };
  } finally {
    gpu.destroy();
  }
}
