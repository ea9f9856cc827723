// crossEntropy: mean softmax cross-entropy of logits [..., V] against integer targets [...], over the
// rows whose target is not ignoreIndex, as torch.nn.functional.cross_entropy(reduction='mean').
// The softmax is fused: the forward keeps only per-row statistics ([rows, 2]: max and
// log Σ exp(x − max)) and the backward recomputes probabilities from them while writing dLogits.
// Nothing is read back: the count of counted rows lives on the GPU.
//
// Lower-level pieces, for callers that process a large [N, V] in chunks of rows (a fused LM head
// whose full logits would not fit). With targets [N] i32 for the whole batch:
//   const count = crossEntropyCount(targets);               // [] f32, over all N rows
//   const rowLoss = engine.empty([N]);
//   for each chunk of n rows starting at batch row r0, with logits [n, V] for those rows:
//     const { rowStats } = crossEntropyRows(logits, targets, { rowOffset: r0, rowLoss });
//     const dLogits = crossEntropyRowsBackward(logits, targets, rowStats, dLoss, count, { rowOffset: r0 });
//   const loss = crossEntropyMean(rowLoss, count);          // [] f32
// dLoss is a one-element f32 tensor: the gradient of the loss (a tensor of ones when the gradient is
// formed during the forward pass, scaled later).
// A target outside [0, V) that is not ignoreIndex cannot raise an error without a readback: its row
// counts and its loss is NaN (so the mean is NaN), which a non-finite check then catches.

import { i32, u32, type Param } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType, rowsAndWidth } from './checks.ts';

export interface CrossEntropyOptions {
  /** Rows whose target equals this do not count (torch's default, -100). */
  ignoreIndex?: number;
}

export interface CrossEntropyRowsOptions extends CrossEntropyOptions {
  /** Batch row of the first row of `logits`: indexes targets and rowLoss. Default 0. */
  rowOffset?: number;
  /** [N] f32 to write this chunk's row losses into (at rowOffset); default a new [n] tensor. */
  rowLoss?: Tensor;
}

const SHADER = 'softmax_xent';
const WORKGROUP_SIZE = 256;
const DEFAULT_IGNORE_INDEX = -100;

/** Scalar ([]) mean loss over the rows whose target is not ignoreIndex; 0 (and zero gradient) when none counts. */
export function crossEntropy(logits: Tensor, targets: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  const ignoreIndex = checkIgnoreIndex(op, options.ignoreIndex);
  const { rows, V } = checkLogitsAndTargets(op, logits, targets);
  const engine = logits.engine;

  const count = crossEntropyCount(targets, { ignoreIndex });
  const rowLoss = engine.empty([rows]);
  const rowStats = engine.empty([rows, 2]);
  dispatchRowsForward(logits, targets, rowLoss, rowStats, rows, V, 0, ignoreIndex);
  const loss = crossEntropyMean(rowLoss, count);
  rowLoss.dispose();

  if (engine.needsGrad([logits, targets])) {
    engine.record(loss, [logits, targets], [logits, targets, rowStats, count], (dLoss, [needLogits]) => [
      needLogits ? dispatchRowsBackward(logits, targets, rowStats, dLoss, count, rows, V, 0, ignoreIndex) : null,
      null,
    ]);
  }
  // The tape holds its own references to what it saved.
  rowStats.dispose();
  count.dispose();
  return loss;
}

/** [] f32: how many of targets (i32, any shape) differ from ignoreIndex. */
export function crossEntropyCount(targets: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropyCount';
  requireDType(op, targets, 'i32');
  const ignoreIndex = checkIgnoreIndex(op, options.ignoreIndex);
  const count = targets.engine.empty([]);
  targets.engine.gpu.dispatch(
    { shader: SHADER, entryPoint: 'xent_count' },
    { params: params(targets.size, 0, 0, ignoreIndex), bindings: [undefined, targets.binding, undefined, undefined, count.binding], workgroups: [1] },
  );
  return count;
}

