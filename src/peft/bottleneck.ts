// A bottleneck adapter module (Houlsby et al. 2019; Pfeiffer et al. 2020), as AdapterHub's `Adapter`
// (adapter-hub/adapters src/adapters/methods/modeling.py) computes it without the optional layer norms,
// gating or PHM layers:
//   delta(x) = scaling · (W_up · act(W_down · x + b_down) + b_up),   out = residual + delta(x)
// x [..., C] (R rows in all), W_down [M, C], b_down [M], W_up [C, M], b_up [C], M = the bottleneck width
// (C // reduction_factor, at least 1). AdapterHub applies its dropout to the scaled up-projection, before
// the residual; so does delta() when given a dropout stream.
// The projections are skinny products (one side M, or an inner dimension of R tokens for the weight
// gradients) and run on the LoRA product kernels (ops/lora.ts loraProduct): narrow tiles for x·W_downᵀ,
// split-K for dW_down = gᵀ·x and dW_up = dYᵀ·a, the big-tile GEMM where the output is wide both ways.
// The biases are added with the broadcasting `add`, whose backward sums the bias gradient
// deterministically. Tensors are named by AdapterHub's module names inside one adapter:
// `adapter_down.0.{weight,bias}` (index 0 of its nn.Sequential of Linear and activation) and
// `adapter_up.{weight,bias}`.

import type { Engine } from '../engine/engine.ts';
import { ShapeError, shapeText } from '../engine/errors.ts';
import { gelu, geluErf, relu, silu } from '../engine/ops/activation.ts';
import { add, scale } from '../engine/ops/arithmetic.ts';
import { requireDType, requireShape } from '../engine/ops/checks.ts';
import { dropout } from '../engine/ops/dropout.ts';
import { loraProduct } from '../engine/ops/lora.ts';
import { reshape } from '../engine/ops/reshape.ts';
import type { Tensor } from '../engine/tensor.ts';

/**
 * The non-linearities, by transformers' ACT2FN names as AdapterHub resolves them (lower-cased):
 * "gelu" is the exact erf GELU, "gelu_new" and "gelu_pytorch_tanh" the tanh form, "swish" = "silu".
 */
