// LoRA: the low-rank branch s · B(A · dropout(x)) of an adapted linear layer, added into the base
// layer's output, its backward, and merging s · B A into the base weight (shaders/lora.wgsl).
// x [..., I] (T rows in all), A [R, I], B [O, R] (PEFT's lora_A / lora_B weights), s = alpha / R or
// alpha / √R. The only intermediate is h = A x [T, R], kept for B's gradient. Backward:
//   g = s · dY · B [T, R],  dx = g · A,  dA = gᵀ · x,  dB = s · dYᵀ · h
// Kernel choice by shape (loraProductPlan): products with the rank as one side of the output (h, g)
// get tiles 8 to 32 wide on that side; dA and dB, whose inner dimension is the token count, are split
// over the tokens (partial sums, then a fixed-order sum); only a product whose output is wide both
// ways with a short inner dimension (s·h·Bᵀ and g·A over many tokens, the merge) runs on the
// big-tile GEMM of shaders/matmul.wgsl. Gradients are computed only for the inputs that need them.
// Dropout on x is the `dropout` op (same Philox stream, so the mask is reproducible from seed and
// offset); its output is what A's gradient reads.

import { f32, u32 } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { clone } from '../kernels/elementwiseCore.ts';
import { grid1d, MAX_WORKGROUPS_PER_DIMENSION } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType, requireShape } from './checks.ts';
import { dropout } from './dropout.ts';
import { matmulInto } from './matmul.ts';

export interface LoraOptions {
  /** Dropout on the branch's input, as the `dropout` op: probability p, Philox seed and counter offset. */
  dropout?: { p: number; seed: number; offset?: number };
}

export interface LoraMergeOptions {
  /** W is stored [I, O] (GPT-2's Conv1D) instead of [O, I]: the transpose of s · B A is added. */
  fanInFanOut?: boolean;
}

interface LoraDims {
  rows: number;
  inFeatures: number;
  outFeatures: number;
  rank: number;
}

/** The branch alone: s · B(A · dropout(x)), [..., O]. */
export function loraDelta(x: Tensor, A: Tensor, B: Tensor, scale: number, options: LoraOptions = {}): Tensor {
  const op = 'loraDelta';
  const dims = checkLora(op, x, A, B, scale);
  checkDropout(op, x, options);
  const engine = x.engine;
  const out = engine.empty([...x.shape.slice(0, -1), dims.outFeatures]);
  branch(out, false, null, x, A, B, scale, dims, options);
  return out;
}

/**
 * baseOut + s · B(A · dropout(x)), [..., O], computed in baseOut's buffer when nothing else holds
 * baseOut: the returned tensor then shares that buffer and baseOut itself must not be read as the
 * base output any more. When baseOut is referenced elsewhere (saved for a backward pass, kept by the
 * caller with retain()) or is one of the other operands, the sum goes to a copy instead. A view of a
 * tensor that something else reads cannot be detected: pass a base output that nothing else reads.
 */
export function loraAddInto(baseOut: Tensor, x: Tensor, A: Tensor, B: Tensor, scale: number, options: LoraOptions = {}): Tensor {
  const op = 'loraAddInto';
  requireDType(op, baseOut, 'f32');
  const dims = checkLora(op, x, A, B, scale);
  requireShape(op, baseOut, [...x.shape.slice(0, -1), dims.outFeatures], `the base output for x ${shapeText(x.shape)} and B ${shapeText(B.shape)}`);
  checkDropout(op, x, options);
  const engine = x.engine;
  const inPlace = baseOut.references === 1 && baseOut !== x && baseOut !== A && baseOut !== B;
  const out = inPlace ? engine.adoptView(baseOut.view(baseOut.shape)) : clone(baseOut);
  branch(out, true, baseOut, x, A, B, scale, dims, options);
  return out;
}

/** W += s · B A in place (W [O, I], or [I, O] with fanInFanOut). Not recorded for backward. */
export function loraMerge(W: Tensor, A: Tensor, B: Tensor, scale: number, options: LoraMergeOptions = {}): void {
  mergeInto('loraMerge', W, A, B, scale, options);
}

