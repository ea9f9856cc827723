// float64 references for gradient clipping (ops/gradNorm.ts), as torch.nn.utils.clip_grad_norm_.

/** √(Σ over all arrays of Σ x²). */
export function gradNormReference(grads: readonly ArrayLike<number>[]): number {
  let sum = 0;
  for (const grad of grads) for (let i = 0; i < grad.length; i++) sum += grad[i] * grad[i];
  return Math.sqrt(sum);
}

/** min(1, maxNorm / (norm + 1e-6)); NaN stays NaN. */
export function clipScaleReference(norm: number, maxNorm: number): number {
  const coefficient = maxNorm / (norm + 1e-6);
  return coefficient >= 1 ? 1 : coefficient;
}

/** The gradient of the norm with respect to each element: x / norm (for the finite-difference check). */
export function gradNormBackwardReference(grads: readonly ArrayLike<number>[]): Float64Array[] {
  const norm = gradNormReference(grads);
  return grads.map((grad) => Float64Array.from(grad, (x) => x / norm));
}
