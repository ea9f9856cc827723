// attention: scaled dot-product multi-head attention with grouped-query heads, causal by default.
// q is [B, T, H, D]; k and v are [B, S, KVH, D] with H a multiple of KVH (query head h reads kv head
// h / (H / KVH)): MHA when KVH = H, GQA in between, MQA when KVH = 1. These are the q/k/v projection
// outputs reshaped, so callers need no transposes. out is [B, T, H, D].
// Flash-attention style: one pass over keys with an online softmax; only per-row softmax statistics
// [B, H, T, 2] (max score and log of the sum, which add up to the log-sum-exp) are kept for backward,
// which recomputes the probabilities. Two kernel sets compute it (see AttentionKernel).
// Memory is O(B·T·H·D + B·S·KVH·D); no [T, S] score matrix exists at any point.

import { f32, u32, type KernelSpec } from '../../gpu/runtime.ts';
import { EngineError, ShapeError, shapeText } from '../errors.ts';
import { fill } from '../kernels/elementwiseCore.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType } from './checks.ts';

export interface AttentionOptions {
  /** Multiplies q·k before the softmax; default 1/sqrt(D). */
  scale?: number;
  /** Mask keys after each query's position (default true). */
  causal?: boolean;
  /**
   * Key position of query 0, causal only: query t attends to keys s <= t + kvOffset. Default S − T,
   * so the queries are the last T positions of the keys (a KV cache). A smaller value lets a cache
   * preallocated to S positions hold unused rows after position kvOffset + T − 1; they are never read.
   */
  kvOffset?: number;
  /** Which kernel set runs forward and backward; default chooseAttentionKernel(the adapter). For tests and benchmarks. */
  kernel?: AttentionKernel;
}

/**
 * 'tiled' (shaders/attention_tiled.wgsl): FlashAttention-2 style, workgroups of 128 threads sharing
 * score tiles and (row, d) outputs, for real GPUs. 'direct' (shaders/attention.wgsl): one thread per
 * query or key row with fewer barriers, for software adapters, where every barrier is a context
 * switch per invocation; on an H200 it ran at ~0.18 TFLOP/s (72 workgroups for SmolLM2's shape).
 * Both compute each score with the same operations in the same order and keep the same row statistics.
 */
export type AttentionKernel = 'tiled' | 'direct';

export function chooseAttentionKernel(softwareAdapter: boolean): AttentionKernel {
  return softwareAdapter ? 'direct' : 'tiled';
}

/** The largest head dim the kernels hold in registers (MAX_HEAD_DIM in the shader). */
export const MAX_ATTENTION_HEAD_DIM = 128;

/** Rows per workgroup of the direct kernels (ROWS_PER_GROUP in attention.wgsl). */
const ROWS_PER_GROUP = 64;

/** Tile heights of the tiled kernels, per kernel: query rows and keys (block_rows, block_keys). */
interface TiledBlocks {
  forward: { rows: number; keys: number };
  query: { rows: number; keys: number };
  keyValue: { rows: number; keys: number };
}

/**
 * Halved above D = 64 so that each kernel's workgroup arrays (sized for these tiles in
 * attention_tiled.wgsl) stay within 16 KiB; the shader's register blocks assume exactly these.
 */
function tiledBlocks(D: number): TiledBlocks {
  const wide = D > 64;
  return {
    forward: { rows: wide ? 8 : 16, keys: wide ? 16 : 32 },
    query: { rows: wide ? 4 : 8, keys: wide ? 8 : 16 },
    keyValue: { rows: wide ? 8 : 16, keys: wide ? 4 : 8 },
  };
}

interface AttentionDims {
  B: number;
  T: number;
  S: number;
  H: number;
  KVH: number;
  D: number;
  scale: number;
  causal: boolean;
  kvOffset: number;
  kernel: AttentionKernel;
}

const direct = (entryPoint: string): KernelSpec => ({ shader: 'attention', entryPoint });
const tiled = (entryPoint: string): KernelSpec => ({ shader: 'attention_tiled', entryPoint });

export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  for (const tensor of [q, k, v]) requireDType('attention', tensor, 'f32');
  const dims = attentionDims(q, k, v, options);
  const engine = q.engine;
  const out = engine.empty(q.shape);
  // Saved for backward; written in any case because the forward kernel always produces it.
  const rowStats = engine.empty([dims.B, dims.H, dims.T, 2]);
  if (out.size > 0) {
    const bindings = [q.binding, k.binding, v.binding, out.binding, rowStats.binding];
    if (dims.kernel === 'tiled') {
      const block = tiledBlocks(dims.D).forward;
      engine.gpu.dispatch(tiled('attentionForwardTiled'), {
        params: tiledParams(dims, block),
        bindings,
        workgroups: queryGrid(dims, block.rows),
      });
    } else {
      engine.gpu.dispatch(direct('attentionForward'), { params: attentionParams(dims), bindings, workgroups: queryGrid(dims) });
    }
  }

  if (engine.needsGrad([q, k, v])) {
    engine.record(out, [q, k, v], [q, k, v, out, rowStats], (dOut, needs) =>
      attentionBackward(q, k, v, out, rowStats, dOut, dims, needs),
    );
  }
  // The tape holds its own reference when recording; otherwise this frees it.
  rowStats.dispose();
  return out;
}