/** W −= s · B A in place: undoes loraMerge up to f32 rounding. */
export function loraUnmerge(W: Tensor, A: Tensor, B: Tensor, scale: number, options: LoraMergeOptions = {}): void {
  mergeInto('loraUnmerge', W, A, B, -scale, options);
}

/**
 * out (+)= s · B(A · dropout(x)), and the backward node: gradients for [base, x, A, B] when base is
 * given (the base output's gradient is dOut itself), else for [x, A, B].
 */
function branch(
  out: Tensor,
  accumulate: boolean,
  base: Tensor | null,
  x: Tensor,
  A: Tensor,
  B: Tensor,
  scale: number,
  dims: LoraDims,
  options: LoraOptions,
): void {
  const engine = x.engine;
  const { rows, inFeatures: I, outFeatures: O, rank: R } = dims;
  const drop = options.dropout;
  const input = drop && drop.p > 0 ? dropout(x, drop.p, drop.seed, drop.offset ?? 0) : x;

  // h [T, R] = input · Aᵀ;  out [T, O] = s · h · Bᵀ (+ out)
  const h = engine.empty([rows, R]);
  loraProduct(h, input, A, { M: rows, N: R, K: I, transposeQ: true }, 1, 0);
  loraProduct(out, h, B, { M: rows, N: O, K: R, transposeQ: true }, scale, accumulate ? 1 : 0);

  const inputs = base ? [base, input, A, B] : [input, A, B];
  if (engine.needsGrad(inputs)) {
    engine.record(out, inputs, [input, A, B, h], (dOut, needs) => {
      const [needBase, needX, needA, needB] = base ? needs : [false, ...needs];
      let g: Tensor | null = null;
      if (needX || needA) {
        g = engine.empty([rows, R]);
        loraProduct(g, dOut, B, { M: rows, N: R, K: O }, scale, 0);
      }
      let dx: Tensor | null = null;
      if (needX) {
        dx = engine.empty(input.shape);
        loraProduct(dx, g!, A, { M: rows, N: I, K: R }, 1, 0);
      }
      let dA: Tensor | null = null;
      if (needA) {
        dA = engine.empty([R, I]);
        loraProduct(dA, g!, input, { M: R, N: I, K: rows, transposeL: true }, 1, 0);
      }
      let dB: Tensor | null = null;
      if (needB) {
        dB = engine.empty([O, R]);
        loraProduct(dB, dOut, h, { M: O, N: R, K: rows, transposeL: true }, scale, 0);
      }
      g?.dispose();
      const grads = [dx, dA, dB];
      return base ? [needBase ? dOut : null, ...grads] : grads;
    });
  }
  h.dispose(); // the tape holds it when backward needs it
  if (input !== x) input.dispose(); // likewise the dropout output (its own node, if any, keeps no buffer)
}

function mergeInto(op: string, W: Tensor, A: Tensor, B: Tensor, signedScale: number, options: LoraMergeOptions): void {
  for (const tensor of [W, A, B]) requireDType(op, tensor, 'f32');
  const { R, I, O } = adapterDims(op, A, B);
  const fanInFanOut = options.fanInFanOut ?? false;
  requireShape(op, W, fanInFanOut ? [I, O] : [O, I], `the base weight for A ${shapeText(A.shape)} and B ${shapeText(B.shape)}${fanInFanOut ? ' (fan_in_fan_out: [in, out])' : ''}`);
  if (!Number.isFinite(signedScale)) throw new RangeError(`${op}: scale must be a finite number, got ${signedScale}`);
  if (W === A || W === B) throw new ShapeError(`${op}: the base weight cannot be one of the adapter's own matrices`);
  if (fanInFanOut) {
    // W [I, O] += s · Aᵀ · Bᵀ
    loraProduct(W, A, B, { M: I, N: O, K: R, transposeL: true, transposeQ: true }, signedScale, 1);
  } else {
    // W [O, I] += s · B · A
    loraProduct(W, B, A, { M: O, N: I, K: R }, signedScale, 1);
  }
}

