// The decoder as an ONNX graph (opset 17, standard ops only, no KV cache): input_ids int64 [batch, sequence]
// → logits float [batch, sequence, vocab], built from a ModelConfig and its f32 weights by Hugging Face
// state-dict name. Linear weights become pre-transposed [in, out] initializers (`<path>.weight.T`) so each
// projection is one MatMul; GPT-2's Conv1D weights are already [in, out] and keep their names. A tied head
// is a Transpose node over the embedding, so the file holds the table once.
//
// Llama family: RMSNorm, rotate_half RoPE from cos/sin tables [P, D] gathered by position, grouped-query
// attention by repeating kv heads, SwiGLU, optional biases, Mistral's sliding window. GPT-2: LayerNorm,
// learned positions, fused q/k/v split by Slice, gelu_new (tanh form).
// Letters: B batch, T sequence, C hidden, H heads, KVH kv heads, D head dim, I MLP width, V vocabulary,
// P rotary table length.

import type { Gpt2Config, LlamaConfig, ModelConfig } from '../models/config.ts';
import { rotaryInverseFrequencies } from '../models/llama.ts';
import { expectedTensors } from '../models/weights.ts';
import { DataType, floatTensor, int64Tensor, type AttributeProto, type GraphProto, type NodeProto, type TensorProto } from './onnxProto.ts';

export const ONNX_OPSET = 17;
export const INPUT_NAME = 'input_ids';
export const OUTPUT_NAME = 'logits';
/** Symbolic dims of the input and output. */
export const BATCH_DIM = 'batch';
export const SEQUENCE_DIM = 'sequence';

/** Added to masked attention scores: the lowest finite f32, as transformers' eager attention uses. */
const MASKED_SCORE = -3.4028234663852886e38;

export interface GraphOptions {
  /**
   * Length P of the rotary cos/sin tables (Llama family), which bounds the sequence the file accepts.
   * Default: the config's max_position_embeddings. Each table takes P · D · 4 bytes.
   */
  rotaryPositions?: number;
}

/** Collects nodes and initializers; value names stay readable (`model.layers.0.self_attn.q`). */
class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly names = new Set<string>();
  private readonly constants = new Map<string, string>();

  /** `hint`, or `hint_2`, `hint_3`, … when taken (not reserved until used). */
  private unique(hint: string): string {
    let name = hint;
    for (let i = 2; this.names.has(name); i++) name = `${hint}_${i}`;
    return name;
  }

  /** Add a node with one output named after `hint`; returns the output's name. */
  op(opType: string, inputs: readonly string[], hint: string, attributes: AttributeProto[] = []): string {
    const output = this.unique(hint);
    this.names.add(output);
    this.nodes.push({ opType, inputs, outputs: [output], name: output, attributes });
    return output;
  }

  initializer(tensor: TensorProto): string {
    if (this.names.has(tensor.name)) throw new Error(`ONNX graph: value ${tensor.name} defined twice`);
    this.names.add(tensor.name);
    this.initializers.push(tensor);
    return tensor.name;
  }

  /** A shared f32 scalar constant. */
  f32(value: number): string {
    const key = `f32:${Math.fround(value)}`;
    let name = this.constants.get(key);
    if (!name) {
      name = this.initializer(floatTensor(this.unique(`const.f32.${value}`), [], [value]));
      this.constants.set(key, name);
    }
    return name;
  }

  /** A shared int64 constant: a scalar for a number, a 1-D tensor for a list. */
  i64(value: number | readonly number[]): string {
    const key = `i64:${JSON.stringify(value)}`;
    let name = this.constants.get(key);
    if (!name) {
      const list = typeof value === 'number' ? [value] : value;
      const label = typeof value === 'number' ? `${value}` : `[${value.join(',')}]`;
      name = this.initializer(int64Tensor(this.unique(`const.i64.${label}`), typeof value === 'number' ? [] : [list.length], list));
      this.constants.set(key, name);
    }
    return name;
  }
}

const ints = (name: string, value: readonly number[]): AttributeProto => ({ name, value: { type: 'ints', value } });
const int = (name: string, value: number): AttributeProto => ({ name, value: { type: 'int', value } });

