// The Llama family (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM; SmolLM, TinyLlama): RMSNorm
// pre-norm blocks, rotary positions (rotate_half layout; default, linear or llama3 frequencies),
// grouped-query attention, SwiGLU MLP, LM head tied or not. Qwen2 has q/k/v biases.
// Letters: B batch, T tokens, C hidden, H heads, KVH kv heads, D head dim.

import type { Engine } from '../engine/engine.ts';
import { ShapeError } from '../engine/errors.ts';
import { swiglu } from '../engine/ops/activation.ts';
import { attention } from '../engine/ops/attention.ts';
import { embedding } from '../engine/ops/embedding.ts';
import { reshape } from '../engine/ops/reshape.ts';
import { rmsNorm } from '../engine/ops/rmsnorm.ts';
import { rope } from '../engine/ops/rope.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { LlamaConfig, RopeConfig } from './config.ts';
import { DenseLinear } from './linear.ts';
import { TransformerLM, type BlockContext } from './model.ts';

/** Rotary inverse frequencies [D/2] as transformers computes them (in float64 here, rounded to f32). */
export function rotaryInverseFrequencies(rope: RopeConfig, headDim: number): Float32Array {
  const half = headDim / 2;
  const base = Array.from({ length: half }, (_, i) => 1 / rope.theta ** ((2 * i) / headDim));
  const s = rope.scaling;
  if (s.type === 'default') return Float32Array.from(base);
  if (s.type === 'linear') return Float32Array.from(base, (f) => f / s.factor);
  // llama3 (transformers' _compute_llama3_parameters): wavelengths longer than the original context / low
  // are slowed by `factor`, shorter than original / high are kept, and in between blended smoothly.
  const lowFreqWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositions / s.highFreqFactor;
  return Float32Array.from(base, (f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowFreqWavelen) return f / s.factor;
    if (wavelen < highFreqWavelen) return f;
    const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

export class LlamaModel extends TransformerLM<LlamaConfig> {
  /** [D/2] f32 */
  private readonly invFreq: Tensor;

  /** weights: every tensor of expectedTensors(config) by state-dict name; the model owns them from here on. */
  constructor(engine: Engine, config: LlamaConfig, weights: Map<string, Tensor>) {
    super(engine, config, weights);
    const linear = (path: string, bias: boolean) =>
      this.linearSet.add(new DenseLinear(path, this.take(`${path}.weight`), bias ? this.take(`${path}.bias`) : null));
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}.`;
      linear(`${p}self_attn.q_proj`, config.qkvBias);
      linear(`${p}self_attn.k_proj`, config.qkvBias);
      linear(`${p}self_attn.v_proj`, config.qkvBias);
      linear(`${p}self_attn.o_proj`, config.oBias);
      linear(`${p}mlp.gate_proj`, config.mlpBias);
      linear(`${p}mlp.up_proj`, config.mlpBias);
      linear(`${p}mlp.down_proj`, config.mlpBias);
    }
    const frequencies = rotaryInverseFrequencies(config.rope, config.headDim);
    this.invFreq = engine.keep(engine.tensor(frequencies, [frequencies.length], { name: 'rotary inverse frequencies' }));
  }

  protected checkPositions(positionOffset: number, tokens: number): void {
    const window = this.config.slidingWindow;
    if (window !== null && positionOffset + tokens > window) {
      throw new ShapeError(
        `${this.config.modelType}: ${positionOffset + tokens} positions exceed the sliding window of ${window}, which tabtune's attention does not implement`,
      );
    }
  }

  protected embed(ids: Tensor): Tensor {
    return embedding(ids, this.weight('model.embed_tokens.weight'));
  }

  protected block(layer: number, h: Tensor, context: BlockContext): Tensor {
    const { batch: B, tokens: T, positionOffset, cache } = context;
    const { numHeads: H, numKvHeads: KVH, headDim: D, rmsNormEps: eps } = this.config;
    const p = `model.layers.${layer}.`;
    const linear = (name: string) => this.linearSet.get(p + name);
    const rotary = { headDim: D, layout: 'half' as const, invFreq: this.invFreq };

    const x = rmsNorm(h, this.weight(`${p}input_layernorm.weight`), eps);
    const q = reshape(rope(linear('self_attn.q_proj').forward(x), positionOffset, rotary), [B, T, H, D]);
    const k = reshape(rope(linear('self_attn.k_proj').forward(x), positionOffset, rotary), [B, T, KVH, D]);
    const v = reshape(linear('self_attn.v_proj').forward(x), [B, T, KVH, D]);
    let attended: Tensor; // [B, T, H, D]
    if (cache) {
      const { keys, values } = cache.write(layer, k, v);
      attended = attention(q, keys, values, { kvOffset: positionOffset });
    } else {
      attended = attention(q, k, v);
    }
    const h1 = this.residualAdd(layer, 'attention', linear('self_attn.o_proj').forward(reshape(attended, [B, T, H * D])), h);

    const m = rmsNorm(h1, this.weight(`${p}post_attention_layernorm.weight`), eps);
    const mlp = linear('mlp.down_proj').forward(swiglu(linear('mlp.gate_proj').forward(m), linear('mlp.up_proj').forward(m)));
    return this.residualAdd(layer, 'mlp', mlp, h1);
  }

  protected finalNorm(h: Tensor): Tensor {
    return rmsNorm(h, this.weight('model.norm.weight'), this.config.rmsNormEps);
  }

  protected headWeight(): Tensor {
    return this.config.tieWordEmbeddings ? this.weight('model.embed_tokens.weight') : this.weight('lm_head.weight');
  }

  protected override disposeExtra(): void {
    this.invFreq.dispose();
  }
}
