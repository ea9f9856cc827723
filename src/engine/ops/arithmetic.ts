// Elementwise arithmetic with NumPy-style broadcasting: add, sub, mul, and scale by a constant.
// Shapes align from the right; a dim of 1 or a missing dim broadcasts. Both operands' shapes are
// coalesced into runs of dims that broadcast the same way, which picks a kernel (shaders/broadcast.wgsl):
// same shape, a repeated trailing operand (a bias or gain [C] against [..., C]), or general strides.
// Backward sums a broadcast operand's gradient over the dims it was repeated along, with
// deterministic middle-axis reductions (shaders/reduce_sum.wgsl).

import { f32, u32, type Param } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType } from './checks.ts';

const WORKGROUP_SIZE = 256;
const MAX_RANK = 6; // coalesced dims binary_general handles (shaders/broadcast.wgsl)
const OP_ADD = 0;
const OP_MUL = 1;

/** a + b, broadcasting. */
export function add(a: Tensor, b: Tensor): Tensor {
  return linearCombination('add', a, b, 1, 1);
}

/** a − b, broadcasting. */
export function sub(a: Tensor, b: Tensor): Tensor {
  return linearCombination('sub', a, b, 1, -1);
}

/** a · b elementwise, broadcasting. */
export function mul(a: Tensor, b: Tensor): Tensor {
  requireDType('mul', a, 'f32');
  requireDType('mul', b, 'f32');
  const plan = planBroadcast('mul', a.shape, b.shape);
  const engine = a.engine;
  const out = engine.empty(plan.shape);
  dispatchBinary(OP_MUL, out, a, b, plan, 1, 1);

  if (engine.needsGrad([a, b])) {
    // Each factor's gradient reads the other factor: keep only what will be read.
    const saved = [...(a.requiresGrad ? [b] : []), ...(b.requiresGrad ? [a] : [])];
    engine.record(out, [a, b], saved, (dOut, [needA, needB]) => [
      needA ? productGradient(dOut, b, a.shape, plan.shape) : null,
      needB ? productGradient(dOut, a, b.shape, plan.shape) : null,
    ]);
  }
  return out;
}

/** s · a for a JavaScript number s. */
export function scale(a: Tensor, s: number): Tensor {
  requireDType('scale', a, 'f32');
  const engine = a.engine;
  const out = engine.empty(a.shape);
  scaleInto(out, a, s);
  if (engine.needsGrad([a])) {
    engine.record(out, [a], [], (dOut) => [s === 1 ? dOut : scaleNew(dOut, s)]);
  }
  return out;
}

