// matmul: C = op(A) · op(B), batched, with either operand transposed and batch broadcasting.
// A is [...batch, M, K] ([..., K, M] when transposeA); B is [...batch, K, N] ([..., N, K] when
// transposeB) or shares one matrix across the batch. Backward reuses the same kernel.

import { f32, u32 } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import type { Tensor } from '../tensor.ts';
import { grid1d } from '../kernels/grid.ts';
import { requireDType } from './checks.ts';

export interface MatmulOptions {
  transposeA?: boolean;
  transposeB?: boolean;
}

export interface MatmulDims {
  batch: number;
  M: number;
  N: number;
  K: number;
  aBatched: boolean;
  bBatched: boolean;
}

const TILE = 64;

export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const transposeA = options.transposeA ?? false;
  const transposeB = options.transposeB ?? false;
  requireDType('matmul', a, 'f32');
  requireDType('matmul', b, 'f32');
  const dims = matmulDims(a, b, transposeA, transposeB);
  const batchShape = (a.rank >= b.rank ? a : b).shape.slice(0, -2);
  const engine = a.engine;
  const out = engine.empty([...batchShape, dims.M, dims.N]);
  matmulInto(out, a, b, dims, transposeA, transposeB, 1, 0);

  if (engine.needsGrad([a, b])) {
    engine.record(out, [a, b], [a, b], (dOut, [needA, needB]) => [
      needA ? matmulGradA(dOut, a, b, dims, transposeA, transposeB) : null,
      needB ? matmulGradB(dOut, a, b, dims, transposeA, transposeB) : null,
    ]);
  }
  return out;
}

function matmulDims(a: Tensor, b: Tensor, transposeA: boolean, transposeB: boolean): MatmulDims {
  const fail = () =>
    new ShapeError(
      `matmul: cannot multiply ${shapeText(a.shape)}${transposeA ? 'ᵀ' : ''} by ${shapeText(b.shape)}${transposeB ? 'ᵀ' : ''}`,
    );
  if (a.rank < 2 || b.rank < 2) throw fail();
  const [aRows, aCols] = a.shape.slice(-2);
  const [bRows, bCols] = b.shape.slice(-2);
  const M = transposeA ? aCols : aRows;
  const K = transposeA ? aRows : aCols;
  const kB = transposeB ? bCols : bRows;
  const N = transposeB ? bRows : bCols;
  if (K !== kB) throw fail();
  const aBatch = a.size / (aRows * aCols || 1);
  const bBatch = b.size / (bRows * bCols || 1);
  const aBatchShape = a.shape.slice(0, -2);
  const bBatchShape = b.shape.slice(0, -2);
  const sameBatch = aBatchShape.length === bBatchShape.length && aBatchShape.every((dim, i) => dim === bBatchShape[i]);
  if (!sameBatch && aBatch !== 1 && bBatch !== 1) throw fail();
  if (!sameBatch && ((aBatch === 1 && a.rank > 2) || (bBatch === 1 && b.rank > 2))) throw fail();
  return { batch: Math.max(aBatch, bBatch), M, N, K, aBatched: aBatch > 1 || sameBatch, bBatched: bBatch > 1 || sameBatch };
}

/**
 * 'tiled': workgroup-memory tiles, for real GPUs. 'direct': no workgroup memory and no barriers, for
 * software adapters, where a barrier is a context switch per invocation (15× faster for one-row
 * products on SwiftShader). On an H200 the direct kernel was 2× slower even for one row (too few
 * workgroups), so real GPUs always take the tiled one.
 */
export type MatmulKernel = 'tiled' | 'direct';

const DIRECT_WORKGROUP = 64;
const BLOCK = 4; // THREAD_ROWS = THREAD_COLS in the shader

export function chooseMatmulKernel(softwareAdapter: boolean): MatmulKernel {
  return softwareAdapter ? 'direct' : 'tiled';
}

/** out = alpha · op(a) · op(b) + beta · out, on the GPU. */
export function matmulInto(
  out: Tensor,
  a: Tensor,
  b: Tensor,
  dims: MatmulDims,
  transposeA: boolean,
  transposeB: boolean,
  alpha: number,
  beta: number,
  kernel: MatmulKernel = chooseMatmulKernel(out.engine.gpu.info.software),
): void {
  const { batch, M, N, K } = dims;
  if (M === 0 || N === 0 || batch === 0) return;
  const aStrideM = transposeA ? 1 : K;
  const aStrideK = transposeA ? M : 1;
  const bStrideK = transposeB ? 1 : N;
  const bStrideN = transposeB ? K : 1;
  const maxGroups = out.engine.gpu.info.limits.maxComputeWorkgroupsPerDimension;
  if (batch > maxGroups) throw new ShapeError(`matmul: batch ${batch} exceeds the device's ${maxGroups} workgroups per dimension`);
  const blocks = Math.ceil(M / BLOCK) * Math.ceil(N / BLOCK);
  const [x, y] = grid1d(blocks, DIRECT_WORKGROUP);
  out.engine.gpu.dispatch(
    { shader: 'matmul', entryPoint: kernel === 'tiled' ? 'matmul' : 'matmul_direct' },
    {
      params: [
        u32(M),
        u32(N),
        u32(K),
        u32(dims.aBatched ? M * K : 0),
        u32(aStrideM),
        u32(aStrideK),
        u32(dims.bBatched ? K * N : 0),
        u32(bStrideK),
        u32(bStrideN),
        f32(alpha),
        f32(beta),
      ],
      bindings: [a.binding, b.binding, out.binding],
      workgroups: kernel === 'tiled' ? [Math.ceil(N / TILE), Math.ceil(M / TILE), batch] : [x, y, batch],
    },
  );
}

