// QLoRA end to end on the tiny fixtures: LoRA on a model whose linears are frozen NF4 gets gradients in A and
// B through the 4-bit layers, equal to those of the same model with dense dequantized weights and agreeing
// with finite differences; merging a QLoRA adapter gives dense layers dequant(W) + s · B A that reproduce
// the adapted 4-bit model, and unmerging gives the 4-bit layers back untouched.

import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { scale } from '../../src/engine/ops/arithmetic.ts';
import { crossEntropy } from '../../src/engine/ops/crossEntropy.ts';
import type { Tensor } from '../../src/engine/tensor.ts';
import { DenseLinear } from '../../src/models/linear.ts';
import { loadModel } from '../../src/models/load.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { expectedTensors } from '../../src/models/weights.ts';
import { Linear4bitModule } from '../../src/peft/linear4bitModule.ts';
import { attachLora, type PeftModel } from '../../src/peft/peftModel.ts';
import { quantizeLinears } from '../../src/peft/qlora.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, randomArray, relativeError, rng, toF32 } from '../helpers/numeric.ts';
import { fixtureProvider, readGolden, type ModelFixture } from '../models/helpers.ts';

const engine = await testEngine();
const seen: string[] = [];
afterAll(() => console.info(seen.join('\n')));

/** The same function as a 4-bit model with dense f32 weights dequant(W) (GPT-2 back in its Conv1D layout). */
async function denseTwin(quantized: CausalLM, fixture: ModelFixture): Promise<CausalLM> {
  const { model } = await loadModel(engine, fixtureProvider(fixture));
  for (const [path, module] of quantized.linears().entries()) {
    const dense = await (module as Linear4bitModule).toDense(engine, { fanInFanOut: fixture === 'gpt2' });
    (model.linears().replace(path, () => dense) as DenseLinear).dispose();
  }
  return model;
}

/** Random non-zero A and B for every target module, so every gradient is non-trivial. */
function randomAdapter(model: CausalLM, paths: readonly string[], r: number, seed: number) {
  const random = rng(seed);
  return new Map(
    paths.map((path) => {
      const m = model.linears().get(path);
      return [path, { A: toF32(randomArray(r * m.inFeatures, random, 0.3)), B: toF32(randomArray(m.outFeatures * r, random, 0.3)) }];
    }),
  );
}

function lossFn(peft: PeftModel, ids: number[][]): () => Tensor {
  const V = peft.config.vocabSize;
  return () => scale(crossEntropy(peft.forward(tokenTensor(engine, ids.map((row) => row.slice(0, -1)), V)), tokenTensor(engine, ids.map((row) => row.slice(1)), V)), 10);
}

async function gradients(engineArg: Engine, peft: PeftModel, loss: () => Tensor): Promise<Map<string, Float32Array>> {
  await engineArg.scope(async () => engineArg.backward(loss()));
  const grads = new Map<string, Float32Array>();
  for (const [name, tensor] of peft.trainableParameters()) {
    grads.set(name, Float32Array.from((await tensor.grad!.read()) as Float32Array));
    tensor.grad!.dispose();
    tensor.grad = null;
  }
  return grads;
}

