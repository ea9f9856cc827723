// Numeric helpers for tests: seeded random data, error measures, central finite differences.

import { expect } from 'vitest';

/** mulberry32: a small seeded generator, so failures reproduce. */
export function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n values uniform in [-scale, scale), rounded to f32 so GPU and reference see the same inputs. */
export function randomArray(n: number, random: () => number, scale = 1): Float64Array {
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = Math.fround((random() * 2 - 1) * scale);
  return values;
}

export const toF32 = (values: ArrayLike<number>) => Float32Array.from(values);
export const toF64 = (values: ArrayLike<number>) => Float64Array.from(values);

/** max |actual − expected| / max |expected|; NaN or Infinity anywhere gives Infinity. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    if (!Number.isFinite(actual[i]) || !Number.isFinite(expected[i])) return Infinity;
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? worst : worst / scale;
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what = 'values'): void {
  const error = relativeError(actual, expected);
  if (!(error <= tolerance)) {
    let index = 0;
    for (let i = 0; i < expected.length; i++) {
      if (!(Math.abs(actual[i] - expected[i]) <= Math.abs(actual[index] - expected[index]))) index = i;
    }
    expect.fail(
      `${what}: relative error ${error.toExponential(3)} > ${tolerance} (length ${actual.length} vs ${expected.length}; worst at ${index}: ${actual[index]} vs ${expected[index]})`,
    );
  }
}

/**
 * Central finite differences of a scalar function f at x: df/dx[i] ≈ (f(x + h·e_i) − f(x − h·e_i)) / 2h.
 * Used on the float64 references, so h can be small.
 */
export function numericGradient(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const grad = new Float64Array(x.length);
  const probe = Float64Array.from(x);
  for (let i = 0; i < x.length; i++) {
    probe[i] = x[i] + h;
    const up = f(probe);
    probe[i] = x[i] - h;
    const down = f(probe);
    probe[i] = x[i];
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

/** Σ output · weights: turns a vector-valued reference into the scalar a finite difference needs. */
export function dot(values: ArrayLike<number>, weights: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * weights[i];
  return sum;
}