function checkLora(op: string, x: Tensor, A: Tensor, B: Tensor, scale: number): LoraDims {
  for (const tensor of [x, A, B]) requireDType(op, tensor, 'f32');
  const { R, I, O } = adapterDims(op, A, B);
  if (x.rank < 1 || x.shape[x.rank - 1] !== I) {
    throw new ShapeError(`${op}: x ${shapeText(x.shape)} must end in ${I}, the in-features of A ${shapeText(A.shape)}`);
  }
  if (!Number.isFinite(scale)) throw new RangeError(`${op}: scale must be a finite number, got ${scale}`);
  const rows = x.shape.slice(0, -1).reduce((product, dim) => product * dim, 1);
  return { rows, inFeatures: I, outFeatures: O, rank: R };
}

/** A [R, I] and B [O, R] with R ≥ 1. */
function adapterDims(op: string, A: Tensor, B: Tensor): { R: number; I: number; O: number } {
  if (A.rank !== 2 || B.rank !== 2 || A.shape[0] !== B.shape[1] || A.shape[0] < 1) {
    throw new ShapeError(`${op}: A must be [r, in] and B [out, r] with the same rank r ≥ 1, got A ${shapeText(A.shape)} and B ${shapeText(B.shape)}`);
  }
  return { R: A.shape[0], I: A.shape[1], O: B.shape[0] };
}