/**
 * Forward over n rows: logits [n, V] are batch rows rowOffset .. rowOffset + n of targets [N].
 * Returns rowLoss (the given [N] tensor, or a new [n] one when rowOffset is 0) and rowStats [n, 2]
 * (row max, log Σ exp(logit − max)), which crossEntropyRowsBackward needs. Records no gradient.
 */
export function crossEntropyRows(
  logits: Tensor,
  targets: Tensor,
  options: CrossEntropyRowsOptions = {},
): { rowLoss: Tensor; rowStats: Tensor } {
  const op = 'crossEntropyRows';
  const ignoreIndex = checkIgnoreIndex(op, options.ignoreIndex);
  const rowOffset = options.rowOffset ?? 0;
  const { rows, V } = checkChunk(op, logits, targets, rowOffset);
  if (options.rowLoss) {
    requireDType(op, options.rowLoss, 'f32');
    if (options.rowLoss.size !== targets.size) {
      throw new ShapeError(`${op}: rowLoss ${shapeText(options.rowLoss.shape)} must have one element per target ${shapeText(targets.shape)}`);
    }
  } else if (rowOffset !== 0) {
    throw new ShapeError(`${op}: a chunk at rowOffset ${rowOffset} needs a rowLoss tensor for the whole batch`);
  }
  const engine = logits.engine;
  const rowLoss = options.rowLoss ?? engine.empty([rows]);
  const rowStats = engine.empty([rows, 2]);
  dispatchRowsForward(logits, targets, rowLoss, rowStats, rows, V, rowOffset, ignoreIndex);
  return { rowLoss, rowStats };
}

/**
 * dLogits [n, V] = (softmax − onehot) · dLoss / count for the rows of a chunk (see crossEntropyRows);
 * zero rows where the target is ignoreIndex. dLoss and count are one-element f32 tensors.
 */
export function crossEntropyRowsBackward(
  logits: Tensor,
  targets: Tensor,
  rowStats: Tensor,
  dLoss: Tensor,
  count: Tensor,
  options: Omit<CrossEntropyRowsOptions, 'rowLoss'> = {},
): Tensor {
  const op = 'crossEntropyRowsBackward';
  const ignoreIndex = checkIgnoreIndex(op, options.ignoreIndex);
  const rowOffset = options.rowOffset ?? 0;
  const { rows, V } = checkChunk(op, logits, targets, rowOffset);
  requireDType(op, rowStats, 'f32');
  if (rowStats.size !== rows * 2) {
    throw new ShapeError(`${op}: rowStats ${shapeText(rowStats.shape)} must be [${rows}, 2] for logits ${shapeText(logits.shape)}`);
  }
  requireScalar(op, dLoss, 'dLoss');
  requireScalar(op, count, 'count');
  return dispatchRowsBackward(logits, targets, rowStats, dLoss, count, rows, V, rowOffset, ignoreIndex);
}

/** [] f32: Σ rowLoss / count, 0 when count is 0. rowLoss is [N] f32, count a one-element f32 tensor. */
export function crossEntropyMean(rowLoss: Tensor, count: Tensor): Tensor {
  const op = 'crossEntropyMean';
  requireDType(op, rowLoss, 'f32');
  requireScalar(op, count, 'count');
  const loss = rowLoss.engine.empty([]);
  rowLoss.engine.gpu.dispatch(
    { shader: SHADER, entryPoint: 'xent_mean' },
    {
      params: params(rowLoss.size, 0, 0, 0),
      bindings: [undefined, undefined, rowLoss.binding, undefined, count.binding, loss.binding],
      workgroups: [1],
    },
  );
  return loss;
}

