// The tensors a config calls for, checked against the safetensors headers before anything is read or
// allocated: one WeightMismatchError lists every missing, unexpected, mis-shaped or wrongly typed tensor,
// and one WeightTooLargeError every tensor that would not fit one GPU binding. The result is a plan
// that the loader streams in file order.
//
// Names are the Hugging Face state-dict names of the *ForCausalLM class (`transformer.h.0.attn.c_attn.weight`,
// `model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`); GPT-2 files may leave out `transformer.`.

import { FormatError, quoteName } from '../io/errors.ts';
import type { SafetensorsEntry, SafetensorsHeader } from '../io/safetensors.ts';
import { bucketSize } from '../gpu/bufferPool.ts';
import type { Gpt2Config, LlamaConfig, ModelConfig } from './config.ts';

export interface ExpectedTensor {
  /** State-dict name, with GPT-2's `transformer.` prefix. */
  readonly name: string;
  readonly shape: readonly number[];
}

/** The tensors a model needs, in model order. A tied head adds no `lm_head.weight`. */
export function expectedTensors(config: ModelConfig): ExpectedTensor[] {
  return config.family === 'gpt2' ? gpt2Tensors(config) : llamaTensors(config);
}

function gpt2Tensors(c: Gpt2Config): ExpectedTensor[] {
  const C = c.hiddenSize;
  const I = c.intermediateSize;
  const list: ExpectedTensor[] = [];
  const add = (name: string, ...shape: number[]) => list.push({ name: `transformer.${name}`, shape });
  add('wte.weight', c.vocabSize, C);
  add('wpe.weight', c.maxPositions, C);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `h.${i}.`;
    add(`${p}ln_1.weight`, C);
    add(`${p}ln_1.bias`, C);
    // Conv1D weights are stored [in, out].
    add(`${p}attn.c_attn.weight`, C, 3 * C);
    add(`${p}attn.c_attn.bias`, 3 * C);
    add(`${p}attn.c_proj.weight`, C, C);
    add(`${p}attn.c_proj.bias`, C);
    add(`${p}ln_2.weight`, C);
    add(`${p}ln_2.bias`, C);
    add(`${p}mlp.c_fc.weight`, C, I);
    add(`${p}mlp.c_fc.bias`, I);
    add(`${p}mlp.c_proj.weight`, I, C);
    add(`${p}mlp.c_proj.bias`, C);
  }
  add('ln_f.weight', C);
  add('ln_f.bias', C);
  if (!c.tieWordEmbeddings) list.push({ name: 'lm_head.weight', shape: [c.vocabSize, C] });
  return list;
}

function llamaTensors(c: LlamaConfig): ExpectedTensor[] {
  const C = c.hiddenSize;
  const Q = c.numHeads * c.headDim;
  const KV = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const list: ExpectedTensor[] = [];
  const add = (name: string, ...shape: number[]) => list.push({ name, shape });
  // nn.Linear weights are stored [out, in].
  const linear = (name: string, inFeatures: number, outFeatures: number, bias: boolean) => {
    add(`${name}.weight`, outFeatures, inFeatures);
    if (bias) add(`${name}.bias`, outFeatures);
  };
  add('model.embed_tokens.weight', c.vocabSize, C);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    add(`${p}input_layernorm.weight`, C);
    linear(`${p}self_attn.q_proj`, C, Q, c.qkvBias);
    linear(`${p}self_attn.k_proj`, C, KV, c.qkvBias);
    linear(`${p}self_attn.v_proj`, C, KV, c.qkvBias);
    linear(`${p}self_attn.o_proj`, Q, C, c.oBias);
    add(`${p}post_attention_layernorm.weight`, C);
    linear(`${p}mlp.gate_proj`, C, I, c.mlpBias);
    linear(`${p}mlp.up_proj`, C, I, c.mlpBias);
    linear(`${p}mlp.down_proj`, I, C, c.mlpBias);
  }
  add('model.norm.weight', C);
  if (!c.tieWordEmbeddings) add('lm_head.weight', c.vocabSize, C);
  return list;
}

