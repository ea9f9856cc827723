// float64 reference for one AdamW step (ops/adamw.ts), written as torch.optim.AdamW's
// single-tensor algorithm (amsgrad off, maximize off):
//   p ← p · (1 − lr · wd);  m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²
//   p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)

export interface AdamWReferenceOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count t. */
  step: number;
  /** Multiplied into the gradient first (gradient clipping). */
  gradScale?: number;
}

export interface AdamWState {
  param: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/** The state after one step; the inputs are not modified. */
export function adamwReference(state: AdamWState, grad: ArrayLike<number>, o: AdamWReferenceOptions): AdamWState {
  const n = state.param.length;
  const param = new Float64Array(n);
  const m = new Float64Array(n);
  const v = new Float64Array(n);
  const biasCorrection1 = 1 - o.beta1 ** o.step;
  const biasCorrection2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < n; i++) {
    const g = grad[i] * (o.gradScale ?? 1);
    m[i] = o.beta1 * state.m[i] + (1 - o.beta1) * g;
    v[i] = o.beta2 * state.v[i] + (1 - o.beta2) * g * g;
    const decayed = state.param[i] * (1 - o.lr * o.weightDecay);
    const denom = Math.sqrt(v[i]) / Math.sqrt(biasCorrection2) + o.eps;
    param[i] = decayed - ((o.lr / biasCorrection1) * m[i]) / denom;
  }
  return { param, m, v };
}