export const BOTTLENECK_NON_LINEARITIES = ['relu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'swish', 'silu'] as const;
export type BottleneckNonLinearity = (typeof BOTTLENECK_NON_LINEARITIES)[number];

/**
 * Initialisations (AdapterHub's init_weights): "mam_adapter" = Kaiming-uniform down (a = √5, so
 * U(±1/√C)), zero biases and a zero up-projection: the adapter starts as the exact identity.
 * "bert" = every weight N(0, 0.02), biases 0 (near identity). "houlsby" = weights from N(0, 0.01)
 * truncated to ±0.02, biases 0.
 */
export const BOTTLENECK_INITS = ['mam_adapter', 'bert', 'houlsby'] as const;
export type BottleneckInit = (typeof BOTTLENECK_INITS)[number];

/** A bad argument to the adapter module (sizes, scaling, non-linearity). */
export class BottleneckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export interface BottleneckAdapterOptions {
  /** C */
  hiddenSize: number;
  /** M */
  downSize: number;
  nonLinearity: BottleneckNonLinearity;
  /** Multiplies the up-projection (AdapterHub's `scaling` as a float); default 1. */
  scaling?: number;
  /** Dropout probability on the scaled up-projection while training; default 0. */
  dropout?: number;
  init?: BottleneckInit;
  /** Seed of the initial weights (mulberry32 stream); default 0. */
  seed?: number;
  /** Prefix of the tensors' names (for messages and memory reports). */
  name?: string;
}

/** Where a training step's dropout masks come from: the Philox stream of the dropout op. */
export interface DropoutStream {
  seed: number;
  /** Counter offset of this call; the caller advances it by the returned `used` count. */
  offset: number;
}

export const ADAPTER_DOWN_WEIGHT = 'adapter_down.0.weight';
export const ADAPTER_DOWN_BIAS = 'adapter_down.0.bias';
export const ADAPTER_UP_WEIGHT = 'adapter_up.weight';
export const ADAPTER_UP_BIAS = 'adapter_up.bias';

/** The four tensors' names inside an adapter, in AdapterHub's state-dict order, with their shapes. */
export function bottleneckTensorShapes(hiddenSize: number, downSize: number): [string, number[]][] {
  return [
    [ADAPTER_DOWN_WEIGHT, [downSize, hiddenSize]],
    [ADAPTER_DOWN_BIAS, [downSize]],
    [ADAPTER_UP_WEIGHT, [hiddenSize, downSize]],
    [ADAPTER_UP_BIAS, [hiddenSize]],
  ];
}

/** One adapter module: it owns its four tensors (category 'adapters', requiresGrad). */
export class BottleneckAdapter {
  readonly hiddenSize: number;
  readonly downSize: number;
  readonly nonLinearity: BottleneckNonLinearity;
  readonly scaling: number;
  readonly dropout: number;
  /** [M, C] */
  readonly downWeight: Tensor;
  /** [M] */
  readonly downBias: Tensor;
  /** [C, M] */
  readonly upWeight: Tensor;
  /** [C] */
  readonly upBias: Tensor;
  private disposed = false;

  constructor(engine: Engine, options: BottleneckAdapterOptions) {
    const { hiddenSize: C, downSize: M } = options;
    if (!Number.isSafeInteger(C) || C < 1 || !Number.isSafeInteger(M) || M < 1) {
      throw new BottleneckError(`bottleneck adapter: hidden size ${C} and bottleneck width ${M} must be positive integers`);
    }
    const scaling = options.scaling ?? 1;
    if (!Number.isFinite(scaling)) throw new BottleneckError(`bottleneck adapter: scaling must be a finite number, got ${scaling}`);
    const p = options.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new BottleneckError(`bottleneck adapter: dropout must be in [0, 1), got ${p}`);
    if (!(BOTTLENECK_NON_LINEARITIES as readonly string[]).includes(options.nonLinearity)) {
      throw new BottleneckError(`bottleneck adapter: unknown non-linearity ${JSON.stringify(options.nonLinearity)} (supported: ${BOTTLENECK_NON_LINEARITIES.join(', ')})`);
    }
    const init = options.init ?? 'mam_adapter';
    if (!(BOTTLENECK_INITS as readonly string[]).includes(init)) {
      throw new BottleneckError(`bottleneck adapter: unknown init ${JSON.stringify(init)} (supported: ${BOTTLENECK_INITS.join(', ')})`);
    }
    this.hiddenSize = C;
    this.downSize = M;
    this.nonLinearity = options.nonLinearity;
    this.scaling = scaling;
    this.dropout = p;

    const values = initialWeights(init, C, M, options.seed ?? 0);
    const prefix = options.name ? `${options.name}.` : '';
    const make = (name: string, data: Float32Array, shape: number[]) =>
      engine.keep(engine.tensor(data, shape, { name: prefix + name, requiresGrad: true, category: 'adapters' }));
    const created: Tensor[] = [];
    try {
      for (const [name, shape] of bottleneckTensorShapes(C, M)) created.push(make(name, values.get(name)!, shape));
    } catch (error) {
      for (const tensor of created) tensor.dispose();
      throw error;
    }
    [this.downWeight, this.downBias, this.upWeight, this.upBias] = created;
  }

  /** The tensors by their names inside the adapter (`adapter_down.0.weight`, ...). */
  parameters(): Map<string, Tensor> {
    return new Map([
      [ADAPTER_DOWN_WEIGHT, this.downWeight],
      [ADAPTER_DOWN_BIAS, this.downBias],
      [ADAPTER_UP_WEIGHT, this.upWeight],
      [ADAPTER_UP_BIAS, this.upBias],
    ]);
  }

  /** 2·M·C + M + C */
  get parameterCount(): number {
    return 2 * this.downSize * this.hiddenSize + this.downSize + this.hiddenSize;
  }

  /**
   * scaling · up(act(down(x))) [..., C], with dropout on it when a stream is given and dropout > 0
   * (`used` is then the number of counters consumed). Exactly zero while the up-projection is zero.
   */
  delta(x: Tensor, stream?: DropoutStream): { delta: Tensor; used: number } {
    this.checkAlive();
    const op = 'bottleneck adapter';
    requireDType(op, x, 'f32');
    const C = this.hiddenSize;
    if (x.rank < 1 || x.shape[x.rank - 1] !== C) {
      throw new ShapeError(`${op}: input ${shapeText(x.shape)} does not end in the hidden size ${C}`);
    }
    const engine = x.engine;
    let used = 0;
    const delta = engine.scope(() => {
      const rows = reshape(x, [-1, C]); // [R, C]
      const down = add(projection(rows, this.downWeight), this.downBias); // [R, M]
      const up = add(projection(activate(down, this.nonLinearity), this.upWeight), this.upBias); // [R, C]
      let out = this.scaling === 1 ? up : scale(up, this.scaling);
      if (stream && this.dropout > 0) {
        out = dropout(out, this.dropout, stream.seed, stream.offset);
        used = out.size;
      }
      return reshape(out, x.shape);
    });
    return { delta, used };
  }

  /** residual + delta(x) (no dropout). */
  forward(x: Tensor, residual: Tensor): Tensor {
    return x.engine.scope(() => add(residual, this.delta(x).delta));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const tensor of [this.downWeight, this.downBias, this.upWeight, this.upBias]) tensor.dispose();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private checkAlive(): void {
    if (this.disposed) throw new BottleneckError('bottleneck adapter: used after dispose()');
  }
}

/** The non-linearity by name. */
export function activate(x: Tensor, nonLinearity: BottleneckNonLinearity): Tensor {
  switch (nonLinearity) {
    case 'relu':
      return relu(x);
    case 'gelu':
      return geluErf(x);
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
      return gelu(x);
    case 'swish':
    case 'silu':
      return silu(x);
  }
}

/**
 * y [R, O] = x [R, I] · Wᵀ with W [O, I], on the LoRA product kernels; backward dx = dY · W and
 * dW = dYᵀ · x (split over the R rows), each only when needed.
 */
export function projection(x: Tensor, W: Tensor): Tensor {
  const op = 'bottleneck projection';
  requireDType(op, x, 'f32');
  requireDType(op, W, 'f32');
  if (x.rank !== 2 || W.rank !== 2) throw new ShapeError(`${op}: x must be [R, I] and W [O, I], got ${shapeText(x.shape)} and ${shapeText(W.shape)}`);
  const [R, I] = x.shape;
  const O = W.shape[0];
  requireShape(op, W, [O, I], `W for x ${shapeText(x.shape)}`);
  const engine = x.engine;
  const out = engine.empty([R, O]);
  loraProduct(out, x, W, { M: R, N: O, K: I, transposeQ: true }, 1, 0);
  if (engine.needsGrad([x, W])) {
    // dx reads W, dW reads x: keep only what will be read.
    const saved = [...(x.requiresGrad ? [W] : []), ...(W.requiresGrad ? [x] : [])];
    engine.record(out, [x, W], saved, (dOut, [needX, needW]) => {
      let dx: Tensor | null = null;
      if (needX) {
        dx = engine.empty([R, I]);
        loraProduct(dx, dOut, W, { M: R, N: I, K: O }, 1, 0);
      }
      let dW: Tensor | null = null;
      if (needW) {
        dW = engine.empty([O, I]);
        loraProduct(dW, dOut, x, { M: O, N: I, K: R, transposeL: true }, 1, 0);
      }
      return [dx, dW];
    });
  }
  return out;
}

/** Write host values into an adapter tensor (import), after checking the element count. */
export function uploadInto(tensor: Tensor, data: Float32Array, what: string): void {
  if (data.length !== tensor.size) throw new ShapeError(`${what}: ${data.length} values for ${tensor.describe()}`);
  if (data.length > 0) tensor.engine.gpu.upload(tensor.buffer, data);
}

// ---------------------------------------------------------------------------------------------------------------
// Initial values

function initialWeights(init: BottleneckInit, C: number, M: number, seed: number): Map<string, Float32Array> {
  const random = seededRandom(seed);
  const downWeight = new Float32Array(M * C);
  const upWeight = new Float32Array(C * M);
  if (init === 'mam_adapter') {
    // kaiming_uniform_(a = √5): bound = √(6 / ((1 + a²) · fan_in)) = 1 / √C.
    const bound = 1 / Math.sqrt(C);
    for (let i = 0; i < downWeight.length; i++) downWeight[i] = (random() * 2 - 1) * bound;
  } else if (init === 'bert') {
    const normal = normalSampler(random);
    for (const weight of [downWeight, upWeight]) for (let i = 0; i < weight.length; i++) weight[i] = 0.02 * normal();
  } else {
    const normal = normalSampler(random);
    for (const weight of [downWeight, upWeight]) {
      for (let i = 0; i < weight.length; i++) {
        let value: number;
        do value = 0.01 * normal();
        while (Math.abs(value) > 0.02);
        weight[i] = value;
      }
    }
  }
  return new Map([
    [ADAPTER_DOWN_WEIGHT, downWeight],
    [ADAPTER_DOWN_BIAS, new Float32Array(M)],
    [ADAPTER_UP_WEIGHT, upWeight],
    [ADAPTER_UP_BIAS, new Float32Array(C)],
  ]);
}

/** mulberry32: uniform [0, 1) from a 32-bit seed; reproducible initial weights. */
function seededRandom(seed: number): () => number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new BottleneckError(`bottleneck adapter: seed must be a non-negative integer, got ${seed}`);
  let state = seed % 2 ** 32 >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples by Box–Muller. */
function normalSampler(random: () => number): () => number {
  return () => {
    const u = 1 - random(); // (0, 1]: log(0) never happens
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
}
