// float64 CPU reference for layerNorm over the last dimension: x [R, C] row-major, weight and bias [C].
// Biased variance, as torch.nn.LayerNorm. A null bias means no shift.

export function layerNormReference(
  x: Float64Array,
  weight: Float64Array,
  bias: Float64Array | null,
  width: number,
  eps: number,
): Float64Array {
  const y = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += width) {
    const { mean, rstd } = rowStats(x, base, width, eps);
    for (let c = 0; c < width; c++) y[base + c] = (x[base + c] - mean) * rstd * weight[c] + (bias ? bias[c] : 0);
  }
  return y;
}

/** Analytic gradients: dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = dy · weight; dWeight = Σ dy · x̂; dBias = Σ dy. */
export function layerNormBackwardReference(
  x: Float64Array,
  weight: Float64Array,
  dy: Float64Array,
  width: number,
  eps: number,
): { dx: Float64Array; dWeight: Float64Array; dBias: Float64Array } {
  const dx = new Float64Array(x.length);
  const dWeight = new Float64Array(width);
  const dBias = new Float64Array(width);
  for (let base = 0; base < x.length; base += width) {
    const { mean, rstd } = rowStats(x, base, width, eps);
    const xHat = (c: number) => (x[base + c] - mean) * rstd;
    let sumG = 0;
    let sumGXHat = 0;
    for (let c = 0; c < width; c++) {
      const g = dy[base + c] * weight[c];
      sumG += g;
      sumGXHat += g * xHat(c);
      dWeight[c] += dy[base + c] * xHat(c);
      dBias[c] += dy[base + c];
    }
    for (let c = 0; c < width; c++) {
      dx[base + c] = rstd * (dy[base + c] * weight[c] - sumG / width - xHat(c) * (sumGXHat / width));
    }
  }
  return { dx, dWeight, dBias };
}

function rowStats(x: Float64Array, base: number, width: number, eps: number): { mean: number; rstd: number } {
  let sum = 0;
  for (let c = 0; c < width; c++) sum += x[base + c];
  const mean = sum / width;
  let squares = 0;
  for (let c = 0; c < width; c++) squares += (x[base + c] - mean) ** 2;
  return { mean, rstd: 1 / Math.sqrt(squares / width + eps) };
}
