// float64 CPU reference for the broadcasting arithmetic ops (ops/arithmetic.ts): defines the right
// answer for the GPU kernels and their gradients. Operands are flat row-major arrays with shapes;
// shapes align from the right, and a dim of 1 or a missing dim broadcasts.

export type Shape = readonly number[];

const sizeOf = (shape: Shape) => shape.reduce((product, dim) => product * dim, 1);

/** The broadcast shape of two shapes, or null when they do not fit. */
export function broadcastShapeReference(aShape: Shape, bShape: Shape): number[] | null {
  const rank = Math.max(aShape.length, bShape.length);
  const shape: number[] = [];
  for (let d = 0; d < rank; d++) {
    const aDim = aShape[aShape.length - rank + d] ?? 1;
    const bDim = bShape[bShape.length - rank + d] ?? 1;
    if (aDim !== bDim && aDim !== 1 && bDim !== 1) return null;
    shape.push(aDim === 1 ? bDim : aDim);
  }
  return shape;
}

/** For each element of the broadcast output, the index of the operand element it reads. */
function operandIndices(outShape: Shape, operandShape: Shape): Int32Array {
  const rank = outShape.length;
  const padded = [...new Array<number>(rank - operandShape.length).fill(1), ...operandShape];
  const strides = new Array<number>(rank).fill(0);
  for (let d = rank - 1, stride = 1; d >= 0; d--) {
    strides[d] = stride;
    stride *= padded[d];
  }
  const indices = new Int32Array(sizeOf(outShape));
  for (let i = 0; i < indices.length; i++) {
    let rest = i;
    let index = 0;
    for (let d = rank - 1; d >= 0; d--) {
      const coord = rest % outShape[d];
      rest = Math.floor(rest / outShape[d]);
      if (padded[d] !== 1) index += coord * strides[d];
    }
    indices[i] = index;
  }
  return indices;
}

function plan(aShape: Shape, bShape: Shape) {
  const shape = broadcastShapeReference(aShape, bShape);
  if (!shape) throw new Error(`cannot broadcast [${aShape}] with [${bShape}]`);
  return { shape, aIndex: operandIndices(shape, aShape), bIndex: operandIndices(shape, bShape) };
}

/** alpha · a + beta · b (add: 1, 1; sub: 1, −1), with the output shape. */
export function addReference(a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape, alpha = 1, beta = 1) {
  const { shape, aIndex, bIndex } = plan(aShape, bShape);
  const out = new Float64Array(aIndex.length);
  for (let i = 0; i < out.length; i++) out[i] = alpha * a[aIndex[i]] + beta * b[bIndex[i]];
  return { out, shape };
}

/** dA = alpha · dOut and dB = beta · dOut, each summed over the dims its operand was broadcast along. */
export function addBackwardReference(dOut: Float64Array, aShape: Shape, bShape: Shape, alpha = 1, beta = 1) {
  const { aIndex, bIndex } = plan(aShape, bShape);
  const dA = new Float64Array(sizeOf(aShape));
  const dB = new Float64Array(sizeOf(bShape));
  for (let i = 0; i < dOut.length; i++) {
    dA[aIndex[i]] += alpha * dOut[i];
    dB[bIndex[i]] += beta * dOut[i];
  }
  return { dA, dB };
}

/** a · b elementwise, with the output shape. */
export function mulReference(a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape) {
  const { shape, aIndex, bIndex } = plan(aShape, bShape);
  const out = new Float64Array(aIndex.length);
  for (let i = 0; i < out.length; i++) out[i] = a[aIndex[i]] * b[bIndex[i]];
  return { out, shape };
}

/** dA = dOut · b and dB = dOut · a, each summed over the dims its operand was broadcast along. */
export function mulBackwardReference(a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape, dOut: Float64Array) {
  const { aIndex, bIndex } = plan(aShape, bShape);
  const dA = new Float64Array(a.length);
  const dB = new Float64Array(b.length);
  for (let i = 0; i < dOut.length; i++) {
    dA[aIndex[i]] += dOut[i] * b[bIndex[i]];
    dB[bIndex[i]] += dOut[i] * a[aIndex[i]];
  }
  return { dA, dB };
}

/** s · a. */
export function scaleReference(a: Float64Array, s: number): Float64Array {
  return a.map((value) => s * value);
}

/** d(s · a)/da applied to dOut: s · dOut. */
export function scaleBackwardReference(dOut: Float64Array, s: number): Float64Array {
  return dOut.map((value) => s * value);
}
