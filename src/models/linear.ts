// Linear modules: y [..., OUT] = x [..., IN] · Wᵀ (+ b), addressed by their Hugging Face module path
// (`model.layers.0.self_attn.q_proj`, `transformer.h.0.attn.c_attn`). A model reads its linears from a
// LinearSet at every forward, so adapters and quantization work by replacing entries: LoRA wraps the module
// at a path (keeping it as its base), QLoRA swaps a dense module for a 4-bit one. Anything implementing
// Linear plugs in.

import { ShapeError, shapeText } from '../engine/errors.ts';
import { add } from '../engine/ops/arithmetic.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { reshape } from '../engine/ops/reshape.ts';
import type { Tensor } from '../engine/tensor.ts';

export interface Linear {
  /** The Hugging Face module path; its tensors are `${path}.weight`, `${path}.bias`. */
  readonly path: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** x [..., inFeatures] → [..., outFeatures]. */
  forward(x: Tensor): Tensor;
  /** The tensors this module owns, by state-dict name. */
  parameters(): Map<string, Tensor>;
  /** Release everything the module owns (a wrapper disposes its base too). */
  dispose(): void;
}

export interface DenseLinearOptions {
  /**
   * The weight is stored [in, out] (transformers' Conv1D in GPT-2, PEFT's fan_in_fan_out) rather than
   * nn.Linear's [out, in]. The matmul reads it as stored; nothing is transposed or copied.
   */
  fanInFanOut?: boolean;
}

/** A full-precision f32 linear layer over a weight and optional bias it owns. */
export class DenseLinear implements Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly fanInFanOut: boolean;

  constructor(
    readonly path: string,
    /** [out, in], or [in, out] when fanInFanOut. */
    readonly weight: Tensor,
    /** [out] */
    readonly bias: Tensor | null = null,
    options: DenseLinearOptions = {},
  ) {
    this.fanInFanOut = options.fanInFanOut ?? false;
    if (weight.rank !== 2) throw new ShapeError(`linear ${path}: weight must be 2-D, got ${shapeText(weight.shape)}`);
    [this.inFeatures, this.outFeatures] = this.fanInFanOut ? weight.shape : [weight.shape[1], weight.shape[0]];
    if (bias && (bias.rank !== 1 || bias.shape[0] !== this.outFeatures)) {
      throw new ShapeError(`linear ${path}: bias must be [${this.outFeatures}], got ${shapeText(bias.shape)}`);
    }
  }

  forward(x: Tensor): Tensor {
    const leading = checkInput(this, x);
    const rows = reshape(x, [-1, this.inFeatures]); // [R, IN], R = product of the leading dims
    const product = matmul(rows, this.weight, { transposeB: !this.fanInFanOut }); // [R, OUT]
    const out = this.bias ? add(product, this.bias) : product;
    return reshape(out, [...leading, this.outFeatures]);
  }

  parameters(): Map<string, Tensor> {
    const params = new Map([[`${this.path}.weight`, this.weight]]);
    if (this.bias) params.set(`${this.path}.bias`, this.bias);
    return params;
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
  }
}

/** The leading dims of x after checking that it ends in the module's in-features. */
export function checkInput(linear: Linear, x: Tensor): number[] {
  if (x.rank < 1 || x.shape[x.rank - 1] !== linear.inFeatures) {
    throw new ShapeError(`linear ${linear.path}: input ${shapeText(x.shape)} does not end in its ${linear.inFeatures} in-features`);
  }
  return x.shape.slice(0, -1);
}

/** A model's linear modules by path, in model order. Replacing one changes what the next forward uses. */
export class LinearSet {
  private readonly modules = new Map<string, Linear>();

  add(linear: Linear): void {
    if (this.modules.has(linear.path)) throw new Error(`linear module ${linear.path} added twice`);
    this.modules.set(linear.path, linear);
  }

  has(path: string): boolean {
    return this.modules.has(path);
  }

  get(path: string): Linear {
    const linear = this.modules.get(path);
    if (!linear) throw new RangeError(`no linear module at ${JSON.stringify(path)}`);
    return linear;
  }

  paths(): string[] {
    return [...this.modules.keys()];
  }

  entries(): [string, Linear][] {
    return [...this.modules.entries()];
  }

  get size(): number {
    return this.modules.size;
  }

  /**
   * Put `make(current)` at `path` and return the module it replaced, which the caller now owns: a wrapper
   * keeps it as its base; a conversion (to 4-bit) disposes it. The new module must keep the path and sizes.
   */
  replace(path: string, make: (current: Linear) => Linear): Linear {
    const current = this.get(path);
    const next = make(current);
    if (next.path !== path || next.inFeatures !== current.inFeatures || next.outFeatures !== current.outFeatures) {
      throw new ShapeError(
        `replacing linear ${path} [${current.inFeatures} → ${current.outFeatures}] with ${next.path} [${next.inFeatures} → ${next.outFeatures}]: path and sizes must match`,
      );
    }
    this.modules.set(path, next);
    return current;
  }

  /** Every module's tensors, by state-dict name. */
  parameters(): Map<string, Tensor> {
    const all = new Map<string, Tensor>();
    for (const linear of this.modules.values()) for (const [name, tensor] of linear.parameters()) all.set(name, tensor);
    return all;
  }

  dispose(): void {
    for (const linear of this.modules.values()) linear.dispose();
    this.modules.clear();
  }
}
