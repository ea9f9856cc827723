// A frozen 4-bit linear module (QLoRA's base layers): y [..., OUT] = x [..., IN] · dequant(W)ᵀ (+ b) through
// the fused linear4bit op, over a QuantizedWeight W [OUT, IN] in bitsandbytes' layout. The weight gets no
// gradient; x does, so LoRA branches below the layer train. GPT-2's Conv1D weights are quantized
// transposed to [OUT, IN], as bitsandbytes stores them, so the module is the same for every architecture.

import type { Engine } from '../engine/engine.ts';
import { ShapeError, shapeText } from '../engine/errors.ts';
import { linear4bit } from '../engine/ops/linear4bit.ts';
import type { Tensor } from '../engine/tensor.ts';
import { checkInput, DenseLinear, type Linear } from '../models/linear.ts';
import { downloadQuantState, type QuantizedWeight } from '../quant/gpuQuantize.ts';
import { dequantize4bit } from '../quant/quantize.ts';

export class Linear4bitModule implements Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(
    readonly path: string,
    /** [OUT, IN], owned by the module. */
    readonly weight: QuantizedWeight,
    /** [OUT] f32, owned by the module. */
    readonly bias: Tensor | null = null,
  ) {
    this.outFeatures = weight.outFeatures;
    this.inFeatures = weight.inFeatures;
    if (bias && (bias.rank !== 1 || bias.shape[0] !== this.outFeatures)) {
      throw new ShapeError(`4-bit linear ${path}: bias must be [${this.outFeatures}], got ${shapeText(bias.shape)}`);
    }
  }

  forward(x: Tensor): Tensor {
    checkInput(this, x);
    return linear4bit(x, this.weight, this.bias);
  }

  /**
   * The f32 tensors by state-dict name: the bias only. The 4-bit weight is `weight` (a QuantizedWeight);
   * its bitsandbytes tensors come from downloadQuantState + bnbTensorsFromState.
   */
  parameters(): Map<string, Tensor> {
    return this.bias ? new Map([[`${this.path}.bias`, this.bias]]) : new Map();
  }

  /**
   * A new f32 DenseLinear computing the same function: dequant(W) exactly as bitsandbytes (and the
   * kernel) defines it, in the [OUT, IN] layout or, with fanInFanOut, transposed to [IN, OUT] (GPT-2's
   * Conv1D). It shares the bias (one more reference). Dequantizes on the host from the read-back codes.
   */
  async toDense(engine: Engine, options: { fanInFanOut?: boolean } = {}): Promise<DenseLinear> {
    const values = dequantize4bit(await downloadQuantState(this.weight)); // [OUT, IN]
    const fanInFanOut = options.fanInFanOut ?? false;
    const [O, I] = [this.outFeatures, this.inFeatures];
    const data = fanInFanOut ? transpose(values, O, I) : values;
    const weight = engine.keep(engine.tensor(data, fanInFanOut ? [I, O] : [O, I], { name: `${this.path}.weight`, category: 'frozenWeights' }));
    return new DenseLinear(this.path, weight, this.bias?.retain() ?? null, { fanInFanOut });
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
  }
}

/** [rows, cols] → [cols, rows] */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}
