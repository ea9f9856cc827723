// float64 CPU reference for the activations (ops/activation.ts): the textbook formulas, forward and
// analytic backward, defining the right answer for the GPU kernels.

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
