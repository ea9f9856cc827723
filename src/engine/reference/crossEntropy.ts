// float64 CPU reference for the fused softmax cross-entropy (ops/crossEntropy.ts).
// logits [N, V] row-major, targets [N]; rows whose target is ignoreIndex do not count.
// loss = (1 / count) Σ_counted rows (logsumexp(row) − row[target]), 0 when count is 0.

export interface CrossEntropyReferenceResult {
  loss: number;
  /** Per row: logsumexp − logit[target]; 0 for ignored rows, NaN for a target outside [0, V). */
  rowLoss: Float64Array;
  count: number;
}

function logSumExp(logits: ArrayLike<number>, start: number, V: number): number {
  let max = -Infinity;
  for (let j = 0; j < V; j++) max = Math.max(max, logits[start + j]);
  let sum = 0;
  for (let j = 0; j < V; j++) sum += Math.exp(logits[start + j] - max);
  return max + Math.log(sum);
}

export function crossEntropyReference(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  V: number,
  ignoreIndex = -100,
): CrossEntropyReferenceResult {
  const N = targets.length;
  const rowLoss = new Float64Array(N);
  let count = 0;
  let total = 0;
  for (let row = 0; row < N; row++) {
    const target = targets[row];
    if (target === ignoreIndex) continue;
    count++;
    rowLoss[row] = target >= 0 && target < V ? logSumExp(logits, row * V, V) - logits[row * V + target] : NaN;
    total += rowLoss[row];
  }
  return { loss: count === 0 ? 0 : total / count, rowLoss, count };
}

/** dLogits [N, V] = (softmax(row) − onehot(target)) · dLoss / count; zero rows for ignored targets. */
export function crossEntropyBackwardReference(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  V: number,
  dLoss = 1,
  ignoreIndex = -100,
): Float64Array {
  const N = targets.length;
  const dLogits = new Float64Array(N * V);
  let count = 0;
  for (let row = 0; row < N; row++) if (targets[row] !== ignoreIndex) count++;
  for (let row = 0; row < N; row++) {
    const target = targets[row];
    if (target === ignoreIndex) continue;
    const lse = logSumExp(logits, row * V, V);
    for (let j = 0; j < V; j++) {
      const probability = Math.exp(logits[row * V + j] - lse);
      dLogits[row * V + j] = ((probability - (j === target ? 1 : 0)) * dLoss) / count;
    }
  }
  return dLogits;
}
