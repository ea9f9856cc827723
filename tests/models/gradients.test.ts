// Gradients through whole models: backward() from the cross-entropy of the tiny fixtures agrees with
// finite differences of the forward pass, for weights inside linears (GPT-2's fused c_attn, which the
// model splits with gathers; rotary q/k; SwiGLU), embeddings (tied and learned positions) and biases.

import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { scale } from '../../src/engine/ops/arithmetic.ts';
import { crossEntropy } from '../../src/engine/ops/crossEntropy.ts';
import type { Tensor } from '../../src/engine/tensor.ts';
import { tokenTensor } from '../../src/models/model.ts';
import { randomArray, rng } from '../helpers/numeric.ts';
import { readGolden, withModel } from './helpers.ts';

const seen: string[] = [];
afterAll(() => console.info(seen.join('\n')));

describe('gradients through whole models', () => {
  // Directional derivative of 10 × the mean cross-entropy along a random direction d: ⟨∇L, d⟩ from backward()
  // against (L(w + εd) − L(w − εd)) / 2ε from two forwards (f32, so agreement to ~1e-2 relative).
  async function checkDirection(engine: Engine, loss: () => Tensor, param: Tensor, seed: number): Promise<{ analytic: number; numeric: number }> {
    const original = Float32Array.from((await param.read()) as Float32Array);
    const direction = randomArray(param.size, rng(seed));
    param.requiresGrad = true;
    try {
      await engine.scope(async () => engine.backward(loss()));
      const grad = (await param.grad!.read()) as Float32Array;
      let analytic = 0;
      for (let i = 0; i < grad.length; i++) analytic += grad[i] * direction[i];
      const eps = 2e-3;
      const lossAt = async (sign: number) => {
        engine.gpu.upload(param.buffer, Float32Array.from(original, (w, i) => w + sign * eps * direction[i]));
        return engine.scope(async () => (await engine.noGrad(loss).read())[0]);
      };
      const numeric = ((await lossAt(1)) - (await lossAt(-1))) / (2 * eps);
      return { analytic, numeric };
    } finally {
      engine.gpu.upload(param.buffer, original);
      param.grad?.dispose();
      param.grad = null;
      param.requiresGrad = false;
    }
  }

  const cases: [Parameters<typeof withModel>[0], string[]][] = [
    ['gpt2', ['transformer.h.0.attn.c_attn.weight', 'transformer.wte.weight', 'transformer.wpe.weight']],
    ['llama', ['model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.k_proj.weight', 'model.layers.1.mlp.gate_proj.weight']],
    ['qwen2', ['model.layers.0.self_attn.v_proj.bias', 'model.embed_tokens.weight']],
  ];
  for (const [fixture, names] of cases) {
    it(`${fixture}: backward agrees with finite differences`, async () => {
      const golden = await readGolden(fixture);
      await withModel(fixture, async (engine, model) => {
        const V = model.config.vocabSize;
        const ids = tokenTensor(engine, golden.ids.map((row) => row.slice(0, -1)), V);
        const targets = tokenTensor(engine, golden.ids.map((row) => row.slice(1)), V);
        const loss = () => scale(crossEntropy(model.forward(ids), targets), 10);
        for (const [index, name] of names.entries()) {
          const { analytic, numeric } = await checkDirection(engine, loss, model.parameters().get(name)!, 100 + index);
          expect(Math.abs(analytic), name).toBeGreaterThan(1e-2);
          const error = Math.abs(analytic - numeric) / Math.abs(analytic);
          seen.push(`${fixture} ${name}: ⟨∇L, d⟩ ${analytic.toFixed(5)}, finite difference ${numeric.toFixed(5)}, relative ${error.toExponential(2)}`);
          expect(error, `${name}: ${analytic} vs ${numeric}`).toBeLessThan(1e-2);
        }
      });
    });
  }
});

