// CPU reference for dropout (ops/dropout.ts): the same Philox-4x32-10 mask bit for bit, in uint32
// arithmetic, and the float64 forward and backward that use it.
// Element i of a call with (seed, offset) is kept when the first word of
// philox4x32_10([counter lo, counter hi, 0, 0], [seed lo, seed hi]) with counter = offset + i is
// ≥ floor(p · 2^32); kept elements are scaled by 1 / (1 − p).

const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
const TWO_32 = 2 ** 32;

/** High 32 bits of the 64-bit product of two uint32 values (exact: every partial product fits a double). */
export function mulHi32(a: number, b: number): number {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const bLo = b & 0xffff;
  const bHi = b >>> 16;
  const cross = ((aLo * bLo) >>> 16) + ((aHi * bLo) & 0xffff) + aLo * bHi;
  return (aHi * bHi + ((aHi * bLo) >>> 16) + Math.floor(cross / 65536)) >>> 0;
}

/** Philox-4x32-10 of a 128-bit counter under a 64-bit key (Random123's philox4x32_R(10, ...)). */
export function philox4x32(counter: readonly number[], key: readonly number[]): Uint32Array {
  let [c0, c1, c2, c3] = counter.map((word) => word >>> 0);
  let [k0, k1] = key.map((word) => word >>> 0);
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0;
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    const hi0 = mulHi32(PHILOX_M0, c0);
    const lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulHi32(PHILOX_M1, c2);
    const lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return Uint32Array.from([c0, c1, c2, c3]);
}

/** floor(p · 2^32): a uniform uint32 below this drops the element. */
export function dropoutThreshold(p: number): number {
  return Math.floor(p * TWO_32);
}

/** The keep mask (1 kept, 0 dropped) of n elements whose counters start at offset. */
export function dropoutMaskReference(n: number, p: number, seed: number, offset: number): Uint8Array {
  const threshold = dropoutThreshold(p);
  const key = [seed % TWO_32, Math.floor(seed / TWO_32)];
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const counter = offset + i;
    const bits = philox4x32([counter % TWO_32, Math.floor(counter / TWO_32), 0, 0], key);
    mask[i] = bits[0] >= threshold ? 1 : 0;
  }
  return mask;
}

/** y = x · mask / (1 − p). */
export function dropoutReference(x: ArrayLike<number>, p: number, seed: number, offset: number): Float64Array {
  const mask = dropoutMaskReference(x.length, p, seed, offset);
  return Float64Array.from(x, (value, i) => (mask[i] * value) / (1 - p));
}

/** dx = dOut · mask / (1 − p): the same mask, recomputed. */
export function dropoutBackwardReference(dOut: ArrayLike<number>, p: number, seed: number, offset: number): Float64Array {
  return dropoutReference(dOut, p, seed, offset);
}
