// QLoRA's base: a causal LM whose block linears are frozen 4-bit (NF4 / FP4, optionally double-quantized)
// Linear4bitModules, in bitsandbytes' layout. Three ways in:
//   - loadModelQuantized: stream an f32/f16/bf16 checkpoint, quantizing each linear weight on the GPU as
//     it is read, so the whole f32 model is never held (at most one linear weight in f32 at a time);
//   - quantizeLinears: convert a loaded f32 model on the GPU, layer by layer, freeing each f32 weight
//     as soon as its 4-bit copy exists;
//   (both transpose GPT-2's Conv1D [IN, OUT] weights to [OUT, IN] first, as bitsandbytes stores them)
//   - loadQuantizedModel (bnbCheckpoint.ts): load a pre-quantized bitsandbytes checkpoint as it is.
// The output head and every other tensor stay f32, as in bitsandbytes.

import type { Engine } from '../engine/engine.ts';
import type { Tensor } from '../engine/tensor.ts';
import { readTensor, type NonFiniteWarning } from '../io/safetensors.ts';
import type { ModelConfig } from '../models/config.ts';
import { Gpt2Model } from '../models/gpt2.ts';
import { DenseLinear } from '../models/linear.ts';
import { LlamaModel } from '../models/llama.ts';
import { inspectModel, type LoadOptions, type ModelFileProvider } from '../models/load.ts';
import type { CausalLM } from '../models/model.ts';
import { expectedTensors, type WeightPlan } from '../models/weights.ts';
import type { QuantType } from '../quant/codebooks.ts';
import { quantizeOnGpu, type QuantizedWeight } from '../quant/gpuQuantize.ts';
import { isQuantizedLinearWeight } from '../quant/quantizeModel.ts';
import { Linear4bitModule, transpose } from './linear4bitModule.ts';
import { LoraLinear } from './loraLinear.ts';

export interface QuantizeLinearsOptions {
  quantType?: QuantType;
  /** Default 64 (bitsandbytes' default). */
  blocksize?: number;
  doubleQuant?: boolean;
  /** The modules to convert; default every linear of the blocks. */
  paths?: readonly string[];
  onProgress?: (progress: { path: string; done: number; total: number }) => void;
}

/**
 * Replace the model's dense linears by 4-bit ones, quantized on the GPU one at a time; each f32 weight is
 * freed once its replacement exists, so the peak is one layer above the final size. Attach LoRA after.
 */
export async function quantizeLinears(model: CausalLM, options: QuantizeLinearsOptions = {}): Promise<string[]> {
  const engine = model.engine;
  const linears = model.linears();
  const paths = options.paths ?? linears.paths();
  for (const path of paths) {
    const module = linears.get(path);
    if (module instanceof LoraLinear) throw new Error(`quantizeLinears: ${path} is LoRA-adapted; quantize the base before attaching LoRA`);
    if (!(module instanceof DenseLinear) && !(module instanceof Linear4bitModule)) {
      throw new Error(`quantizeLinears: ${path} is a ${module.constructor.name}, not a dense linear`);
    }
  }
  const done: string[] = [];
  for (const path of paths) {
    const module = linears.get(path);
    if (module instanceof DenseLinear) {
      const quantized = await quantizeDense(engine, module, options);
      const old = linears.replace(path, () => new Linear4bitModule(path, quantized, module.bias)) as DenseLinear;
      old.weight.dispose(); // the bias moved into the 4-bit module
      done.push(path);
    }
    options.onProgress?.({ path, done: done.length, total: paths.length });
  }
  return done;
}

type QuantOptions = Pick<QuantizeLinearsOptions, 'quantType' | 'blocksize' | 'doubleQuant'>;

async function quantizeDense(engine: Engine, module: DenseLinear, options: QuantOptions): Promise<QuantizedWeight> {
  const quantOptions = quantOptionsFor(`${module.path}.weight`, options);
  if (!module.fanInFanOut) return quantizeOnGpu(engine, module.weight, quantOptions);
  // [IN, OUT] → [OUT, IN] on the host (one layer at a time), then quantized on the GPU.
  const values = (await module.weight.read()) as Float32Array;
  return quantizeHostWeight(engine, transpose(values, module.inFeatures, module.outFeatures), [module.outFeatures, module.inFeatures], quantOptions);
}

function quantOptionsFor(name: string, options: QuantOptions) {
  return { quantType: options.quantType ?? 'nf4', blocksize: options.blocksize ?? 64, doubleQuant: options.doubleQuant ?? false, name };
}

/** Upload f32 `values` [OUT, IN] and quantize them on the GPU; the f32 copy is freed before this resolves. */
function quantizeHostWeight(engine: Engine, values: Float32Array, outIn: readonly [number, number], options: ReturnType<typeof quantOptionsFor>): Promise<QuantizedWeight> {
  return engine.scope(async () => {
    const weight = engine.tensor(values, outIn, { name: options.name, category: 'frozenWeights' });
    return quantizeOnGpu(engine, weight, options);
  });
}

