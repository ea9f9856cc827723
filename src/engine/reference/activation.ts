// float64 CPU reference for the activations (ops/activation.ts): the textbook formulas, forward and
// analytic backward, defining the right answer for the GPU kernels. For the exact GELU, erfc is computed
// to near float64 precision (a positive-term series below 2, a continued fraction above), independently
// of the single-precision fit the shader uses.

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** gelu(x) = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))), as PyTorch gelu(approximate='tanh'). */
export function geluReference(x: Float64Array): Float64Array {
  return x.map((v) => 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_CUBIC * v ** 3))));
}

/** dX = dOut · gelu'(x), gelu'(x) = 0.5 · (1 + t) + 0.5 · x · (1 − t²) · √(2/π) · (1 + 3 · 0.044715 · x²). */
export function geluBackwardReference(x: Float64Array, dOut: Float64Array): Float64Array {
  return x.map((v, i) => {
    const t = Math.tanh(SQRT_2_OVER_PI * (v + GELU_CUBIC * v ** 3));
    const derivative = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * v * v);
    return dOut[i] * derivative;
  });
}

/** silu(x) = x · sigmoid(x). */
export function siluReference(x: Float64Array): Float64Array {
  return x.map((v) => v * sigmoid(v));
}

/** silu'(x) = s + x · s · (1 − s), s = sigmoid(x). */
function siluDerivative(v: number): number {
  const s = sigmoid(v);
  return s + v * s * (1 - s);
}

/** dX = dOut · silu'(x). */
export function siluBackwardReference(x: Float64Array, dOut: Float64Array): Float64Array {
  return x.map((v, i) => dOut[i] * siluDerivative(v));
}

/** swiglu(gate, up) = silu(gate) · up. */
export function swigluReference(gate: Float64Array, up: Float64Array): Float64Array {
  return gate.map((g, i) => g * sigmoid(g) * up[i]);
}

/** dGate = dOut · up · silu'(gate), dUp = dOut · silu(gate). */
export function swigluBackwardReference(gate: Float64Array, up: Float64Array, dOut: Float64Array) {
  return {
    dGate: gate.map((g, i) => dOut[i] * up[i] * siluDerivative(g)),
    dUp: gate.map((g, i) => dOut[i] * g * sigmoid(g)),
  };
}

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
