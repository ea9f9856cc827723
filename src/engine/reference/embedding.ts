// float64 CPU reference for embedding: defines the right answer for the GPU kernels.
// ids: N integers; table: [V, C] row-major. An id outside [0, V) gives a zero row and no gradient.

export function embeddingReference(ids: ArrayLike<number>, table: Float64Array, vocab: number, width: number): Float64Array {
  const out = new Float64Array(ids.length * width);
  for (let n = 0; n < ids.length; n++) {
    const row = ids[n];
    if (row < 0 || row >= vocab) continue;
    for (let c = 0; c < width; c++) out[n * width + c] = table[row * width + c];
  }
  return out;
}

/** dTable [V, C] = Σ over tokens n with ids[n] = v of dOut[n, :]. */
export function embeddingBackwardReference(ids: ArrayLike<number>, dOut: Float64Array, vocab: number, width: number): Float64Array {
  const dTable = new Float64Array(vocab * width);
  for (let n = 0; n < ids.length; n++) {
    const row = ids[n];
    if (row < 0 || row >= vocab) continue;
    for (let c = 0; c < width; c++) dTable[row * width + c] += dOut[n * width + c];
  }
  return dTable;
}
