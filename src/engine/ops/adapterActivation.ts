// Non-linearities of bottleneck adapters that ops/activation.ts lacks (shaders/adapter_activation.wgsl):
// relu, and the exact (erf) GELU that transformers calls "gelu" (ops/activation.ts's gelu is the tanh
// form, transformers' "gelu_new"). Any shape; the output has the input's shape.

import { u32 } from '../../gpu/runtime.ts';
import { grid1d } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType } from './checks.ts';

const WORKGROUP_SIZE = 256;

/** max(x, 0); the gradient at 0 is 0. */
export function relu(x: Tensor): Tensor {
  return unary('relu', x);
}

/** x · Φ(x) = 0.5 · x · (1 + erf(x / √2)), PyTorch's gelu(approximate='none'). */
export function geluErf(x: Tensor): Tensor {
  return unary('gelu_erf', x);
}

function unary(op: 'relu' | 'gelu_erf', x: Tensor): Tensor {
  requireDType(op === 'relu' ? 'relu' : 'geluErf', x, 'f32');
  const engine = x.engine;
  const out = engine.empty(x.shape);
  dispatch(op, [x, undefined, out]);
  if (engine.needsGrad([x])) {
    engine.record(out, [x], [x], (dOut) => {
      const dX = engine.empty(x.shape);
      dispatch(`${op}_backward`, [x, dOut, dX]);
      return [dX];
    });
  }
  return out;
}

/** One dispatch over all elements; tensors in binding order x, dOut, out (undefined where unused). */
function dispatch(entryPoint: string, tensors: [Tensor, Tensor | undefined, Tensor]): void {
  const out = tensors[2];
  if (out.size === 0) return;
  out.engine.gpu.dispatch(
    { shader: 'adapter_activation', entryPoint },
    { params: [u32(out.size)], bindings: tensors.map((tensor) => tensor?.binding), workgroups: grid1d(out.size, WORKGROUP_SIZE) },
  );
}