/** Gradient for A in A's storage layout; summed over the batch when A is shared. */
function matmulGradA(dOut: Tensor, a: Tensor, b: Tensor, dims: MatmulDims, transposeA: boolean, transposeB: boolean): Tensor {
  const grad = a.engine.empty(a.shape);
  const { M, N, K } = dims;
  // op(A) = dC · op(B)ᵀ  →  dA = dC · op(B)ᵀ, or its transpose (op(B) · dCᵀ) when A is stored transposed.
  const perBatch: MatmulDims = { ...dims, M: transposeA ? K : M, N: transposeA ? M : K, K: N };
  const [left, right, tLeft, tRight] = transposeA ? [b, dOut, transposeB, true] : [dOut, b, false, !transposeB];
  const leftBatched = transposeA ? dims.bBatched : true;
  const rightBatched = transposeA ? true : dims.bBatched;
  if (dims.aBatched) {
    matmulInto(grad, left, right, { ...perBatch, aBatched: leftBatched, bBatched: rightBatched }, tLeft, tRight, 1, 0);
  } else {
    sumOverBatch(grad, left, right, perBatch, leftBatched, rightBatched, tLeft, tRight);
  }
  return grad;
}

/** Gradient for B in B's storage layout; summed over the batch when B is shared. */
function matmulGradB(dOut: Tensor, a: Tensor, b: Tensor, dims: MatmulDims, transposeA: boolean, transposeB: boolean): Tensor {
  const grad = b.engine.empty(b.shape);
  const { M, N, K } = dims;
  // dop(B) = op(A)ᵀ · dC  →  dB = op(A)ᵀ · dC, or dCᵀ · op(A) when B is stored transposed.
  const perBatch: MatmulDims = { ...dims, M: transposeB ? N : K, N: transposeB ? K : N, K: M };
  const [left, right, tLeft, tRight] = transposeB ? [dOut, a, true, transposeA] : [a, dOut, !transposeA, false];
  const leftBatched = transposeB ? true : dims.aBatched;
  const rightBatched = transposeB ? dims.aBatched : true;
  if (dims.bBatched) {
    matmulInto(grad, left, right, { ...perBatch, aBatched: leftBatched, bBatched: rightBatched }, tLeft, tRight, 1, 0);
  } else {
    sumOverBatch(grad, left, right, perBatch, leftBatched, rightBatched, tLeft, tRight);
  }
  return grad;
}

/**
 * grad = Σ_b op(left[b]) · op(right[b]) for a shared operand. When the batch can be folded into
 * the inner dimension (both operands stored with the batch-major rows along K) it is one matmul;
 * otherwise one accumulating matmul per batch entry.
 */
function sumOverBatch(
  grad: Tensor,
  left: Tensor,
  right: Tensor,
  dims: MatmulDims,
  leftBatched: boolean,
  rightBatched: boolean,
  transposeLeft: boolean,
  transposeRight: boolean,
): void {
  const { batch, M, N, K } = dims;
  if (leftBatched && rightBatched && transposeLeft && !transposeRight) {
    // leftᵀ is [M, batch·K] and right is [batch·K, N] when stacked: one matmul over the folded K.
    matmulInto(grad, left, right, { batch: 1, M, N, K: batch * K, aBatched: false, bBatched: false }, true, false, 1, 0);
    return;
  }
  const engine = grad.engine;
  const slice = (tensor: Tensor, batched: boolean, index: number, rows: number, cols: number): Tensor => {
    if (!batched) return tensor.retain();
    const view = engine.empty([rows, cols]);
    engine.gpu.copy(tensor.buffer, index * rows * cols * 4, view.buffer, 0, rows * cols * 4);
    return view;
  };
  for (let index = 0; index < batch; index++) {
    const l = slice(left, leftBatched, index, transposeLeft ? K : M, transposeLeft ? M : K);
    const r = slice(right, rightBatched, index, transposeRight ? N : K, transposeRight ? K : N);
    matmulInto(grad, l, r, { batch: 1, M, N, K, aBatched: false, bBatched: false }, transposeLeft, transposeRight, 1, index === 0 ? 0 : 1);
    l.dispose();
    r.dispose();
  }
}