/** alpha · a + beta · b, broadcasting. */
function linearCombination(op: string, a: Tensor, b: Tensor, alpha: number, beta: number): Tensor {
  requireDType(op, a, 'f32');
  requireDType(op, b, 'f32');
  const plan = planBroadcast(op, a.shape, b.shape);
  const engine = a.engine;
  const out = engine.empty(plan.shape);
  dispatchBinary(OP_ADD, out, a, b, plan, alpha, beta);

  if (engine.needsGrad([a, b])) {
    engine.record(out, [a, b], [], (dOut, [needA, needB]) => [
      needA ? sumGradient(dOut, a.shape, plan.shape, alpha) : null,
      needB ? sumGradient(dOut, b.shape, plan.shape, beta) : null,
    ]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Broadcast planning

/** A run of adjacent output dims in which each operand is either present or broadcast throughout. */
interface Run {
  size: number;
  inA: boolean;
  inB: boolean;
}

interface BroadcastPlan {
  /** The output shape. */
  shape: number[];
  /** Coalesced output dims, outermost first; dims of size 1 dropped. */
  runs: Run[];
}

/** The broadcast output shape of two shapes; ShapeError naming the op and both shapes if they do not fit. */
export function broadcastShape(op: string, aShape: readonly number[], bShape: readonly number[]): number[] {
  const rank = Math.max(aShape.length, bShape.length);
  const shape: number[] = [];
  for (let d = 0; d < rank; d++) {
    const aDim = aShape[aShape.length - rank + d] ?? 1;
    const bDim = bShape[bShape.length - rank + d] ?? 1;
    if (aDim !== bDim && aDim !== 1 && bDim !== 1) {
      throw new ShapeError(`${op}: cannot broadcast ${shapeText(aShape)} with ${shapeText(bShape)}`);
    }
    shape.push(aDim === 1 ? bDim : aDim);
  }
  return shape;
}

function planBroadcast(op: string, aShape: readonly number[], bShape: readonly number[]): BroadcastPlan {
  const shape = broadcastShape(op, aShape, bShape);
  const rank = shape.length;
  const runs: Run[] = [];
  for (let d = 0; d < rank; d++) {
    if (shape[d] === 1) continue;
    const inA = (aShape[aShape.length - rank + d] ?? 1) !== 1;
    const inB = (bShape[bShape.length - rank + d] ?? 1) !== 1;
    const last = runs[runs.length - 1];
    if (last && last.inA === inA && last.inB === inB) last.size *= shape[d];
    else runs.push({ size: shape[d], inA, inB });
  }
  if (runs.length > MAX_RANK) {
    throw new ShapeError(`${op}: broadcasting ${shapeText(aShape)} with ${shapeText(bShape)} alternates between operands more than ${MAX_RANK} times`);
  }
  return { shape, runs };
}

/** Element strides of the runs for an operand laid out contiguously over the runs it is present in. */
function runStrides(runs: readonly Run[], present: (run: Run) => boolean): number[] {
  const strides = new Array<number>(runs.length).fill(0);
  let stride = 1;
  for (let i = runs.length - 1; i >= 0; i--) {
    if (!present(runs[i])) continue;
    strides[i] = stride;
    stride *= runs[i].size;
  }
  return strides;
}

/** b only repeats along leading runs: b's elements are those of the trailing run present in both. */
function repeatsAlongLeadingDims(runs: readonly Run[], fullIsA: boolean): boolean {
  return runs.every((run, i) => {
    const inFull = fullIsA ? run.inA : run.inB;
    const inOther = fullIsA ? run.inB : run.inA;
    return inFull && (!inOther || i === runs.length - 1);
  });
}

/** out = alpha · a + beta · b (OP_ADD) or a · b (OP_MUL), with out's shape from `plan`. */
function dispatchBinary(op: number, out: Tensor, a: Tensor, b: Tensor, plan: BroadcastPlan, alpha: number, beta: number): void {
  const n = out.size;
  if (n === 0) return;
  const { runs } = plan;
  const call = (entryPoint: string, x: Tensor, y: Tensor, fields: BinaryFields) =>
    out.engine.gpu.dispatch(
      { shader: 'broadcast', entryPoint, constants: { OP: op } },
      { params: broadcastParams(n, fields), bindings: [x.binding, y.binding, out.binding], workgroups: grid1d(n, WORKGROUP_SIZE) },
    );

  if (a.size === n && b.size === n) return call('binary_same', a, b, { alpha, beta });
  // Repeat kernels index the repeated operand second; addition swaps the coefficients along with it.
  if (a.size === n && repeatsAlongLeadingDims(runs, true)) return call('binary_repeat', a, b, { period: b.size, alpha, beta });
  if (b.size === n && repeatsAlongLeadingDims(runs, false)) return call('binary_repeat', b, a, { period: a.size, alpha: beta, beta: alpha });

  const aStrides = runStrides(runs, (run) => run.inA);
  const bStrides = runStrides(runs, (run) => run.inB);
  const innermostFirst = (values: number[]) => values.slice().reverse();
  call('binary_general', a, b, {
    alpha,
    beta,
    sizes: innermostFirst(runs.map((run) => run.size)),
    aStrides: innermostFirst(aStrides),
    bStrides: innermostFirst(bStrides),
  });
}

interface BinaryFields {
  period?: number;
  alpha?: number;
  beta?: number;
  sizes?: number[];
  aStrides?: number[];
  bStrides?: number[];
}

/** The full Params struct of shaders/broadcast.wgsl (every entry point binds all of it). */
function broadcastParams(n: number, fields: BinaryFields): Param[] {
  const padded = (values: number[] = [], fill: number) =>
    Array.from({ length: MAX_RANK }, (_, i) => u32(values[i] ?? fill));
  return [
    u32(n),
    u32(fields.period ?? 1),
    u32(fields.sizes?.length ?? 0),
    f32(fields.alpha ?? 1),
    f32(fields.beta ?? 1),
    ...padded(fields.sizes, 1),
    ...padded(fields.aStrides, 0),
    ...padded(fields.bStrides, 0),
  ];
}

function scaleInto(out: Tensor, a: Tensor, s: number): void {
  if (out.size === 0) return;
  out.engine.gpu.dispatch(
    { shader: 'broadcast', entryPoint: 'scale' },
    { params: broadcastParams(out.size, { alpha: s }), bindings: [a.binding, undefined, out.binding], workgroups: grid1d(out.size, WORKGROUP_SIZE) },
  );
}

function scaleNew(a: Tensor, s: number): Tensor {
  const out = a.engine.empty(a.shape);
  scaleInto(out, a, s);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Backward: gradients of broadcast operands

/** coefficient · dOut summed down to `shape` (the gradient of a term of add/sub). */
function sumGradient(dOut: Tensor, shape: readonly number[], outShape: readonly number[], coefficient: number): Tensor {
  const size = shape.reduce((product, dim) => product * dim, 1);
  if (size === dOut.size) return coefficient === 1 ? reshapeGradient(dOut, shape, false) : reshapeGradient(scaleNew(dOut, coefficient), shape, true);
  return reduceToShape(dOut, null, shape, outShape, coefficient);
}

/** dOut · other summed down to `shape` (the gradient of a factor of mul). */
function productGradient(dOut: Tensor, other: Tensor, shape: readonly number[], outShape: readonly number[]): Tensor {
  const size = shape.reduce((product, dim) => product * dim, 1);
  const engine = dOut.engine;
  if (size === dOut.size || other.size !== dOut.size) {
    // Either no reduction, or the other factor is itself broadcast: form the product at the output shape first.
    const product = engine.empty(outShape);
    dispatchBinary(OP_MUL, product, dOut, other, planBroadcast('mul', outShape, other.shape), 1, 1);
    if (size === dOut.size) return reshapeGradient(product, shape, true);
    const grad = reduceToShape(product, null, shape, outShape, 1);
    product.dispose();
    return grad;
  }
  return reduceToShape(dOut, other, shape, outShape, 1);
}

/**
 * A gradient with the input's own shape. `shape` and the output shape hold the same elements in the
 * same order (they differ only by dims of 1), so only a shape that differs needs a copy; an `owned`
 * temporary is disposed once copied.
 */
function reshapeGradient(grad: Tensor, shape: readonly number[], owned: boolean): Tensor {
  if (grad.rank === shape.length && grad.shape.every((dim, i) => dim === shape[i])) return grad;
  const reshaped = grad.engine.empty(shape);
  if (grad.size > 0) grad.engine.gpu.copy(grad.buffer, 0, reshaped.buffer, 0, grad.byteLength);
  if (owned) grad.dispose();
  return reshaped;
}

/**
 * coefficient · Σ x (· m) over the output dims in which an operand of shape `shape` is broadcast.
 * The output dims are coalesced into alternating kept and reduced runs; each pass sums away one
 * reduced run (largest first), viewing the current data as [O, R, C].
 */
function reduceToShape(
  x: Tensor,
  m: Tensor | null,
  shape: readonly number[],
  outShape: readonly number[],
  coefficient: number,
): Tensor {
  const engine = x.engine;
  if (x.size === 0) return engine.zeros(shape);
  // Runs of the output (outermost first), each either kept in `shape` or summed away.
  const runs: { size: number; kept: boolean }[] = [];
  for (let d = 0; d < outShape.length; d++) {
    if (outShape[d] === 1) continue;
    const kept = (shape[shape.length - outShape.length + d] ?? 1) !== 1;
    const last = runs[runs.length - 1];
    if (last && last.kept === kept) last.size *= outShape[d];
    else runs.push({ size: outShape[d], kept });
  }

  let current = x;
  let factor = m;
  for (;;) {
    const reduced = runs.filter((run) => !run.kept);
    const run = reduced.reduce((largest, next) => (next.size > largest.size ? next : largest));
    const index = runs.indexOf(run);
    const O = runs.slice(0, index).reduce((product, r) => product * r.size, 1);
    const C = runs.slice(index + 1).reduce((product, r) => product * r.size, 1);
    const last = reduced.length === 1;
    const next = reduceMiddle(current, factor, O, run.size, C, last ? coefficient : 1, last ? shape : [O * C]);
    if (current !== x) current.dispose();
    current = next;
    factor = null;
    if (last) return current;
    runs.splice(index, 1);
    // Merge the runs that became adjacent.
    if (index > 0 && index < runs.length && runs[index - 1].kept === runs[index].kept) {
      runs[index - 1].size *= runs[index].size;
      runs.splice(index, 1);
    }
  }
}

// A reduction splits long rows into chunks when fewer outputs than this would otherwise run in parallel.
const TARGET_THREADS = 64 * WORKGROUP_SIZE;
const MIN_ROWS_PER_CHUNK = 32;

/** scale · Σ_r x[o, r, c] (· m[o, r, c]) as a tensor of `shape` holding [O, C]. */
function reduceMiddle(x: Tensor, m: Tensor | null, O: number, R: number, C: number, scale: number, shape: readonly number[]): Tensor {
  const engine = x.engine;
  const outputs = O * C;
  const wantedChunks = Math.ceil(TARGET_THREADS / outputs);
  const rowsPerChunk = Math.max(MIN_ROWS_PER_CHUNK, Math.ceil(R / wantedChunks));
  const chunks = Math.ceil(R / rowsPerChunk);
  if (chunks > 1) {
    // Partial sums [O, chunks, C], then a second pass over the chunks.
    const partial = engine.empty([O, chunks, C]);
    dispatchReduce(partial, x, m, R, C, rowsPerChunk, chunks, 1);
    const total = reduceMiddle(partial, null, O, chunks, C, scale, shape);
    partial.dispose();
    return total;
  }
  const out = engine.empty(shape);
  dispatchReduce(out, x, m, R, C, R, 1, scale);
  return out;
}

function dispatchReduce(out: Tensor, x: Tensor, m: Tensor | null, R: number, C: number, rowsPerChunk: number, chunks: number, scale: number): void {
  out.engine.gpu.dispatch(
    { shader: 'reduce_sum', entryPoint: m ? 'reduce_middle_product' : 'reduce_middle' },
    {
      params: [u32(out.size), u32(R), u32(C), u32(rowsPerChunk), u32(chunks), f32(scale)],
      bindings: [x.binding, m?.binding, out.binding],
      workgroups: grid1d(out.size, WORKGROUP_SIZE),
    },
  );
}