describe.each<ModelFixture>(['llama', 'gpt2'])('QLoRA on %s', (fixture) => {
  it('A and B get gradients through the frozen 4-bit layers, equal to the dense-dequantized model\'s', async () => {
    const golden = await readGolden(fixture);
    // Llama with 2 × 3 = 6 rows runs the 4-bit GEMV kernels, GPT-2 with 2 × 5 = 10 rows the tiled GEMM.
    const ids = fixture === 'llama' ? golden.ids.map((row) => row.slice(0, 4)) : golden.ids;
    const { model: quantized } = await loadModel(engine, fixtureProvider(fixture));
    await quantizeLinears(quantized, { doubleQuant: true });
    const dense = await denseTwin(quantized, fixture);
    try {
      const config = { r: 2, alpha: 4, targetModules: 'all-linear' };
      const paths = quantized.linears().paths();
      const weights = randomAdapter(quantized, paths, 2, 9);
      const q = attachLora(quantized, config, { weights });
      const d = attachLora(dense, config, { weights });
      const fromQuantized = await gradients(engine, q, lossFn(q, ids));
      const fromDense = await gradients(engine, d, lossFn(d, ids));
      expect([...fromQuantized.keys()]).toEqual([...fromDense.keys()]);
      expect(fromQuantized.size).toBe(paths.length * 2);
      let worst = 0;
      for (const [name, grad] of fromQuantized) {
        expect(Math.max(...grad.map(Math.abs)), name).toBeGreaterThan(1e-4);
        worst = Math.max(worst, relativeError(grad, fromDense.get(name)!));
        expectClose(grad, fromDense.get(name)!, 1e-3, name);
      }
      for (const [, module] of quantized.linears().entries()) {
        const base = (module as unknown as { base: Linear4bitModule }).base;
        expect(base).toBeInstanceOf(Linear4bitModule);
        for (const tensor of base.weight.tensors) expect(tensor.grad).toBeNull();
      }

      // Finite differences on the 4-bit model along a random direction of layer 0's first A (whose gradient
      // comes back through every 4-bit layer above it).
      const [name, A] = [...q.trainableParameters()][0];
      const direction = randomArray(A.size, rng(4));
      const grad = fromQuantized.get(name)!;
      const analytic = grad.reduce((sum, g, i) => sum + g * direction[i], 0);
      const original = Float32Array.from((await A.read()) as Float32Array);
      const eps = 2e-3;
      const lossAt = async (sign: number) => {
        engine.gpu.upload(A.buffer, Float32Array.from(original, (a, i) => a + sign * eps * direction[i]));
        return engine.scope(async () => (await engine.noGrad(lossFn(q, ids)).read())[0]);
      };
      const numeric = ((await lossAt(1)) - (await lossAt(-1))) / (2 * eps);
      engine.gpu.upload(A.buffer, original);
      const fdError = Math.abs(analytic - numeric) / Math.abs(analytic);
      seen.push(`${fixture}: QLoRA grads vs dense-dequantized ${worst.toExponential(2)}; ${name}: ⟨∇L, d⟩ ${analytic.toFixed(5)} vs finite difference ${numeric.toFixed(5)} (${fdError.toExponential(2)})`);
      expect(Math.abs(analytic)).toBeGreaterThan(1e-2);
      expect(fdError).toBeLessThan(1e-2);
    } finally {
      quantized.dispose();
      dense.dispose();
    }
  });

  it('merging a QLoRA adapter gives dense dequant(W) + s·B·A reproducing the adapted 4-bit model; unmerge restores the 4-bit layers', async () => {
    const golden = await readGolden(fixture);
    const { model } = await loadModel(engine, fixtureProvider(fixture));
    const logits = () => engine.scope(async () => (await engine.noGrad(() => model.forward(tokenTensor(engine, golden.ids, model.config.vocabSize))).read()) as Float32Array);
    try {
      await quantizeLinears(model, { doubleQuant: fixture === 'llama' });
      const base4bit = await logits();
      const peft = attachLora(model, { r: 4, alpha: 8, targetModules: 'all-linear', layersToTransform: 1 }, { weights: randomAdapter(model, model.linears().paths().filter((p) => /\.1\./.test(p)), 4, 3) });
      const adapted = await logits();
      expect(relativeError(adapted, base4bit)).toBeGreaterThan(1e-2);
      const bases = new Map(peft.loraModules().map((m) => [m.path, m.base]));

      await peft.merge();
      for (const module of peft.loraModules()) {
        expect(module.base).toBeInstanceOf(DenseLinear);
        expect((module.base as DenseLinear).fanInFanOut).toBe(fixture === 'gpt2');
      }
      const merged = await logits();
      const mergeError = relativeError(merged, adapted);
      expectClose(merged, adapted, 1e-5, 'merged dense vs adapted 4-bit');
      peft.unmerge();
      for (const module of peft.loraModules()) expect(module.base).toBe(bases.get(module.path));
      expect(relativeError(await logits(), adapted)).toBe(0);
      expect(relativeError(await peft.withAdaptersDisabled(logits), base4bit)).toBe(0);

      const plain = await peft.mergeAndUnload();
      const final = await logits();
      expectClose(final, adapted, 1e-5, 'merge_and_unload');
      // Merged layers are dense in the checkpoint's own layout (GPT-2: Conv1D [in, out]); the rest stay 4-bit.
      const shapes = new Map(expectedTensors(plain.config).map((t) => [t.name, t.shape]));
      for (const [path, module] of plain.linears().entries()) {
        if (/\.1\./.test(path)) expect([...(module as DenseLinear).weight.shape]).toEqual(shapes.get(`${path}.weight`));
        else expect(module).toBeInstanceOf(Linear4bitModule);
      }
      seen.push(`${fixture}: merged QLoRA vs adapted 4-bit ${mergeError.toExponential(2)}, merge_and_unload ${relativeError(final, adapted).toExponential(2)}`);
    } finally {
      model.dispose();
    }
  });
});
