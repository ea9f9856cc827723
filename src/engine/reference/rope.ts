// float64 CPU reference for rope: x [B, T, H, D] row-major, the first R dimensions of each head
// rotated in pairs by angle position · invFreq[i] ('half': pairs (i, i + R/2); 'interleaved':
// (2i, 2i + 1)), the rest copied. positions has one entry per (b, t), B·T in all.

export interface RopeReferenceDims {
  batch: number;
  tokens: number;
  heads: number;
  headDim: number;
  rotaryDim: number;
  layout: 'half' | 'interleaved';
}

export function ropeReference(x: Float64Array, positions: ArrayLike<number>, invFreq: ArrayLike<number>, d: RopeReferenceDims): Float64Array {
  return rotate(x, positions, invFreq, d, 1);
}

/** The gradient of rope for x: dOut rotated by −angle (the transpose of each 2 × 2 rotation). */
export function ropeBackwardReference(
  dOut: Float64Array,
  positions: ArrayLike<number>,
  invFreq: ArrayLike<number>,
  d: RopeReferenceDims,
): Float64Array {
  return rotate(dOut, positions, invFreq, d, -1);
}

function rotate(x: Float64Array, positions: ArrayLike<number>, invFreq: ArrayLike<number>, d: RopeReferenceDims, direction: 1 | -1): Float64Array {
  const out = Float64Array.from(x);
  const half = d.rotaryDim / 2;
  for (let token = 0; token < d.batch * d.tokens; token++) {
    for (let h = 0; h < d.heads; h++) {
      const base = (token * d.heads + h) * d.headDim;
      for (let i = 0; i < half; i++) {
        const angle = direction * positions[token] * invFreq[i];
        const [first, second] = d.layout === 'half' ? [base + i, base + i + half] : [base + 2 * i, base + 2 * i + 1];
        out[first] = x[first] * Math.cos(angle) - x[second] * Math.sin(angle);
        out[second] = x[second] * Math.cos(angle) + x[first] * Math.sin(angle);
      }
    }
  }
  return out;
}
