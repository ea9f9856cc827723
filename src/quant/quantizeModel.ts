// Quantize a model's linear layers to 4 bits in the bitsandbytes Linear4bit layout, streaming: one
// tensor at a time is read, uploaded, quantized on the GPU and read back as its (small) quantized
// state, so the whole f32 model is never held. Other tensors (embeddings, norms, biases, the output
// head, which bitsandbytes also keeps in full precision) are copied as they are, in their own dtype.

import type { Engine } from '../engine/engine.ts';
import { readTensor, readTensorBytes, type SafetensorsEntry } from '../io/safetensors.ts';
import type { SafetensorsTensorInput } from '../io/safetensorsWriter.ts';
import type { ModelConfig } from '../models/config.ts';
import { inspectModel, type ModelFileProvider } from '../models/load.ts';
import { bnbTensorsFromState, type TensorRecord } from './bnbLayout.ts';
import type { QuantType } from './codebooks.ts';
import { downloadQuantState, quantizeOnGpu } from './gpuQuantize.ts';

export interface QuantizeModelOptions {
  quantType?: QuantType;
  blocksize?: number;
  doubleQuant?: boolean;
  onProgress?: (progress: { tensor: string; done: number; total: number; quantized: boolean }) => void;
}

export interface QuantizedModelFile {
  config: ModelConfig;
  tensors: SafetensorsTensorInput[];
  /** Names (as in the source files) of the weights that were quantized. */
  quantized: string[];
}

/** The linear layers a bitsandbytes 4-bit load replaces: every projection of every block, not the head. */
export function isQuantizedLinearWeight(config: ModelConfig, name: string): boolean {
  return config.family === 'gpt2'
    ? /^(transformer\.)?h\.\d+\.(attn\.(c_attn|c_proj)|mlp\.(c_fc|c_proj))\.weight$/.test(name)
    : /^model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$/.test(name);
}

export async function quantizeModel(engine: Engine, files: ModelFileProvider, options: QuantizeModelOptions = {}): Promise<QuantizedModelFile> {
  const { config, plan, headers, sources } = await inspectModel(files, engine.gpu.info.limits);
  const tensors: SafetensorsTensorInput[] = [];
  const quantized: string[] = [];
  let done = 0;
  for (const planned of plan.tensors) {
    const source = sources.get(planned.file)!;
    const header = headers.get(planned.file)!;
    const name = planned.fileName;
    if (!isQuantizedLinearWeight(config, name)) {
      tensors.push(passThrough(planned.entry, await readTensorBytes(source, header, name)));
    } else {
      const loaded = await readTensor(source, header, name);
      // GPT-2's Conv1D stores [in, out]; bitsandbytes quantizes it as a Linear, [out, in] (transposed on load).
      const [rows, cols] = planned.entry.shape;
      const data = config.family === 'gpt2' ? transpose(loaded.data as Float32Array, rows, cols) : (loaded.data as Float32Array);
      const shape = config.family === 'gpt2' ? [cols, rows] : [rows, cols];
      const state = await engine.scope(async () => {
        const weight = engine.tensor(data, shape, { name });
        const q = await quantizeOnGpu(engine, weight, { ...options, name, dtype: dtypeName(planned.entry.dtype) });
        const downloaded = await downloadQuantState(q);
        q.dispose();
        return downloaded;
      });
      const records = bnbTensorsFromState(name.slice(0, -'weight'.length), state);
      for (const [recordName, record] of Object.entries(records)) tensors.push(fromRecord(recordName, record));
      quantized.push(name);
    }
    options.onProgress?.({ tensor: name, done: ++done, total: plan.tensors.length, quantized: quantized.at(-1) === name });
  }
  return { config, tensors, quantized };
}

function passThrough(entry: SafetensorsEntry, bytes: Uint8Array): SafetensorsTensorInput {
  const { name, dtype, shape } = entry;
  const aligned = new Uint8Array(bytes); // own, aligned copy for the typed views below
  const data =
    dtype === 'F32' ? new Float32Array(aligned.buffer) : dtype === 'U8' ? aligned : new Uint16Array(aligned.buffer);
  return { name, dtype, shape, data };
}

function fromRecord(name: string, record: TensorRecord): SafetensorsTensorInput {
  const bytes = new Uint8Array(record.bytes);
  const data = record.dtype === 'F32' ? new Float32Array(bytes.buffer) : record.dtype === 'U8' ? bytes : new Uint16Array(bytes.buffer);
  return { name, dtype: record.dtype, shape: record.shape, data };
}

/** [rows, cols] → [cols, rows]. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/** The torch dtype name bitsandbytes records in the quant state. */
function dtypeName(dtype: string): string {
  return dtype === 'BF16' ? 'bfloat16' : dtype === 'F16' ? 'float16' : 'float32';
}
