// rope: rotary position embedding (shaders/rope.wgsl). x is [B, T, H, D], or [B, T, H·D] with the
// heads side by side; the first R = rotaryDim dimensions of each head are rotated in pairs by
// position · invFreq[i], the rest pass through. Positions are positionOffset + t (a number: training,
// or generation with a KV cache at that offset) or an i32 tensor [T] or [B, T].
// invFreq defaults to theta^(−2i/R), computed in float64 and rounded to f32 (HF transformers computes
// it in f32, which can differ in the last bit); pass an f32 tensor [R/2] for scaled variants
// (llama3, linear, NTK). Backward rotates dOut by −angle; positions and
// frequencies get no gradient. Angles stay accurate (~1e-6 rad) for |position| < 2²⁴.

import { f32, i32, u32 } from '../../gpu/runtime.ts';
import type { Engine } from '../engine.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType, requireShape } from './checks.ts';

export type RopeLayout = 'half' | 'interleaved';

export interface RopeOptions {
  /** D, the width of one head. */
  headDim: number;
  /** R, the leading dimensions of each head that are rotated (partial rotary); defaults to D. */
  rotaryDim?: number;
  /** Base of the default frequencies; 10000 when omitted. Ignored when invFreq is given. */
  theta?: number;
  /** 'half': pairs (i, i + R/2), HF Llama / GPT-NeoX rotate_half; 'interleaved': pairs (2i, 2i + 1), GPT-J. */
  layout: RopeLayout;
  /** f32 [R/2] frequencies in radians per position, replacing theta^(−2i/R). */
  invFreq?: Tensor;
}

const WORKGROUP_SIZE = 256;
/** Positions are split into 12-bit halves in the kernel; beyond this the angle loses precision. */
const MAX_POSITION = 2 ** 24;

/** The default frequencies theta^(−2i/R), i < R/2, rounded to f32. */
export function ropeInverseFrequencies(rotaryDim: number, theta: number): Float32Array {
  return Float32Array.from({ length: rotaryDim / 2 }, (_, i) => theta ** ((-2 * i) / rotaryDim));
}

export function rope(x: Tensor, positions: Tensor | number, options: RopeOptions): Tensor {
  const dims = ropeDims(x, positions, options);
  const engine = x.engine;
  const invFreq = options.invFreq ?? defaultInverseFrequencies(engine, dims.rotaryDim, options.theta ?? 10000);
  const out = engine.empty(x.shape);
  dispatchRope(x, out, positions, invFreq, dims, 1);

  if (engine.needsGrad([x])) {
    const saved = typeof positions === 'number' ? [invFreq] : [invFreq, positions];
    engine.record(out, [x], saved, (dOut) => {
      const dx = engine.empty(x.shape);
      dispatchRope(dOut, dx, positions, invFreq, dims, -1);
      return [dx];
    });
  }
  return out;
}

interface RopeDims {
  batch: number;
  tokens: number;
  heads: number;
  headDim: number;
  rotaryDim: number;
  interleaved: boolean;
  positionsBatchStride: number;
}

function ropeDims(x: Tensor, positions: Tensor | number, options: RopeOptions): RopeDims {
  requireDType('rope', x, 'f32');
  const { headDim, layout } = options;
  const rotaryDim = options.rotaryDim ?? headDim;
  if (!Number.isSafeInteger(headDim) || headDim < 1) throw new ShapeError(`rope: headDim must be a positive integer, got ${headDim}`);
  if (!Number.isSafeInteger(rotaryDim) || rotaryDim < 2 || rotaryDim % 2 !== 0 || rotaryDim > headDim) {
    throw new ShapeError(
      `rope: the rotated dimensions must be a positive even number no larger than headDim ${headDim}, got ${rotaryDim}` +
        (options.rotaryDim === undefined ? ' (headDim is odd: pass an even rotaryDim)' : ''),
    );
  }
  if (layout !== 'half' && layout !== 'interleaved') throw new RangeError(`rope: layout must be 'half' or 'interleaved', got '${layout}'`);
  const headsWidth = x.shape[x.rank - 1];
  const fitsHeads = (x.rank === 4 && headsWidth === headDim) || (x.rank === 3 && headsWidth % headDim === 0);
  if (!fitsHeads) {
    throw new ShapeError(`rope: x must be [B, T, H, ${headDim}] or [B, T, H·${headDim}], got ${shapeText(x.shape)}`);
  }
  const [batch, tokens] = x.shape;
  const heads = x.rank === 4 ? x.shape[2] : headsWidth / headDim;

  if (options.invFreq) {
    requireDType('rope', options.invFreq, 'f32');
    requireShape('rope', options.invFreq, [rotaryDim / 2], `invFreq for rotaryDim ${rotaryDim}`);
  } else if (options.theta !== undefined && !(options.theta > 0 && Number.isFinite(options.theta))) {
    throw new RangeError(`rope: theta must be a positive number, got ${options.theta}`);
  }

  let positionsBatchStride = 0;
  if (typeof positions === 'number') {
    if (!Number.isSafeInteger(positions) || Math.abs(positions) + tokens > MAX_POSITION) {
      throw new RangeError(`rope: the position offset must be an integer with |offset| + T ≤ 2^24, got ${positions}`);
    }
  } else {
    requireDType('rope', positions, 'i32');
    if (positions.rank === 2) requireShape('rope', positions, [batch, tokens], `positions for x ${shapeText(x.shape)}`);
    else requireShape('rope', positions, [tokens], `positions for x ${shapeText(x.shape)}`);
    positionsBatchStride = positions.rank === 2 ? tokens : 0;
  }
  return { batch, tokens, heads, headDim, rotaryDim, interleaved: layout === 'interleaved', positionsBatchStride };
}

/** out = x rotated by direction · angle (+1 forward, −1 backward). */
function dispatchRope(x: Tensor, out: Tensor, positions: Tensor | number, invFreq: Tensor, dims: RopeDims, direction: 1 | -1): void {
  const halfRotary = dims.rotaryDim / 2;
  const count = dims.batch * dims.tokens * dims.heads * (dims.headDim - halfRotary);
  if (count === 0) return;
  const atOffset = typeof positions === 'number';
  x.engine.gpu.dispatch(
    { shader: 'rope', entryPoint: atOffset ? 'ropeAtOffset' : 'ropeAtPositions' },
    {
      params: [
        u32(count),
        u32(dims.tokens),
        u32(dims.heads),
        u32(dims.headDim),
        u32(halfRotary),
        u32(dims.interleaved ? 1 : 0),
        i32(atOffset ? positions : 0),
        u32(dims.positionsBatchStride),
        f32(direction),
      ],
      bindings: [x.binding, invFreq.binding, out.binding, atOffset ? undefined : positions.binding],
      workgroups: grid1d(count, WORKGROUP_SIZE),
    },
  );
}

/** One f32 [R/2] tensor per engine, R and theta, uploaded once and kept for the engine's lifetime. */
const defaultFrequencies = new WeakMap<Engine, Map<string, Tensor>>();

function defaultInverseFrequencies(engine: Engine, rotaryDim: number, theta: number): Tensor {
  let cache = defaultFrequencies.get(engine);
  if (!cache) defaultFrequencies.set(engine, (cache = new Map()));
  const key = `${rotaryDim}:${theta}`;
  let tensor = cache.get(key);
  if (!tensor || tensor.isDestroyed) {
    tensor = engine.keep(engine.tensor(ropeInverseFrequencies(rotaryDim, theta), [rotaryDim / 2], { name: `rope invFreq R=${rotaryDim} theta=${theta}` }));
    cache.set(key, tensor);
  }
  return tensor;
}
