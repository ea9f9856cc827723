// float64 CPU reference for matmul: defines the right answer for the GPU kernel and its gradients.
// Layouts as in ops/matmul.ts: A [batchA, M, K] (or [batchA, K, M] transposed), B likewise;
// a batch count of 1 means the operand is shared by every batch entry.

export interface MatmulReferenceDims {
  batch: number;
  M: number;
  N: number;
  K: number;
  transposeA: boolean;
  transposeB: boolean;
  aShared: boolean;
  bShared: boolean;
}

const aIndex = (d: MatmulReferenceDims, batch: number, m: number, k: number) =>
  (d.aShared ? 0 : batch * d.M * d.K) + (d.transposeA ? k * d.M + m : m * d.K + k);
const bIndex = (d: MatmulReferenceDims, batch: number, k: number, n: number) =>
  (d.bShared ? 0 : batch * d.K * d.N) + (d.transposeB ? n * d.K + k : k * d.N + n);

/** C [batch, M, N] = op(A) · op(B). */
export function matmulReference(a: Float64Array, b: Float64Array, d: MatmulReferenceDims): Float64Array {
  const c = new Float64Array(d.batch * d.M * d.N);
  for (let batch = 0; batch < d.batch; batch++) {
    for (let m = 0; m < d.M; m++) {
      for (let n = 0; n < d.N; n++) {
        let sum = 0;
        for (let k = 0; k < d.K; k++) sum += a[aIndex(d, batch, m, k)] * b[bIndex(d, batch, k, n)];
        c[(batch * d.M + m) * d.N + n] = sum;
      }
    }
  }
  return c;
}

/** dA and dB in the operands' storage layouts (summed over the batch for a shared operand). */
export function matmulBackwardReference(
  a: Float64Array,
  b: Float64Array,
  dC: Float64Array,
  d: MatmulReferenceDims,
): { dA: Float64Array; dB: Float64Array } {
  const dA = new Float64Array(a.length);
  const dB = new Float64Array(b.length);
  for (let batch = 0; batch < d.batch; batch++) {
    for (let m = 0; m < d.M; m++) {
      for (let n = 0; n < d.N; n++) {
        const g = dC[(batch * d.M + m) * d.N + n];
        for (let k = 0; k < d.K; k++) {
          dA[aIndex(d, batch, m, k)] += g * b[bIndex(d, batch, k, n)];
          dB[bIndex(d, batch, k, n)] += g * a[aIndex(d, batch, m, k)];
        }
      }
    }
  }
  return { dA, dB };
}