/** One tensor to load: where it is and the name the model knows it by. */
export interface PlannedTensor {
  /** State-dict name the model binds (GPT-2 with `transformer.`). */
  readonly name: string;
  /** The name in the file. */
  readonly fileName: string;
  readonly file: string;
  readonly entry: SafetensorsEntry;
  readonly shape: readonly number[];
}

export interface WeightPlan {
  /** In streaming order: file by file (the order of `headers`), data order within a file. */
  readonly tensors: readonly PlannedTensor[];
  /** Tensors in the files that are deliberately not loaded (GPT-2 mask buffers, a tied head's copy). */
  readonly ignored: readonly string[];
  /** Bytes the weights take on the GPU as f32. */
  readonly f32Bytes: number;
  readonly parameterCount: number;
}

export interface MisshapedTensor {
  readonly name: string;
  readonly file: string;
  readonly expected: readonly number[];
  readonly actual: readonly number[];
}

export interface MistypedTensor {
  readonly name: string;
  readonly file: string;
  readonly dtype: string;
}

const SHOWN = 20;

/** The checkpoint's tensors do not fit config.json. Everything wrong is listed, nothing has been loaded. */
export class WeightMismatchError extends FormatError {
  constructor(
    files: string,
    readonly configFile: string,
    readonly missing: readonly string[],
    readonly unexpected: readonly string[],
    readonly misshaped: readonly MisshapedTensor[],
    readonly mistyped: readonly MistypedTensor[],
  ) {
    const parts: string[] = [];
    const list = (items: readonly string[]) =>
      items.slice(0, SHOWN).join(', ') + (items.length > SHOWN ? `, … (${items.length - SHOWN} more)` : '');
    if (missing.length) parts.push(`${missing.length} missing: ${list(missing.map(quoteName))}`);
    if (unexpected.length) parts.push(`${unexpected.length} unexpected: ${list(unexpected.map(quoteName))}`);
    if (misshaped.length) {
      parts.push(`${misshaped.length} mis-shaped: ${list(misshaped.map((t) => `${quoteName(t.name)} is [${t.actual.join(', ')}], expected [${t.expected.join(', ')}]`))}`);
    }
    if (mistyped.length) parts.push(`${mistyped.length} not float (F32/F16/BF16): ${list(mistyped.map((t) => `${quoteName(t.name)} is ${t.dtype}`))}`);
    super(files, `the tensors do not fit ${quoteName(configFile)}: ${parts.join('; ')}`, { field: 'tensors' });
  }
}

export interface OversizedTensor {
  readonly name: string;
  readonly file: string;
  readonly bytes: number;
}

/** Tensors that as f32 exceed what the device can bind or allocate in one buffer; found before any upload. */
export class WeightTooLargeError extends FormatError {
  constructor(
    files: string,
    readonly tensors: readonly OversizedTensor[],
    readonly allowed: number,
    readonly limit: string,
  ) {
    const shown = tensors.slice(0, SHOWN).map((t) => `tensor ${quoteName(t.name)} needs ${t.bytes} bytes`);
    super(files, `${shown.join(', ')}${tensors.length > SHOWN ? ', …' : ''}; the device allows ${allowed} bytes (${limit})`, {
      field: 'tensors',
      tensor: tensors[0]?.name,
    });
  }
}

/** The device limits a plan is checked against (GpuInfo.limits has them). */
export interface DeviceLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
}

const GPT2_PREFIX = 'transformer.';
/** Causal-mask buffers of older GPT-2 checkpoints: not parameters. */
const GPT2_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$/;

export interface PlanOptions {
  /**
   * State-dict names of tensors the caller supplies another way (the 4-bit linear weights of a
   * pre-quantized checkpoint): neither required in the headers nor planned.
   */
  external?: ReadonlySet<string>;
}

/**
 * Match the headers (file name → header, in streaming order) against the config. Throws WeightMismatchError
 * or WeightTooLargeError (with `limits`); reads no tensor data and allocates nothing.
 */