export interface LoadQuantizedOptions extends LoadOptions, QuantOptions {}

/**
 * Load an f32/f16/bf16 checkpoint (what loadModel takes) as a QLoRA base, quantizing while it streams:
 * each block linear weight is read, uploaded as f32, quantized on the GPU (GPT-2's Conv1D transposed to
 * [OUT, IN] first) and its f32 copy freed before the next tensor is read; every other tensor loads as
 * f32. The codes equal those of loadModel + quantizeLinears. Progress counts f32 bytes read; an error or
 * an abort frees everything already uploaded.
 */
export async function loadModelQuantized(engine: Engine, files: ModelFileProvider, options: LoadQuantizedOptions = {}): Promise<LoadedQuantizedModel> {
  const { config, plan, headers, sources } = await inspectModel(files, engine.gpu.info.limits);
  const weights = new Map<string, Tensor>();
  const quantized = new Map<string, QuantizedWeight>();
  const allocated: { dispose(): void }[] = [];
  const warnings: NonFiniteWarning[] = [];
  try {
    let bytes = 0;
    for (const [index, planned] of plan.tensors.entries()) {
      options.signal?.throwIfAborted();
      const loaded = await readTensor(sources.get(planned.file)!, headers.get(planned.file)!, planned.fileName);
      if (loaded.dtype === 'U8') throw new Error(`unreachable: the plan admits float tensors only (${planned.fileName})`);
      if (loaded.warning) warnings.push(loaded.warning);
      if (isQuantizedLinearWeight(config, planned.name)) {
        const [rows, cols] = planned.shape;
        const values = loaded.data as Float32Array;
        const weight = config.family === 'gpt2'
          ? await quantizeHostWeight(engine, transpose(values, rows, cols), [cols, rows], quantOptionsFor(planned.name, options))
          : await quantizeHostWeight(engine, values, [rows, cols], quantOptionsFor(planned.name, options));
        allocated.push(weight);
        quantized.set(planned.name.slice(0, -'.weight'.length), weight);
      } else {
        const tensor = engine.keep(engine.tensor(loaded.data, planned.shape, { name: planned.name, category: 'frozenWeights' }));
        allocated.push(tensor);
        weights.set(planned.name, tensor);
      }
      bytes += planned.entry.elementCount * 4;
      options.onProgress?.({ tensor: planned.name, loaded: index + 1, total: plan.tensors.length, bytes, totalBytes: plan.f32Bytes });
    }
    options.signal?.throwIfAborted();
    const model = await buildWithQuantizedLinears(engine, config, weights, quantized, allocated);
    return { model, config, plan, quantized: [...quantized.keys()], quantType: options.quantType ?? 'nf4', warnings };
  } catch (error) {
    for (const item of allocated) item.dispose();
    throw error;
  }
}

/**
 * Build the architecture from f32 `weights` (state-dict name → tensor; the model takes them) and swap
 * in 4-bit modules for the `quantized` linears (module path → weight, taken too). The constructors build
 * dense linears from `${path}.weight`, so those get shape-only stand-ins: views of one 4-byte buffer,
 * never bound to a kernel, released by the swap. Everything it allocates is added to `allocated`.
 */
export async function buildWithQuantizedLinears(
  engine: Engine,
  config: ModelConfig,
  weights: Map<string, Tensor>,
  quantized: ReadonlyMap<string, QuantizedWeight>,
  allocated: { dispose(): void }[],
): Promise<CausalLM> {
  const shapes = new Map(expectedTensors(config).map((t) => [t.name, t.shape]));
  const standIn = engine.keep(engine.empty([1]));
  allocated.push(standIn);
  for (const path of quantized.keys()) {
    const view = standIn.view(shapes.get(`${path}.weight`)!);
    allocated.push(view); // released by the swap below; disposing it again is a no-op
    weights.set(`${path}.weight`, view);
  }
  await engine.gpu.sync();
  const model = config.family === 'gpt2' ? new Gpt2Model(engine, config, weights) : new LlamaModel(engine, config, weights);
  for (const [path, weight] of quantized) {
    const old = model.linears().replace(path, (current) => new Linear4bitModule(path, weight, (current as DenseLinear).bias)) as DenseLinear;
    old.weight.dispose();
  }
  standIn.dispose();
  return model;
}

export interface LoadedQuantizedModel {
  model: CausalLM;
  config: ModelConfig;
  /** Every tensor of the checkpoint, the 4-bit linears' weights with their float shapes (what a merged export writes). */
  plan: WeightPlan;
  /** Module paths of the 4-bit linears. */
  quantized: string[];
  /** Their data type (a pre-quantized checkpoint's own, else the one asked for). */
  quantType: QuantType;
  warnings: NonFiniteWarning[];
}