/** The dropout op's own checks, made before anything is dispatched. */
function checkDropout(op: string, x: Tensor, options: LoraOptions): void {
  if (!options.dropout) return;
  const { p, seed, offset = 0 } = options.dropout;
  if (!(p >= 0 && p < 1)) throw new RangeError(`${op}: dropout p must be in [0, 1), got ${p}`);
  for (const [what, value] of [['seed', seed], ['offset', offset]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${op}: dropout ${what} must be an integer in [0, 2^53), got ${value}`);
  }
  if (offset + x.size > Number.MAX_SAFE_INTEGER) throw new RangeError(`${op}: dropout offset ${offset} + ${x.size} elements passes 2^53`);
}

// ---------------------------------------------------------------------------------------------
// The product kernel: C [M, N] = alpha · op(L) [M, K] · op(Q) [K, N] + beta · C.

/** One product's shape: L is stored [M, K] ([K, M] when transposeL), Q [K, N] ([N, K] when transposeQ). */
export interface LoraProductShape {
  M: number;
  N: number;
  K: number;
  transposeL?: boolean;
  transposeQ?: boolean;
}

/** The kernel, tile shape and K split chosen for a product (exported for tests and benchmarks). */
export interface LoraProductPlan {
  /** A wide output with a short K: the big-tile GEMM of shaders/matmul.wgsl; the rest ignored. */
  gemm: boolean;
  tileM: number;
  tileN: number;
  tileK: number;
  chunks: number;
  kPerChunk: number;
}

/** THREADS · CELL² in the shader: the outputs of one workgroup's tile. */
const TILE_AREA = 256 * 2 * 2;
/** Fewer workgroups than this over M and N: split K to fill the GPU. */
const TARGET_WORKGROUPS = 512;
/** The smallest slice of K worth a workgroup of its own. */
const MIN_CHUNK_K = 32;
const SUM_WORKGROUP_SIZE = 256;
/** Both sides of the output at least this wide (and K no longer): the big-tile GEMM. */
const GEMM_MIN_SIDE = 64;

const nextPowerOfTwo = (value: number) => 2 ** Math.ceil(Math.log2(Math.max(1, value)));
const clamp = (value: number, low: number, high: number) => Math.min(high, Math.max(low, value));

/**
 * A tile fitted to the product's shape: the narrow side (the rank) gets a narrow tile, 8 to 32 wide,
 * and the other side the rest of the tile's 1024 outputs, so few threads idle. A K long next to a
 * small output (the weight gradients, whose K is the token count) is split into chunks so that
 * enough workgroups run; `chunksOverride` forces this kernel and that split (tests, benchmarks).
 * An output at least 64 wide both ways with K no longer than that (y += s·h·Bᵀ and dx = g·A over
 * many tokens, the merge) is what the big-tile GEMM is built for: measured on an H200 it ran
 * 4096 x 576 x 64 in 34 µs against 82 µs here, so such products go to it.
 */
export function loraProductPlan(M: number, N: number, K: number, chunksOverride?: number): LoraProductPlan {
  const narrow = clamp(nextPowerOfTwo(Math.min(M, N)), 8, 32);
  const tileM = N <= M ? TILE_AREA / narrow : narrow;
  const tileN = TILE_AREA / tileM;
  const tileK = clamp(nextPowerOfTwo(K), 1, 16);
  const gemm = chunksOverride === undefined && Math.min(M, N) >= GEMM_MIN_SIDE && K <= Math.min(M, N);
  const tiles = Math.ceil(M / tileM) * Math.ceil(N / tileN);
  const wanted = chunksOverride ?? Math.min(Math.ceil(TARGET_WORKGROUPS / tiles), Math.floor(K / MIN_CHUNK_K));
  const kPerChunk = Math.max(tileK, Math.ceil(Math.ceil(K / Math.max(1, wanted)) / tileK) * tileK);
  const chunks = gemm ? 1 : Math.max(1, Math.ceil(K / kPerChunk));
  return { gemm, tileM, tileN, tileK, chunks, kPerChunk: chunks === 1 ? Math.max(K, tileK) : kPerChunk };
}

/**
 * C = alpha · op(L) · op(Q) + beta · C on the GPU (C row-major [M, N]); beta 0 never reads C.
 * op(L) and op(Q) must not share C's buffer.
 * Split K goes through a [chunks, M, N] partial buffer and a second, fixed-order summing pass.
 */
export function loraProduct(
  c: Tensor,
  l: Tensor,
  q: Tensor,
  shape: LoraProductShape,
  alpha: number,
  beta: number,
  plan: LoraProductPlan = loraProductPlan(shape.M, shape.N, shape.K),
): void {
  const { M, N, K } = shape;
  const transposeL = shape.transposeL ?? false;
  const transposeQ = shape.transposeQ ?? false;
  if (M === 0 || N === 0) return;
  if (plan.gemm) {
    matmulInto(c, l, q, { batch: 1, M, N, K, aBatched: false, bBatched: false }, transposeL, transposeQ, alpha, beta);
    return;
  }
  const engine = c.engine;
  const groupsX = Math.ceil(N / plan.tileN);
  const groupsY = Math.ceil(M / plan.tileM);
  if (groupsX > MAX_WORKGROUPS_PER_DIMENSION || groupsY > MAX_WORKGROUPS_PER_DIMENSION || plan.chunks > MAX_WORKGROUPS_PER_DIMENSION) {
    throw new ShapeError(`lora: a ${M} x ${K} by ${K} x ${N} product needs more than ${MAX_WORKGROUPS_PER_DIMENSION} workgroups along one dimension`);
  }
  const params = [
    u32(M),
    u32(N),
    u32(K),
    u32(transposeL ? 1 : K), // L(m, k) = l[m · l_stride_m + k · l_stride_k]
    u32(transposeL ? M : 1),
    u32(transposeQ ? 1 : N), // Q(k, n) = q[k · q_stride_k + n · q_stride_n]
    u32(transposeQ ? K : 1),
    u32(plan.kPerChunk),
    u32(plan.chunks),
    u32(plan.tileM),
    u32(plan.tileN),
    u32(plan.tileK),
    f32(alpha),
    f32(beta),
  ];
  if (plan.chunks === 1) {
    engine.gpu.dispatch({ shader: 'lora', entryPoint: 'product' }, { params, bindings: [l.binding, q.binding, c.binding], workgroups: [groupsX, groupsY, 1] });
    return;
  }
  const partials = engine.empty([plan.chunks, M, N]);
  engine.gpu.dispatch({ shader: 'lora', entryPoint: 'product_partial' }, {
    params,
    bindings: [l.binding, q.binding, undefined, partials.binding],
    workgroups: [groupsX, groupsY, plan.chunks],
  });
  engine.gpu.dispatch(
    { shader: 'lora', entryPoint: 'sum_partials' },
    { params, bindings: [undefined, undefined, c.binding, partials.binding], workgroups: grid1d(M * N, SUM_WORKGROUP_SIZE) },
  );
  partials.dispose();
}