function attentionDims(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): AttentionDims {
  const shapes = `q ${shapeText(q.shape)}, k ${shapeText(k.shape)}, v ${shapeText(v.shape)}`;
  const fail = (why: string) => new ShapeError(`attention: ${why} (${shapes})`);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw fail('q must be [B, T, H, D], k and v [B, S, KVH, D]');
  const [B, T, H, D] = q.shape;
  const [kB, S, KVH, kD] = k.shape;
  if (v.shape.some((dim, i) => dim !== k.shape[i])) throw fail('k and v must have the same shape');
  if (kB !== B) throw fail(`batch sizes differ: ${B} and ${kB}`);
  if (kD !== D) throw fail(`head dims differ: ${D} and ${kD}`);
  if (D < 1 || D > MAX_ATTENTION_HEAD_DIM) throw fail(`head dim ${D} is outside 1..${MAX_ATTENTION_HEAD_DIM}`);
  if (KVH < 1 || H % KVH !== 0) throw fail(`${H} query heads are not a multiple of ${KVH} kv heads`);

  const causal = options.causal ?? true;
  const kvOffset = options.kvOffset ?? S - T;
  if (causal) {
    if (!Number.isSafeInteger(kvOffset) || kvOffset < 0 || kvOffset + T > S) {
      throw fail(
        options.kvOffset === undefined
          ? `causal attention needs at least as many keys as queries`
          : `kvOffset ${kvOffset} must be an integer in 0..S − T = ${S - T}`,
      );
    }
  } else if (S === 0 && T > 0 && B > 0 && H > 0) {
    throw fail('no keys to attend to');
  }
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new EngineError(`attention: scale ${scale} is not finite`);

  const kernel = options.kernel ?? chooseAttentionKernel(q.engine.gpu.info.software);
  const maxGroups = q.engine.gpu.info.limits.maxComputeWorkgroupsPerDimension;
  // The smallest tiles set the widest grids.
  const blocks = tiledBlocks(D);
  const [queryRows, keyRows] =
    kernel === 'tiled' ? [Math.min(blocks.forward.rows, blocks.query.rows), blocks.keyValue.keys] : [ROWS_PER_GROUP, ROWS_PER_GROUP];
  const widest = Math.max(Math.ceil((T * (H / KVH)) / queryRows), Math.ceil(S / keyRows), KVH, B);
  if (widest > maxGroups) throw fail(`the grid needs ${widest} workgroups in one dimension; the device allows ${maxGroups}`);
  return { B, T, S, H, KVH, D, scale, causal, kvOffset, kernel };
}

/** The fields both kernel sets' Params structs begin with. */
function sharedParams(d: AttentionDims) {
  return [u32(d.T), u32(d.S), u32(d.H), u32(d.KVH), u32(d.D), f32(d.scale), u32(d.causal ? 1 : 0), u32(d.causal ? d.kvOffset : 0)];
}

/** The Params struct of attention.wgsl. */
function attentionParams(d: AttentionDims) {
  return [...sharedParams(d), u32(d.B * d.T * d.H)];
}

/** The Params struct of attention_tiled.wgsl. */
function tiledParams(d: AttentionDims, block: { rows: number; keys: number }) {
  return [...sharedParams(d), u32(block.rows), u32(block.keys)];
}

/** A workgroup per `rows` flattened query rows (t, query head of the group), per (kv head, batch); the direct kernels take one thread per row. */
function queryGrid(d: AttentionDims, rows = ROWS_PER_GROUP): [number, number, number] {
  return [Math.ceil((d.T * (d.H / d.KVH)) / rows), d.KVH, d.B];
}

function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  rowStats: Tensor,
  dOut: Tensor,
  dims: AttentionDims,
  [needQ, needK, needV]: readonly boolean[],
): (Tensor | null)[] {
  const engine = q.engine;
  const gpu = engine.gpu;
  const params = attentionParams(dims);
  const dQ = needQ ? engine.empty(q.shape) : null;
  // dK and dV come from one kernel: computing both costs little more than either.
  const dK = needK || needV ? engine.empty(k.shape) : null;
  const dV = needK || needV ? engine.empty(v.shape) : null;
  const rows = dims.B * dims.T * dims.H;
  if (rows === 0) {
    // No queries: the keys and values received no attention.
    if (dK) fill(dK, 0);
    if (dV) fill(dV, 0);
  } else {
    const delta = engine.empty([dims.B, dims.H, dims.T]);
    gpu.dispatch(direct('attentionBackwardDelta'), {
      params,
      bindings: [undefined, undefined, undefined, out.binding, undefined, dOut.binding, delta.binding],
      workgroups: grid1d(rows, ROWS_PER_GROUP),
    });
    const shared = [q.binding, k.binding, v.binding, undefined, rowStats.binding, dOut.binding, delta.binding];
    const blocks = tiledBlocks(dims.D);
    if (dQ) {
      const bindings = [...shared, dQ.binding];
      if (dims.kernel === 'tiled') {
        gpu.dispatch(tiled('attentionBackwardQueryTiled'), {
          params: tiledParams(dims, blocks.query),
          bindings,
          workgroups: queryGrid(dims, blocks.query.rows),
        });
      } else {
        gpu.dispatch(direct('attentionBackwardQuery'), { params, bindings, workgroups: queryGrid(dims) });
      }
    }
    if (dK && dV) {
      const bindings = [...shared, undefined, dK.binding, dV.binding];
      if (dims.kernel === 'tiled') {
        gpu.dispatch(tiled('attentionBackwardKeyValueTiled'), {
          params: tiledParams(dims, blocks.keyValue),
          bindings,
          workgroups: [Math.ceil(dims.S / blocks.keyValue.keys), dims.KVH, dims.B],
        });
      } else {
        gpu.dispatch(direct('attentionBackwardKeyValue'), {
          params,
          bindings,
          workgroups: [Math.ceil(dims.S / ROWS_PER_GROUP), dims.KVH, dims.B],
        });
      }
    }
    delta.dispose();
  }
  if (dK && !needK) dK.dispose();
  if (dV && !needV) dV.dispose();
  return [dQ, needK ? dK : null, needV ? dV : null];
}
