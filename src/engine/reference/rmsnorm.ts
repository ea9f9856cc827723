// float64 CPU reference for rmsNorm over the last dimension: x [R, C] row-major, weight [C].
// y = x · rstd · weight with rstd = 1 / sqrt(mean(x²) + eps), as Llama's RMSNorm.

export function rmsNormReference(x: Float64Array, weight: Float64Array, width: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += width) {
    const rstd = rowRstd(x, base, width, eps);
    for (let c = 0; c < width; c++) y[base + c] = x[base + c] * rstd * weight[c];
  }
  return y;
}

/** Analytic gradients: dx = rstd · (g − x̂ · mean(g · x̂)) with g = dy · weight and x̂ = x · rstd; dWeight = Σ dy · x̂. */
export function rmsNormBackwardReference(
  x: Float64Array,
  weight: Float64Array,
  dy: Float64Array,
  width: number,
  eps: number,
): { dx: Float64Array; dWeight: Float64Array } {
  const dx = new Float64Array(x.length);
  const dWeight = new Float64Array(width);
  for (let base = 0; base < x.length; base += width) {
    const rstd = rowRstd(x, base, width, eps);
    let sumGXHat = 0;
    for (let c = 0; c < width; c++) {
      const xHat = x[base + c] * rstd;
      sumGXHat += dy[base + c] * weight[c] * xHat;
      dWeight[c] += dy[base + c] * xHat;
    }
    for (let c = 0; c < width; c++) {
      dx[base + c] = rstd * (dy[base + c] * weight[c] - x[base + c] * rstd * (sumGXHat / width));
    }
  }
  return { dx, dWeight };
}

function rowRstd(x: Float64Array, base: number, width: number, eps: number): number {
  let squares = 0;
  for (let c = 0; c < width; c++) squares += x[base + c] ** 2;
  return 1 / Math.sqrt(squares / width + eps);
}
