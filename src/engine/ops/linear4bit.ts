// linear4bit: Y [..., OUT] = X [..., IN] · dequant(W)ᵀ (+ bias [OUT]) for a frozen 4-bit weight W
// [OUT, IN] (QLoRA's base layers), with fused dequantize-matmul kernels (shaders/matmul_4bit.wgsl).
// Backward flows to X (dX = dY · dequant(W)) so that adapters below the layer get gradients, and to
// the bias when it requires one; W itself is frozen and gets none.
// R (the rows of X, all leading dimensions together) ≤ GEMV_MAX_ROWS uses the GEMV kernels, larger R
// the tiled GEMM.

import { f32, u32 } from '../../gpu/runtime.ts';
import type { QuantizedWeight } from '../../quant/gpuQuantize.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType, requireShape, rowsAndWidth } from './checks.ts';

/** Rows up to which the GEMV kernels are used (MAX_ROWS in the shader). */
export const GEMV_MAX_ROWS = 8;
const GEMV_THREADS = 64;
const TILE = 64;
const MAX_GROUPS = 65535;

interface Call {
  rows: number;
  weight: QuantizedWeight;
  hasBias: boolean;
  forward: boolean;
}

function params(call: Call) {
  const w = call.weight;
  return [
    u32(call.rows),
    u32(w.inFeatures),
    u32(w.outFeatures),
    u32(Math.log2(w.blocksize)),
    u32(w.nested ? 1 : 0),
    u32(w.nested ? Math.log2(w.nestedBlocksize) : 0),
    f32(w.offset),
    u32(call.hasBias ? 1 : 0),
    u32(call.forward ? 1 : 0),
  ];
}

/** Bindings 2..5 (packed, absmax, nested absmax, tables); unused ones get a buffer the kernel never reads. */
function weightBindings(w: QuantizedWeight) {
  return [w.packed.binding, w.absmax.binding, (w.nestedAbsmax ?? w.tables).binding, w.tables.binding];
}

/** output = input · Wᵀ (+ bias) when forward, else input · W; input is [rows, K], output [rows, N]. */
function dispatchMatmul(input: Tensor, output: Tensor, call: Call, bias: Tensor | null): void {
  const { rows, weight } = call;
  const gpu = input.engine.gpu;
  const n = call.forward ? weight.outFeatures : weight.inFeatures;
  if (rows === 0 || n === 0) return;
  const dummy = weight.tables.binding;
  if (rows <= GEMV_MAX_ROWS) {
    if (call.forward) {
      gpu.dispatch(
        { shader: 'matmul_4bit', entryPoint: 'gemv_forward' },
        { params: params(call), bindings: [input.binding, ...weightBindings(weight), bias?.binding ?? dummy, output.binding], workgroups: grid1d(n, 1) },
      );
    } else {
      gpu.dispatch(
        { shader: 'matmul_4bit', entryPoint: 'gemv_backward_input' },
        { params: params(call), bindings: [input.binding, ...weightBindings(weight), undefined, output.binding], workgroups: grid1d(n, GEMV_THREADS) },
      );
    }
    return;
  }
  const rowGroups = Math.ceil(rows / TILE);
  if (rowGroups > MAX_GROUPS) throw new ShapeError(`linear4bit: ${rows} rows exceed ${MAX_GROUPS * TILE}`);
  gpu.dispatch(
    { shader: 'matmul_4bit', entryPoint: 'gemm' },
    {
      params: params(call),
      bindings: [input.binding, ...weightBindings(weight), bias?.binding ?? dummy, output.binding],
      workgroups: [Math.ceil(n / TILE), rowGroups],
    },
  );
}

function biasGrad(dOut: Tensor, rows: number, weight: QuantizedWeight): Tensor {
  const grad = dOut.engine.empty([weight.outFeatures]);
  dOut.engine.gpu.dispatch(
    { shader: 'matmul_4bit', entryPoint: 'bias_grad' },
    {
      params: params({ rows, weight, hasBias: false, forward: true }),
      bindings: [dOut.binding, undefined, undefined, undefined, undefined, undefined, grad.binding],
      workgroups: grid1d(weight.outFeatures, GEMV_THREADS),
    },
  );
  return grad;
}

export function linear4bit(x: Tensor, weight: QuantizedWeight, bias: Tensor | null = null): Tensor {
  requireDType('linear4bit', x, 'f32');
  for (const tensor of weight.tensors) {
    if (tensor.isDestroyed) throw new ShapeError(`linear4bit: the 4-bit weight '${weight.name}' was disposed`);
  }
  const { outFeatures, inFeatures } = weight;
  if (x.rank < 1 || x.shape[x.rank - 1] !== inFeatures) {
    throw new ShapeError(`linear4bit: input ${shapeText(x.shape)} does not end in ${inFeatures}, the in-features of '${weight.name}' ${shapeText(weight.shape)}`);
  }
  if (bias) {
    requireDType('linear4bit', bias, 'f32');
    requireShape('linear4bit', bias, [outFeatures], `the bias of '${weight.name}'`);
  }
  const { rows } = rowsAndWidth(x);
  const engine = x.engine;
  const out = engine.empty([...x.shape.slice(0, -1), outFeatures]);
  dispatchMatmul(x, out, { rows, weight, hasBias: bias !== null, forward: true }, bias);

  const inputs = bias ? [x, bias] : [x];
  if (engine.needsGrad(inputs)) {
    engine.record(out, inputs, weight.tensors, (dOut, needs) => {
      let dx: Tensor | null = null;
      if (needs[0]) {
        dx = engine.empty(x.shape);
        dispatchMatmul(dOut, dx, { rows, weight, hasBias: false, forward: false }, null);
      }
      const grads: (Tensor | null)[] = [dx];
      if (bias) grads.push(needs[1] ? biasGrad(dOut, rows, weight) : null);
      return grads;
    });
  }
  return out;
}
