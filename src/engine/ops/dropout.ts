// dropout: y = x · mask / (1 − p), with mask[i] drawn by Philox-4x32-10 from (seed, offset + i)
// (shaders/dropout.wgsl). The mask is never stored: backward recomputes it from the same seed and
// offset. A caller that applies dropout several times per step gives each call its own counter
// range, e.g. offset advanced by x.size after every call; seed and offset are integers in [0, 2^53).

import { f32, u32 } from '../../gpu/runtime.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType } from './checks.ts';

const WORKGROUP_SIZE = 256;
const TWO_32 = 2 ** 32;

/** Returns x itself when p is 0 (nothing is dispatched or recorded). */
export function dropout(x: Tensor, p: number, seed: number, offset = 0): Tensor {
  const op = 'dropout';
  requireDType(op, x, 'f32');
  if (!(p >= 0 && p < 1)) throw new RangeError(`${op}: p must be in [0, 1), got ${p}`);
  requireCounter(op, 'seed', seed);
  requireCounter(op, 'offset', offset);
  if (offset + x.size > Number.MAX_SAFE_INTEGER) throw new RangeError(`${op}: offset ${offset} + ${x.size} elements passes 2^53`);
  if (p === 0) return x;

  const engine = x.engine;
  const y = applyDropout(x, p, seed, offset);
  if (engine.needsGrad([x])) {
    engine.record(y, [x], [], (dOut) => [applyDropout(dOut, p, seed, offset)]);
  }
  return y;
}

/** x · mask / (1 − p) into a new tensor of x's shape. */
function applyDropout(x: Tensor, p: number, seed: number, offset: number): Tensor {
  const y = x.engine.empty(x.shape);
  if (x.size === 0) return y;
  x.engine.gpu.dispatch(
    { shader: 'dropout', entryPoint: 'dropout' },
    {
      params: [
        u32(x.size),
        u32(Math.floor(p * TWO_32)), // drop when the random word is below this
        f32(1 / (1 - p)),
        u32(seed % TWO_32),
        u32(Math.floor(seed / TWO_32)),
        u32(offset % TWO_32),
        u32(Math.floor(offset / TWO_32)),
      ],
      bindings: [x.binding, y.binding],
      workgroups: grid1d(x.size, WORKGROUP_SIZE),
    },
  );
  return y;
}

function requireCounter(op: string, what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${op}: ${what} must be an integer in [0, 2^53), got ${value}`);
}
