// float64 CPU reference for ops/adapterActivation.ts: relu and the exact GELU x · Φ(x), forward and
// analytic backward. erfc is computed to near float64 precision (a positive-term series below 2, a
// continued fraction above), independently of the single-precision fit the shader uses.

const SQRT_PI = Math.sqrt(Math.PI);

/** erfc(z) for z ≥ 0, relative error about 1e-14. */
function erfcNonNegative(z: number): number {
  if (z < 2) {
    // erf(z) = 2/√π · e^(−z²) · Σ 2ⁿ z^(2n+1) / (1·3·5···(2n+1)): every term positive, no cancellation.
    let term = z;
    let sum = z;
    for (let n = 1; n < 200 && term > 1e-17 * sum; n++) {
      term *= (2 * z * z) / (2 * n + 1);
      sum += term;
    }
    return 1 - (2 / SQRT_PI) * Math.exp(-z * z) * sum;
  }
  // erfc(z) = e^(−z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + 2/(z + ...))))), evaluated from the tail.
  let fraction = z;
  for (let k = 200; k >= 1; k--) fraction = z + k / 2 / fraction;
  return Math.exp(-z * z) / SQRT_PI / fraction;
}

/** erfc on the whole line. */
export function erfcReference(z: number): number {
  return z >= 0 ? erfcNonNegative(z) : 2 - erfcNonNegative(-z);
}

/** Φ(v) = 0.5 · erfc(−v / √2). */
export function normalCdfReference(v: number): number {
  return 0.5 * erfcReference(-v / Math.SQRT2);
}

/** max(x, 0). */
export function reluReference(x: Float64Array): Float64Array {
  return x.map((v) => Math.max(v, 0));
}

/** dX = dOut where x > 0, else 0. */
export function reluBackwardReference(x: Float64Array, dOut: Float64Array): Float64Array {
  return x.map((v, i) => (v > 0 ? dOut[i] : 0));
}

/** gelu(x) = x · Φ(x). */
export function geluErfReference(x: Float64Array): Float64Array {
  return x.map((v) => v * normalCdfReference(v));
}

/** dX = dOut · (Φ(x) + x · φ(x)), φ(x) = e^(−x²/2) / √(2π). */
export function geluErfBackwardReference(x: Float64Array, dOut: Float64Array): Float64Array {
  return x.map((v, i) => dOut[i] * (normalCdfReference(v) + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI)));
}