/** [rows, cols] row-major → [cols, rows]. */
function transpose2d(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/** Shared pieces of both architectures; the weights are checked against expectedTensors(config) by the caller. */
class DecoderGraph {
  readonly g = new GraphBuilder();
  private readonly shapes: Map<string, readonly number[]>;
  /** int64 [T]: 0 … T − 1. */
  positions = '';

  constructor(
    readonly config: ModelConfig,
    private readonly weights: ReadonlyMap<string, Float32Array>,
  ) {
    this.shapes = new Map(expectedTensors(config).map((t) => [t.name, t.shape]));
  }

  private data(name: string): Float32Array {
    const values = this.weights.get(name);
    if (!values) throw new Error(`ONNX export: no weight ${JSON.stringify(name)}`);
    return values;
  }

  /** A weight as stored, under its state-dict name. */
  weight(name: string): string {
    return this.g.initializer(floatTensor(name, this.shapes.get(name)!, this.data(name)));
  }

  /** nn.Linear's [out, in] weight as an [in, out] initializer `<name>.T`. */
  transposedWeight(name: string): string {
    const [rows, cols] = this.shapes.get(name)!;
    return this.g.initializer(floatTensor(`${name}.T`, [cols, rows], transpose2d(this.data(name), rows, cols)));
  }

  /** x [..., in] · W [in, out] (+ b). */
  linear(x: string, weightT: string, bias: string | null, hint: string): string {
    const product = this.g.op('MatMul', [x, weightT], bias ? `${hint}.matmul` : hint);
    return bias ? this.g.op('Add', [product, bias], hint) : product;
  }

  /** positions [T] from the input's second dim. */
  addPositions(): void {
    const shape = this.g.op('Shape', [INPUT_NAME], 'input_shape');
    const T = this.g.op('Gather', [shape, this.g.i64(1)], 'sequence_length', [int('axis', 0)]);
    this.positions = this.g.op('Range', [this.g.i64(0), T, this.g.i64(1)], 'positions');
  }

  /**
   * The additive attention bias [T, T]: 0 where key j may be seen from query i (j ≤ i, and i − j < window
   * when there is one), the lowest f32 elsewhere.
   */
  attentionBias(slidingWindow: number | null): string {
    const g = this.g;
    // A [T] row of ones: the one-element table gathered at T zero indices.
    const one = g.initializer(floatTensor('attention.one', [1], [1]));
    const zeros = g.op('Mul', [this.positions, g.i64(0)], 'attention.zero_indices');
    const row = g.op('Gather', [one, zeros], 'attention.ones_row', [int('axis', 0)]);
    const ones = g.op('Mul', [g.op('Unsqueeze', [row, g.i64([1])], 'attention.ones_column'), g.op('Unsqueeze', [row, g.i64([0])], 'attention.ones_line')], 'attention.ones');
    let allowed = g.op('Trilu', [ones], 'attention.causal', [int('upper', 0)]);
    if (slidingWindow !== null) {
      // Keep j − i ≥ −(window − 1): the last `window` positions including the query's own.
      allowed = g.op('Trilu', [allowed, g.i64(-(slidingWindow - 1))], 'attention.windowed', [int('upper', 1)]);
    }
    return g.op('Mul', [g.op('Sub', [allowed, g.f32(1)], 'attention.blocked'), g.f32(-MASKED_SCORE)], 'attention.bias');
  }

  /** [B, T, N·D] → [B, N, T, D]. */
  splitHeads(x: string, heads: number, hint: string): string {
    const D = this.config.headDim;
    const split = this.g.op('Reshape', [x, this.g.i64([0, 0, heads, D])], `${hint}.split`);
    return this.g.op('Transpose', [split], `${hint}.heads`, [ints('perm', [0, 2, 1, 3])]);
  }

  /** softmax(q kᵀ · scale + bias) v: q [B, H, T, D], k and v [B, H, T, D] → [B, T, H·D]. */
  attend(q: string, k: string, v: string, bias: string, scale: { mul: number } | { div: number }, hint: string): string {
    const g = this.g;
    const { numHeads: H, headDim: D } = this.config;
    const kT = g.op('Transpose', [k], `${hint}.k_transposed`, [ints('perm', [0, 1, 3, 2])]);
    const raw = g.op('MatMul', [q, kT], `${hint}.raw_scores`);
    const scaled = 'mul' in scale ? g.op('Mul', [raw, g.f32(scale.mul)], `${hint}.scores`) : g.op('Div', [raw, g.f32(scale.div)], `${hint}.scores`);
    const masked = g.op('Add', [scaled, bias], `${hint}.masked_scores`);
    const probs = g.op('Softmax', [masked], `${hint}.probs`, [int('axis', -1)]);
    const context = g.op('MatMul', [probs, v], `${hint}.context`);
    const merged = g.op('Transpose', [context], `${hint}.context_tokens`, [ints('perm', [0, 2, 1, 3])]);
    return g.op('Reshape', [merged, g.i64([0, 0, H * D])], `${hint}.context_merged`);
  }

  /** x [B, T, C] · headᵀ → logits; a tied head transposes the embedding in the graph. */
  head(x: string, embeddingName: string): void {
    const headT = this.config.tieWordEmbeddings
      ? this.g.op('Transpose', [embeddingName], `${embeddingName}.T`, [ints('perm', [1, 0])])
      : this.transposedWeight('lm_head.weight');
    this.g.nodes.push({ opType: 'MatMul', inputs: [x, headT], outputs: [OUTPUT_NAME], name: OUTPUT_NAME });
  }
}

function llamaGraph(d: DecoderGraph, c: LlamaConfig, options: GraphOptions): void {
  const g = d.g;
  const { numHeads: H, numKvHeads: KVH, headDim: D } = c;
  const half = D / 2;
  const P = options.rotaryPositions ?? c.maxPositions;

  // cos/sin [P, D] as transformers builds them: angle = f32(t · invFreq[i mod D/2]), duplicated halves.
  const invFreq = rotaryInverseFrequencies(c.rope, D);
  const cosTable = new Float32Array(P * D);
  const sinTable = new Float32Array(P * D);
  for (let t = 0; t < P; t++) {
    for (let i = 0; i < D; i++) {
      const angle = Math.fround(t * invFreq[i % half]);
      cosTable[t * D + i] = Math.cos(angle);
      sinTable[t * D + i] = Math.sin(angle);
    }
  }
  const cosAll = g.initializer(floatTensor('rotary.cos', [P, D], cosTable));
  const sinAll = g.initializer(floatTensor('rotary.sin', [P, D], sinTable));

  const embedding = d.weight('model.embed_tokens.weight');
  let h = g.op('Gather', [embedding, INPUT_NAME], 'model.embed_tokens', [int('axis', 0)]);
  d.addPositions();
  const cos = g.op('Gather', [cosAll, d.positions], 'rotary.cos_positions', [int('axis', 0)]); // [T, D]
  const sin = g.op('Gather', [sinAll, d.positions], 'rotary.sin_positions', [int('axis', 0)]);
  const bias = d.attentionBias(c.slidingWindow);
  const eps = g.f32(c.rmsNormEps);

  const rmsNorm = (x: string, weightName: string, hint: string) => {
    const meanSquare = g.op('ReduceMean', [g.op('Mul', [x, x], `${hint}.square`)], `${hint}.mean_square`, [ints('axes', [-1]), int('keepdims', 1)]);
    const inverse = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [meanSquare, eps], `${hint}.variance_eps`)], `${hint}.rms`)], `${hint}.inverse_rms`);
    return g.op('Mul', [g.op('Mul', [x, inverse], `${hint}.normalized`), d.weight(weightName)], hint);
  };
  const linear = (x: string, path: string, withBias: boolean) =>
    d.linear(x, d.transposedWeight(`${path}.weight`), withBias ? d.weight(`${path}.bias`) : null, path);
  // x [B, N, T, D]: x · cos + rotate_half(x) · sin, rotate_half(x) = [−x2, x1].
  const rotate = (x: string, hint: string) => {
    const x1 = g.op('Slice', [x, g.i64([0]), g.i64([half]), g.i64([3])], `${hint}.first_half`);
    const x2 = g.op('Slice', [x, g.i64([half]), g.i64([D]), g.i64([3])], `${hint}.second_half`);
    const rotated = g.op('Concat', [g.op('Neg', [x2], `${hint}.second_half_negated`), x1], `${hint}.rotated_half`, [int('axis', 3)]);
    return g.op('Add', [g.op('Mul', [x, cos], `${hint}.cos_part`), g.op('Mul', [rotated, sin], `${hint}.sin_part`)], `${hint}.rotary`);
  };
  // [B, KVH, T, D] → [B, H, T, D], head h reading kv head ⌊h / (H / KVH)⌋.
  const repeatKv = (x: string, hint: string) => {
    const repeats = H / KVH;
    if (repeats === 1) return x;
    const unsqueezed = g.op('Unsqueeze', [x, g.i64([2])], `${hint}.unsqueezed`);
    const tiled = g.op('Concat', Array<string>(repeats).fill(unsqueezed), `${hint}.tiled`, [int('axis', 2)]);
    return g.op('Reshape', [tiled, g.i64([0, H, -1, D])], `${hint}.repeated`);
  };

  for (let layer = 0; layer < c.numLayers; layer++) {
    const p = `model.layers.${layer}.`;
    const x = rmsNorm(h, `${p}input_layernorm.weight`, `${p}input_layernorm`);
    const q = rotate(d.splitHeads(linear(x, `${p}self_attn.q_proj`, c.qkvBias), H, `${p}self_attn.q`), `${p}self_attn.q`);
    const k = rotate(d.splitHeads(linear(x, `${p}self_attn.k_proj`, c.qkvBias), KVH, `${p}self_attn.k`), `${p}self_attn.k`);
    const v = d.splitHeads(linear(x, `${p}self_attn.v_proj`, c.qkvBias), KVH, `${p}self_attn.v`);
    const context = d.attend(q, repeatKv(k, `${p}self_attn.k`), repeatKv(v, `${p}self_attn.v`), bias, { mul: 1 / Math.sqrt(D) }, `${p}self_attn`);
    const h1 = g.op('Add', [h, linear(context, `${p}self_attn.o_proj`, c.oBias)], `${p}attention_residual`);

    const m = rmsNorm(h1, `${p}post_attention_layernorm.weight`, `${p}post_attention_layernorm`);
    const gate = linear(m, `${p}mlp.gate_proj`, c.mlpBias);
    const up = linear(m, `${p}mlp.up_proj`, c.mlpBias);
    const silu = g.op('Mul', [gate, g.op('Sigmoid', [gate], `${p}mlp.gate_sigmoid`)], `${p}mlp.gate_silu`);
    const product = g.op('Mul', [silu, up], `${p}mlp.swiglu`);
    h = g.op('Add', [h1, linear(product, `${p}mlp.down_proj`, c.mlpBias)], `${p}mlp_residual`);
  }
  d.head(rmsNorm(h, 'model.norm.weight', 'model.norm'), embedding);
}

