// GPT-2 (GPT2LMHeadModel): learned positions, pre-LayerNorm blocks, fused q/k/v projection (c_attn),
// tanh GELU MLP, LM head tied to the token embedding unless the config unties it. The Conv1D weights
// stay in their stored [in, out] layout (DenseLinear fanInFanOut).
// Letters: B batch, T tokens, C = n_embd, H heads, D = C / H, R = B·T rows.

import type { Engine } from '../engine/engine.ts';
import { ShapeError } from '../engine/errors.ts';
import { gelu } from '../engine/ops/activation.ts';
import { add } from '../engine/ops/arithmetic.ts';
import { attention } from '../engine/ops/attention.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { layerNorm } from '../engine/ops/layernorm.ts';
import { reshape } from '../engine/ops/reshape.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { Gpt2Config } from './config.ts';
import { DenseLinear } from './linear.ts';
import { TransformerLM, type BlockContext } from './model.ts';

const P = 'transformer.';

export class Gpt2Model extends TransformerLM<Gpt2Config> {
  /** weights: every tensor of expectedTensors(config) by state-dict name; the model owns them from here on. */
  constructor(engine: Engine, config: Gpt2Config, weights: Map<string, Tensor>) {
    super(engine, config, weights);
    const conv1d = (path: string) =>
      this.linearSet.add(new DenseLinear(path, this.take(`${path}.weight`), this.take(`${path}.bias`), { fanInFanOut: true }));
    for (let i = 0; i < config.numLayers; i++) {
      conv1d(`${P}h.${i}.attn.c_attn`);
      conv1d(`${P}h.${i}.attn.c_proj`);
      conv1d(`${P}h.${i}.mlp.c_fc`);
      conv1d(`${P}h.${i}.mlp.c_proj`);
    }
  }

  protected checkPositions(positionOffset: number, tokens: number): void {
    if (positionOffset + tokens > this.config.maxPositions) {
      throw new ShapeError(
        `GPT-2 has ${this.config.maxPositions} learned positions; positions ${positionOffset}..${positionOffset + tokens - 1} were asked for`,
      );
    }
  }

  protected embed(ids: Tensor, { tokens, positionOffset }: BlockContext): Tensor {
    const positions = this.indices.get(`positions ${positionOffset}+${tokens}`, [tokens], () =>
      Int32Array.from({ length: tokens }, (_, t) => positionOffset + t),
    );
    // [B, T, C] + [T, C]
    return add(embedding(ids, this.weight(`${P}wte.weight`)), embedding(positions, this.weight(`${P}wpe.weight`)));
  }

  protected block(layer: number, h: Tensor, context: BlockContext): Tensor {
    const { batch: B, tokens: T, positionOffset, cache } = context;
    const { hiddenSize: C, numHeads: H, headDim: D, layerNormEps: eps } = this.config;
    const p = `${P}h.${layer}.`;
    const linear = (name: string) => this.linearSet.get(p + name);

    const a = layerNorm(h, this.weight(`${p}ln_1.weight`), this.weight(`${p}ln_1.bias`), eps);
    const [q, k, v] = this.splitQkv(linear('attn.c_attn').forward(a), B, T).map((t) => reshape(t, [B, T, H, D]));
    let scale = this.config.scaleAttnWeights ? 1 / Math.sqrt(D) : 1;
    if (this.config.scaleAttnByInverseLayerIdx) scale /= layer + 1;
    let attended: Tensor;
    if (cache) {
      const { keys, values } = cache.write(layer, k, v);
      attended = attention(q, keys, values, { scale, kvOffset: positionOffset });
    } else {
      attended = attention(q, k, v, { scale });
    }
    const h1 = this.residualAdd(layer, 'attention', linear('attn.c_proj').forward(reshape(attended, [B, T, C])), h);

    const m = layerNorm(h1, this.weight(`${p}ln_2.weight`), this.weight(`${p}ln_2.bias`), eps);
    return this.residualAdd(layer, 'mlp', linear('mlp.c_proj').forward(gelu(linear('mlp.c_fc').forward(m))), h1);
  }

  /**
   * qkv [B, T, 3C] → q, k, v [R, C]. Viewed as a table of 3R rows of C (row 3r + j is part j of row r),
   * each part is a gather of every third row: the embedding op, which also gives the gradient.
   */
  private splitQkv(qkv: Tensor, B: number, T: number): Tensor[] {
    const R = B * T;
    const table = reshape(qkv, [3 * R, this.config.hiddenSize]);
    return [0, 1, 2].map((part) => {
      const rows = this.indices.get(`qkv part ${part} of ${R}`, [R], () => Int32Array.from({ length: R }, (_, r) => 3 * r + part));
      return embedding(rows, table);
    });
  }

  protected finalNorm(h: Tensor): Tensor {
    return layerNorm(h, this.weight(`${P}ln_f.weight`), this.weight(`${P}ln_f.bias`), this.config.layerNormEps);
  }

  protected headWeight(): Tensor {
    return this.config.tieWordEmbeddings ? this.weight(`${P}wte.weight`) : this.weight('lm_head.weight');
  }
}