function dispatchRowsForward(
  logits: Tensor,
  targets: Tensor,
  rowLoss: Tensor,
  rowStats: Tensor,
  rows: number,
  V: number,
  rowOffset: number,
  ignoreIndex: number,
): void {
  if (rows === 0) return;
  logits.engine.gpu.dispatch(
    { shader: SHADER, entryPoint: 'xent_rows_forward' },
    {
      params: params(rows, V, rowOffset, ignoreIndex),
      bindings: [logits.binding, targets.binding, rowLoss.binding, rowStats.binding],
      workgroups: grid1d(rows, 1),
    },
  );
}

/** dLogits in the shape of logits ([..., V], n rows in all). */
function dispatchRowsBackward(
  logits: Tensor,
  targets: Tensor,
  rowStats: Tensor,
  dLoss: Tensor,
  count: Tensor,
  rows: number,
  V: number,
  rowOffset: number,
  ignoreIndex: number,
): Tensor {
  const dLogits = logits.engine.empty(logits.shape);
  if (dLogits.size === 0) return dLogits;
  logits.engine.gpu.dispatch(
    { shader: SHADER, entryPoint: 'xent_rows_backward' },
    {
      params: params(rows, V, rowOffset, ignoreIndex),
      bindings: [logits.binding, targets.binding, undefined, rowStats.binding, count.binding, undefined, dLoss.binding, dLogits.binding],
      workgroups: grid1d(rows * V, WORKGROUP_SIZE),
    },
  );
  return dLogits;
}

const params = (rows: number, V: number, rowOffset: number, ignoreIndex: number): Param[] => [
  u32(rows),
  u32(V),
  u32(rowOffset),
  i32(ignoreIndex),
];

function checkIgnoreIndex(op: string, ignoreIndex = DEFAULT_IGNORE_INDEX): number {
  if (!Number.isInteger(ignoreIndex) || ignoreIndex < -(2 ** 31) || ignoreIndex >= 2 ** 31) {
    throw new RangeError(`${op}: ignoreIndex must be a 32-bit integer, got ${ignoreIndex}`);
  }
  return ignoreIndex;
}

/** logits [..., V] f32 with V ≥ 1 and targets [...] i32 of the same leading shape. */
function checkLogitsAndTargets(op: string, logits: Tensor, targets: Tensor): { rows: number; V: number } {
  requireDType(op, logits, 'f32');
  requireDType(op, targets, 'i32');
  const V = logits.shape[logits.rank - 1];
  const leading = logits.shape.slice(0, -1);
  if (logits.rank < 1 || V === 0 || targets.rank !== leading.length || leading.some((dim, i) => dim !== targets.shape[i])) {
    throw new ShapeError(`${op}: logits ${shapeText(logits.shape)} need targets ${logits.rank < 1 || V === 0 ? 'of at least one class' : shapeText(leading)}, got targets ${shapeText(targets.shape)}`);
  }
  return { rows: rowsAndWidth(logits).rows, V };
}

/** logits [n, V] f32 covering batch rows rowOffset .. rowOffset + n of targets [N] i32. */
function checkChunk(op: string, logits: Tensor, targets: Tensor, rowOffset: number): { rows: number; V: number } {
  requireDType(op, logits, 'f32');
  requireDType(op, targets, 'i32');
  if (logits.rank !== 2 || logits.shape[1] === 0) throw new ShapeError(`${op}: logits must be [n, V] with V ≥ 1, got ${shapeText(logits.shape)}`);
  const [rows, V] = logits.shape;
  if (!Number.isInteger(rowOffset) || rowOffset < 0 || rowOffset + rows > targets.size) {
    throw new ShapeError(`${op}: logits ${shapeText(logits.shape)} at rowOffset ${rowOffset} run past targets ${shapeText(targets.shape)}`);
  }
  return { rows, V };
}

function requireScalar(op: string, tensor: Tensor, what: string): void {
  requireDType(op, tensor, 'f32');
  if (tensor.size !== 1) throw new ShapeError(`${op}: ${what} must have one element, got ${shapeText(tensor.shape)}`);
}