function gpt2Graph(d: DecoderGraph, c: Gpt2Config): void {
  const g = d.g;
  const { hiddenSize: C, numHeads: H, headDim: D } = c;
  const P = 'transformer.';
  const eps = g.f32(c.layerNormEps);

  const wte = d.weight(`${P}wte.weight`);
  d.addPositions();
  const tokens = g.op('Gather', [wte, INPUT_NAME], `${P}wte`, [int('axis', 0)]); // [B, T, C]
  const positions = g.op('Gather', [d.weight(`${P}wpe.weight`), d.positions], `${P}wpe`, [int('axis', 0)]); // [T, C]
  let h = g.op('Add', [tokens, positions], `${P}embeddings`);
  const bias = d.attentionBias(null);

  const layerNorm = (x: string, path: string) => {
    const mean = g.op('ReduceMean', [x], `${path}.mean`, [ints('axes', [-1]), int('keepdims', 1)]);
    const centered = g.op('Sub', [x, mean], `${path}.centered`);
    const variance = g.op('ReduceMean', [g.op('Mul', [centered, centered], `${path}.square`)], `${path}.variance`, [ints('axes', [-1]), int('keepdims', 1)]);
    const std = g.op('Sqrt', [g.op('Add', [variance, eps], `${path}.variance_eps`)], `${path}.std`);
    const normalized = g.op('Div', [centered, std], `${path}.normalized`);
    return g.op('Add', [g.op('Mul', [normalized, d.weight(`${path}.weight`)], `${path}.scaled`), d.weight(`${path}.bias`)], path);
  };
  // Conv1D: the weight is stored [in, out] already.
  const conv1d = (x: string, path: string) => d.linear(x, d.weight(`${path}.weight`), d.weight(`${path}.bias`), path);
  // gelu_new: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
  const gelu = (x: string, hint: string) => {
    const cube = g.op('Pow', [x, g.f32(3)], `${hint}.cube`);
    const inner = g.op('Add', [x, g.op('Mul', [cube, g.f32(0.044715)], `${hint}.cube_scaled`)], `${hint}.inner`);
    const tanh = g.op('Tanh', [g.op('Mul', [inner, g.f32(Math.sqrt(2 / Math.PI))], `${hint}.tanh_input`)], `${hint}.tanh`);
    const gate = g.op('Mul', [g.op('Add', [tanh, g.f32(1)], `${hint}.one_plus_tanh`), g.f32(0.5)], `${hint}.gate`);
    return g.op('Mul', [x, gate], hint);
  };

  for (let layer = 0; layer < c.numLayers; layer++) {
    const p = `${P}h.${layer}.`;
    const a = layerNorm(h, `${p}ln_1`);
    const qkv = conv1d(a, `${p}attn.c_attn`); // [B, T, 3C]
    const part = (index: number, name: string) =>
      d.splitHeads(g.op('Slice', [qkv, g.i64([index * C]), g.i64([(index + 1) * C]), g.i64([2])], `${p}attn.${name}`), H, `${p}attn.${name}`);
    let divisor = c.scaleAttnWeights ? Math.sqrt(D) : 1;
    if (c.scaleAttnByInverseLayerIdx) divisor *= layer + 1;
    const context = d.attend(part(0, 'q'), part(1, 'k'), part(2, 'v'), bias, { div: divisor }, `${p}attn`);
    const h1 = g.op('Add', [h, conv1d(context, `${p}attn.c_proj`)], `${p}attention_residual`);

    const m = layerNorm(h1, `${p}ln_2`);
    const hidden = gelu(conv1d(m, `${p}mlp.c_fc`), `${p}mlp.gelu`);
    h = g.op('Add', [h1, conv1d(hidden, `${p}mlp.c_proj`)], `${p}mlp_residual`);
  }
  d.head(layerNorm(h, `${P}ln_f`), wte);
}

/**
 * The graph of a model: weights must hold exactly the tensors of expectedTensors(config) (checked by
 * exportOnnx), as f32 in their state-dict layouts.
 */
export function buildDecoderGraph(config: ModelConfig, weights: ReadonlyMap<string, Float32Array>, options: GraphOptions = {}): GraphProto {
  const rotaryPositions = options.rotaryPositions;
  if (rotaryPositions !== undefined && !(Number.isSafeInteger(rotaryPositions) && rotaryPositions > 0)) {
    throw new RangeError(`ONNX export: rotaryPositions must be a positive integer, got ${rotaryPositions}`);
  }
  const d = new DecoderGraph(config, weights);
  if (config.family === 'gpt2') gpt2Graph(d, config);
  else llamaGraph(d, config, options);
  const V = config.vocabSize;
  return {
    name: `tabtune ${config.modelType}`,
    nodes: d.g.nodes,
    initializers: d.g.initializers,
    inputs: [{ name: INPUT_NAME, elemType: DataType.INT64, dims: [BATCH_DIM, SEQUENCE_DIM] }],
    outputs: [{ name: OUTPUT_NAME, elemType: DataType.FLOAT, dims: [BATCH_DIM, SEQUENCE_DIM, V] }],
  };
}