export function planWeights(config: ModelConfig, headers: ReadonlyMap<string, SafetensorsHeader>, limits?: DeviceLimits, options: PlanOptions = {}): WeightPlan {
  const located = new Map<string, { file: string; entry: SafetensorsEntry }>();
  for (const [file, header] of headers) for (const entry of header.tensors) located.set(entry.name, { file, entry });

  // GPT-2 files (GPT2LMHeadModel) use `transformer.`; files saved from GPT2Model have no prefix. Names are
  // bound with the prefix either way; when both forms appear, the prefixed one counts.
  const names = [...located.keys()];
  const filePrefix = config.family === 'gpt2' && !names.some((name) => name.startsWith(GPT2_PREFIX)) ? '' : GPT2_PREFIX;
  const fileNameOf = (name: string) =>
    config.family === 'gpt2' && name.startsWith(GPT2_PREFIX) ? filePrefix + name.slice(GPT2_PREFIX.length) : name;

  const expected = expectedTensors(config).filter((tensor) => !options.external?.has(tensor.name));
  const wanted = new Set(expected.map((t) => fileNameOf(t.name)));
  const missing: string[] = [];
  const misshaped: MisshapedTensor[] = [];
  const mistyped: MistypedTensor[] = [];
  const byFileName = new Map<string, ExpectedTensor>();
  for (const tensor of expected) {
    const fileName = fileNameOf(tensor.name);
    byFileName.set(fileName, tensor);
    const found = located.get(fileName);
    if (!found) {
      missing.push(fileName);
      continue;
    }
    const { entry, file } = found;
    if (entry.shape.length !== tensor.shape.length || entry.shape.some((dim, i) => dim !== tensor.shape[i])) {
      misshaped.push({ name: fileName, file, expected: tensor.shape, actual: entry.shape });
    }
    if (entry.dtype !== 'F32' && entry.dtype !== 'F16' && entry.dtype !== 'BF16') mistyped.push({ name: fileName, file, dtype: entry.dtype });
  }

  const ignored: string[] = [];
  const unexpected: string[] = [];
  for (const name of located.keys()) {
    if (wanted.has(name)) continue;
    const bare = config.family === 'gpt2' && filePrefix && name.startsWith(filePrefix) ? name.slice(filePrefix.length) : name;
    const isBuffer = config.family === 'gpt2' && name.startsWith(filePrefix) && GPT2_BUFFER.test(bare);
    const isTiedHead = config.tieWordEmbeddings && name === 'lm_head.weight';
    if (isBuffer || isTiedHead) ignored.push(name);
    else unexpected.push(name);
  }

  const fileList = [...headers.keys()].join(', ');
  if (missing.length || unexpected.length || misshaped.length || mistyped.length) {
    throw new WeightMismatchError(fileList, config.file, missing, unexpected, misshaped, mistyped);
  }

  const tensors: PlannedTensor[] = [];
  for (const [file, header] of headers) {
    for (const entry of header.tensors) {
      const tensor = wanted.has(entry.name) ? byFileName.get(entry.name) : undefined;
      if (tensor) tensors.push({ name: tensor.name, fileName: entry.name, file, entry, shape: tensor.shape });
    }
  }
  const parameterCount = tensors.reduce((sum, t) => sum + t.entry.elementCount, 0);
  if (limits) checkDeviceLimits(fileList, tensors, limits);
  return { tensors, ignored, f32Bytes: parameterCount * 4, parameterCount };
}

function checkDeviceLimits(files: string, tensors: readonly PlannedTensor[], limits: DeviceLimits): void {
  const binding = limits.maxStorageBufferBindingSize;
  const tooLarge = tensors.filter((t) => t.entry.elementCount * 4 > binding);
  if (tooLarge.length) {
    throw new WeightTooLargeError(files, tooLarge.map((t) => ({ name: t.fileName, file: t.file, bytes: t.entry.elementCount * 4 })), binding, 'maxStorageBufferBindingSize');
  }
  // The buffer pool rounds sizes up to its buckets; the rounded size must still be a valid buffer.
  const tooLargeBuffer = tensors.filter((t) => bucketSize(t.entry.elementCount * 4) > limits.maxBufferSize);
  if (tooLargeBuffer.length) {
    throw new WeightTooLargeError(
      files,
      tooLargeBuffer.map((t) => ({ name: t.fileName, file: t.file, bytes: bucketSize(t.entry.elementCount * 4) })),
      limits.maxBufferSize,
      'maxBufferSize',
    );
  }
}
