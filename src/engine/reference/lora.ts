// float64 CPU reference for LoRA (ops/lora.ts): the branch s · B(A x), its gradients, and merging.
// x [T, I] (all leading dimensions as T rows), A [R, I], B [O, R], out and dOut [T, O], W [O, I]
// ([I, O] with fan_in_fan_out). Dropout composes from reference/dropout.ts: apply it to x first, and
// its backward to dx.

export interface LoraReferenceDims {
  rows: number; // T
  inFeatures: number; // I
  outFeatures: number; // O
  rank: number; // R
}

/** h [T, R] = x · Aᵀ. */
export function loraHiddenReference(x: ArrayLike<number>, A: ArrayLike<number>, d: LoraReferenceDims): Float64Array {
  const { rows, inFeatures: I, rank: R } = d;
  const h = new Float64Array(rows * R);
  for (let t = 0; t < rows; t++) {
    for (let r = 0; r < R; r++) {
      let sum = 0;
      for (let i = 0; i < I; i++) sum += x[t * I + i] * A[r * I + i];
      h[t * R + r] = sum;
    }
  }
  return h;
}

/** out [T, O] = s · h · Bᵀ with h = x · Aᵀ, plus base [T, O] when given. */
export function loraReference(
  x: ArrayLike<number>,
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  scale: number,
  d: LoraReferenceDims,
  base?: ArrayLike<number>,
): Float64Array {
  const { rows, outFeatures: O, rank: R } = d;
  const h = loraHiddenReference(x, A, d);
  const out = new Float64Array(rows * O);
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < O; o++) {
      let sum = 0;
      for (let r = 0; r < R; r++) sum += h[t * R + r] * B[o * R + r];
      out[t * O + o] = (base ? base[t * O + o] : 0) + scale * sum;
    }
  }
  return out;
}

/**
 * Gradients of Σ out · dOut: with g = s · dOut · B [T, R] and h = x · Aᵀ,
 * dx = g · A [T, I], dA = gᵀ · x [R, I], dB = s · dOutᵀ · h [O, R] (and dBase = dOut).
 */
export function loraBackwardReference(
  x: ArrayLike<number>,
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  scale: number,
  dOut: ArrayLike<number>,
  d: LoraReferenceDims,
): { dx: Float64Array; dA: Float64Array; dB: Float64Array } {
  const { rows, inFeatures: I, outFeatures: O, rank: R } = d;
  const h = loraHiddenReference(x, A, d);
  const g = new Float64Array(rows * R);
  for (let t = 0; t < rows; t++) {
    for (let r = 0; r < R; r++) {
      let sum = 0;
      for (let o = 0; o < O; o++) sum += dOut[t * O + o] * B[o * R + r];
      g[t * R + r] = scale * sum;
    }
  }
  const dx = new Float64Array(rows * I);
  const dA = new Float64Array(R * I);
  const dB = new Float64Array(O * R);
  for (let t = 0; t < rows; t++) {
    for (let r = 0; r < R; r++) {
      const gtr = g[t * R + r];
      for (let i = 0; i < I; i++) {
        dx[t * I + i] += gtr * A[r * I + i];
        dA[r * I + i] += gtr * x[t * I + i];
      }
    }
    for (let o = 0; o < O; o++) {
      const dy = scale * dOut[t * O + o];
      for (let r = 0; r < R; r++) dB[o * R + r] += dy * h[t * R + r];
    }
  }
  return { dx, dA, dB };
}

/** W + sign · s · B A as a new array; W is [O, I], or [I, O] with fanInFanOut (the transpose is added). */
export function loraMergeReference(
  W: ArrayLike<number>,
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  scale: number,
  d: Omit<LoraReferenceDims, 'rows'>,
  fanInFanOut: boolean,
): Float64Array {
  const { inFeatures: I, outFeatures: O, rank: R } = d;
  const merged = Float64Array.from(W);
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      let sum = 0;
      for (let r = 0; r < R; r++) sum += B[o * R + r] * A[r * I + i];
      merged[fanInFanOut ? i * O + o : o * I + i] += scale * sum;
    }
  }
  return merged;
}
