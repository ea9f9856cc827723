// The chunked LM loss (src/train/lmLoss.ts) against the plain path crossEntropy(model.forward(ids)): the same
// loss and the same gradients for trainable tensors inside the model and for the head weight, with chunks of
// rows that do not divide the batch, and IGNORE_INDEX labels skipped.

import { afterAll, describe, expect, it } from 'vitest';
import { scale } from '../../src/engine/ops/arithmetic.ts';
import { crossEntropy } from '../../src/engine/ops/crossEntropy.ts';
import { chunkedLmLoss, lmHeadWeight } from '../../src/train/lmLoss.ts';
import { IGNORE_INDEX } from '../../src/train/packing.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, relativeError, rng } from '../helpers/numeric.ts';
import { makeTrainable, tinyLlama } from './helpers.ts';

const seen: string[] = [];
afterAll(() => console.info(seen.join('\n')));

describe('chunkedLmLoss', () => {
  it('equals crossEntropy of the full logits, in value and gradients (a norm, a linear, an untied head)', async () => {
    const engine = await testEngine();
    const names = ['model.norm.weight', 'model.layers.1.mlp.down_proj.weight', 'lm_head.weight'];
    const model = makeTrainable(await tinyLlama(engine, { layers: 2 }), names);
    const V = model.config.vocabSize;
    const random = rng(3);
    const B = 2;
    const T = 11;
    const ids = Int32Array.from({ length: B * T }, () => Math.floor(random() * V));
    const labels = Int32Array.from({ length: B * T }, (_, i) => (i % 4 === 1 ? IGNORE_INDEX : Math.floor(random() * V)));
    const params = model.trainableParameters();
    expect(lmHeadWeight(model)).toBe(params.find((p) => p.name === 'lm_head.weight'));

    const run = async (chunked: boolean) =>
      engine.scope(async () => {
        const idT = engine.tensor(ids, [B, T], { dtype: 'i32' });
        const labelT = engine.tensor(labels, [B, T], { dtype: 'i32' });
        const loss = chunked ? chunkedLmLoss(model.hidden(idT), labelT, lmHeadWeight(model), { chunkRows: 5 }) : crossEntropy(model.forward(idT), labelT, { ignoreIndex: IGNORE_INDEX });
        engine.backward(scale(loss, 3)); // an incoming gradient other than 1
        const value = (await loss.read())[0];
        const grads = await Promise.all(params.map(async (p) => Float32Array.from((await p.grad!.read()) as Float32Array)));
        for (const p of params) {
          p.grad!.release();
          p.grad = null;
        }
        return { value, grads };
      });
    const plain = await run(false);
    const chunked = await run(true);
    expect(Math.abs(chunked.value - plain.value) / plain.value).toBeLessThan(1e-6);
    expect(plain.value).toBeGreaterThan(1);
    seen.push(`loss ${chunked.value} vs ${plain.value}`);
    names.forEach((name, i) => {
      seen.push(`${name}: gradient relative error ${relativeError(chunked.grads[i], plain.grads[i]).toExponential(2)}`);
      expectClose(chunked.grads[i], plain.grads[i], 1e-5, name);
      expect(relativeError(plain.grads[i], new Float32Array(plain.grads[i].length))).toBeGreaterThan(0);
    });
    // Frozen weights received nothing.
    for (const [name, tensor] of model.parameters()) if (!names.includes(name)) expect(tensor.grad, name).toBeNull();
    model.dispose();
  });

  it('works with a tied head and under noGrad (evaluation) records nothing', async () => {
    const engine = await testEngine();
    const model = makeTrainable(await tinyLlama(engine, { tie: true }), ['model.embed_tokens.weight']);
    const head = lmHeadWeight(model);
    expect(head.name).toBe('model.embed_tokens.weight');
    const V = model.config.vocabSize;
    const random = rng(4);
    const ids = Int32Array.from({ length: 9 }, () => Math.floor(random() * V));
    const labels = Int32Array.from({ length: 9 }, () => Math.floor(random() * V));
    await engine.scope(async () => {
      const idT = engine.tensor(ids, [1, 9], { dtype: 'i32' });
      const labelT = engine.tensor(labels, [1, 9], { dtype: 'i32' });
      const expected = (await engine.noGrad(() => crossEntropy(model.forward(idT), labelT)).read())[0];
      const evaluated = engine.noGrad(() => chunkedLmLoss(model.hidden(idT), labelT, head, { chunkRows: 4 }));
      expect(evaluated.requiresGrad).toBe(false);
      expect(Math.abs((await evaluated.read())[0] - expected) / expected).toBeLessThan(1e-6);
      // With a gradient: the tied embedding gets both its head and its embedding contributions.
      const plainGrad = await engine.scope(async () => {
        engine.backward(crossEntropy(model.forward(idT), labelT));
        const g = Float32Array.from((await head.grad!.read()) as Float32Array);
        head.grad!.release();
        head.grad = null;
        return g;
      });
      engine.backward(chunkedLmLoss(model.hidden(idT), labelT, head, { chunkRows: 4 }));
      const tied = (await head.grad!.read()) as Float32Array;
      seen.push(`tied embedding: gradient relative error ${relativeError(tied, plainGrad).toExponential(2)}`);
      expectClose(tied, plainGrad, 1e-5, 'tied embedding gradient');
      head.grad!.release();
      head.grad = null;
    });
    model.dispose();
  });
});
