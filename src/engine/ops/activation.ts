// Elementwise activations (shaders/activation.wgsl): gelu (tanh form, as PyTorch
// gelu(approximate='tanh') and GPT-2's gelu_new), silu, and the fused Llama MLP product
// swiglu(gate, up) = silu(gate) · up; relu and the exact (erf) GELU that transformers calls "gelu"
// (bottleneck adapters' non-linearities). Any shape; the output has the input's shape.

import { u32 } from '../../gpu/runtime.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType, requireSameShape } from './checks.ts';

const WORKGROUP_SIZE = 256;

/** 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))). */
export function gelu(x: Tensor): Tensor {
  return unaryActivation('gelu', x);
}

/** x · sigmoid(x). */
export function silu(x: Tensor): Tensor {
  return unaryActivation('silu', x);
}

/** max(x, 0); the gradient at 0 is 0. */
export function relu(x: Tensor): Tensor {
  return unaryActivation('relu', x);
}

/** x · Φ(x) = 0.5 · x · (1 + erf(x / √2)), PyTorch's gelu(approximate='none'). */
export function geluErf(x: Tensor): Tensor {
  return unaryActivation('gelu_erf', x);
}

/** silu(gate) · up, one fused kernel each way. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  requireDType('swiglu', gate, 'f32');
  requireDType('swiglu', up, 'f32');
  requireSameShape('swiglu', gate, up);
  const engine = gate.engine;
  const out = engine.empty(gate.shape);
  dispatchActivation('swiglu', [gate, up, undefined, out]);

  if (engine.needsGrad([gate, up])) {
    engine.record(out, [gate, up], [gate, up], (dOut, [needGate, needUp]) => {
      const dGate = needGate ? engine.empty(gate.shape) : null;
      const dUp = needUp ? engine.empty(up.shape) : null;
      if (dGate && dUp) dispatchActivation('swiglu_backward', [gate, up, dOut, dGate, dUp]);
      else if (dGate) dispatchActivation('swiglu_backward_gate', [gate, up, dOut, dGate]);
      else if (dUp) dispatchActivation('swiglu_backward_up', [gate, undefined, dOut, dUp]);
      return [dGate, dUp];
    });
  }
  return out;
}

function unaryActivation(op: 'gelu' | 'silu' | 'relu' | 'gelu_erf', x: Tensor): Tensor {
  requireDType(op === 'gelu_erf' ? 'geluErf' : op, x, 'f32');
  const engine = x.engine;
  const out = engine.empty(x.shape);
  dispatchActivation(op, [x, undefined, undefined, out]);
  if (engine.needsGrad([x])) {
    engine.record(out, [x], [x], (dOut) => {
      const dX = engine.empty(x.shape);
      dispatchActivation(`${op}_backward`, [x, undefined, dOut, dX]);
      return [dX];
    });
  }
  return out;
}

/**
 * One dispatch over all elements. Tensors in binding order (shaders/activation.wgsl):
 * x or gate, up, dOut, out (or dX / dGate), dUp; `undefined` where the entry point has no such binding.
 */
function dispatchActivation(entryPoint: string, tensors: (Tensor | undefined)[]): void {
  const out = tensors[3]!;
  if (out.size === 0) return;
  out.engine.gpu.dispatch(
    { shader: 'activation', entryPoint },
    {
      params: [u32(out.size)],
      bindings: tensors.map((tensor) => tensor?.binding),
      workgroups: grid1d(out.size, WORKGROUP_SIZE),
    },
  );
}
