// PeftModel on the tiny fixtures: PEFT's default targets, trainable parameters by PEFT's names and count,
// gradients only in the active adapter, named adapters (add, switch, delete), disable, merge_and_unload,
// unload, and the typed errors of bad configurations (which leave the model untouched).

import { describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { scale } from '../../src/engine/ops/arithmetic.ts';
import { crossEntropy } from '../../src/engine/ops/crossEntropy.ts';
import type { Tensor } from '../../src/engine/tensor.ts';
import { DenseLinear } from '../../src/models/linear.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { expectedTensors } from '../../src/models/weights.ts';
import { LoraConfigError, LoraLinear } from '../../src/peft/loraLinear.ts';
import { attachLora } from '../../src/peft/peftModel.ts';
import { NoTargetModulesError } from '../../src/peft/targets.ts';
import { expectClose, randomArray, relativeError, rng, toF32 } from '../helpers/numeric.ts';
import { readGolden, withModel } from '../models/helpers.ts';

const logitsOf = async (engine: Engine, model: CausalLM, ids: number[][]) =>
  (await engine.noGrad(() => model.forward(tokenTensor(engine, ids, model.config.vocabSize))).read()) as Float32Array;

/** Give every B of the active adapter random values (B starts at zero, which makes A's gradient zero). */
function randomizeB(engine: Engine, tensors: Iterable<[string, Tensor]>, seed: number): void {
  const random = rng(seed);
  for (const [name, tensor] of tensors) if (name.includes('lora_B')) engine.gpu.upload(tensor.buffer, toF32(randomArray(tensor.size, random, 0.3)));
}

describe('PeftModel', () => {
  it('llama: default targets q_proj, v_proj; PEFT names and counts; the initial adapter changes nothing', async () => {
    const golden = await readGolden('llama');
    await withModel('llama', async (engine, model) => {
      const base = await logitsOf(engine, model, golden.ids);
      const peft = attachLora(model, { r: 4, alpha: 8 });
      const config = peft.adapterConfig();
      expect(config.targetModules).toEqual(['q_proj', 'v_proj']);
      expect(config.paths).toEqual(['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
      expect(config.fanInFanOut).toBe(false);
      const trainable = peft.trainableParameters();
      expect([...trainable.keys()].slice(0, 2)).toEqual([
        'base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight',
        'base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight',
      ]);
      expect([...trainable.values()].map((t) => [...t.shape])).toEqual([[4, 32], [32, 4], [4, 32], [16, 4], [4, 32], [32, 4], [4, 32], [16, 4]]);
      for (const tensor of trainable.values()) expect([tensor.category, tensor.requiresGrad]).toEqual(['adapters', true]);
      const counts = peft.parameterCounts();
      expect(counts.trainable).toBe(2 * (4 * (32 + 32) + 4 * (32 + 16)));
      const baseCount = expectedTensors(model.config).reduce((sum, t) => sum + t.shape.reduce((p, d) => p * d, 1), 0);
      expect(counts.total).toBe(baseCount + counts.trainable);
      expect(relativeError(await logitsOf(engine, peft, golden.ids), base)).toBe(0);
      expect(engine.memory().adapters).toBe(counts.trainable * 4);
    });
  });

  it('gpt2: default target c_attn (Conv1D, fan_in_fan_out); only A and B get gradients', async () => {
    const golden = await readGolden('gpt2');
    await withModel('gpt2', async (engine, model) => {
      const peft = attachLora(model, { r: 2, alpha: 4 }, { seed: 3 });
      const config = peft.adapterConfig();
      expect(config.targetModules).toEqual(['c_attn']);
      expect(config.paths).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn']);
      expect(config.fanInFanOut).toBe(true);
      randomizeB(engine, peft.trainableParameters(), 1);
      const V = model.config.vocabSize;
      const ids = tokenTensor(engine, golden.ids.map((row) => row.slice(0, -1)), V);
      const targets = tokenTensor(engine, golden.ids.map((row) => row.slice(1)), V);
      peft.train();
      await engine.scope(async () => engine.backward(scale(crossEntropy(peft.forward(ids), targets), 10)));
      peft.eval();
      for (const [name, tensor] of peft.trainableParameters()) {
        const grad = (await tensor.grad!.read()) as Float32Array;
        expect(Math.max(...grad.map(Math.abs)), name).toBeGreaterThan(1e-4);
        tensor.grad!.dispose();
        tensor.grad = null;
      }
      for (const [name, tensor] of model.parameters()) if (!name.includes('lora_')) expect(tensor.grad, name).toBeNull();
    });
  });

  it('named adapters: add, switch instantly, disable, delete; merge_and_unload gives a plain model', async () => {
    const golden = await readGolden('llama');
    await withModel('llama', async (engine, model) => {
      const base = await logitsOf(engine, model, golden.ids);
      const peft = attachLora(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] }, { seed: 1 });
      randomizeB(engine, peft.trainableParameters(), 2);
      const first = await logitsOf(engine, peft, golden.ids);
      const second = peft.addAdapter('second', { r: 2, alpha: 2, targetModules: 'all-linear', layersToTransform: [1] }, { seed: 5 });
      expect(second.targetModules).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
      expect(second.paths.every((p) => p.startsWith('model.layers.1.'))).toBe(true);
      expect(second.paths.length).toBe(7);
      expect(peft.activeAdapter).toBe('second');
      randomizeB(engine, peft.trainableParameters(), 3);
      expect([...peft.trainableParameters('default').values()].every((t) => !t.requiresGrad)).toBe(true);
      const secondLogits = await logitsOf(engine, peft, golden.ids);
      expect(relativeError(secondLogits, first)).toBeGreaterThan(1e-2);
      peft.setAdapter('default');
      expect(relativeError(await logitsOf(engine, peft, golden.ids), first)).toBe(0);
      peft.disableAdapters();
      expect(relativeError(await logitsOf(engine, peft, golden.ids), base)).toBe(0);
      peft.enableAdapters();

      peft.deleteAdapter('second');
      expect(peft.adapterNames).toEqual(['default']);
      expect(model.linears().get('model.layers.1.mlp.up_proj')).toBeInstanceOf(DenseLinear); // unwrapped again
      expect(model.linears().get('model.layers.1.self_attn.q_proj')).toBeInstanceOf(LoraLinear);
      expect(relativeError(await logitsOf(engine, peft, golden.ids), first)).toBe(0);

      const plain = await peft.mergeAndUnload();
      expect(plain).toBe(model);
      expect(model.linears().entries().every(([, m]) => m instanceof DenseLinear)).toBe(true);
      expect([...model.parameters().keys()].sort()).toEqual(expectedTensors(model.config).map((t) => t.name).sort());
      expectClose(await logitsOf(engine, model, golden.ids), first, 1e-5, 'merged and unloaded');
      expect(engine.memory().adapters).toBe(0);
      expect(() => peft.forward(tokenTensor(engine, golden.ids, 101))).toThrow(/unloaded/);
    });
  });

  it('unload without merging gives the base model back', async () => {
    const golden = await readGolden('gpt2');
    await withModel('gpt2', async (engine, model) => {
      const base = await logitsOf(engine, model, golden.ids);
      const peft = attachLora(model, { r: 2, alpha: 4, targetModules: ['c_fc', 'c_proj'] });
      randomizeB(engine, peft.trainableParameters(), 4);
      expect(relativeError(await logitsOf(engine, peft, golden.ids), base)).toBeGreaterThan(1e-3);
      await peft.merge();
      peft.unload();
      expectClose(await logitsOf(engine, model, golden.ids), base, 1e-6, 'after unload');
      expect(engine.memory().adapters).toBe(0);
    });
  });

  it('bad configurations raise typed errors and wrap nothing', async () => {
    await withModel('llama', async (_engine, model) => {
      const untouched = () => expect(model.linears().entries().every(([, m]) => m instanceof DenseLinear)).toBe(true);
      expect(() => attachLora(model, { r: 4, alpha: 8, bias: 'all' as 'none' })).toThrow(LoraConfigError);
      try {
        attachLora(model, { r: 4, alpha: 8, targetModules: ['nope', 'c_attn'] });
        expect.unreachable();
      } catch (error) {
        expect(error).toBeInstanceOf(NoTargetModulesError);
        expect((error as Error).message).toContain('["c_attn", "nope"]');
        expect((error as NoTargetModulesError).patterns).toEqual(['c_attn', 'nope']);
      }
      expect(() => attachLora(model, { r: 17, alpha: 8 })).toThrow(/r = 17 is larger than model\.layers\.0\.self_attn\.v_proj allows/);
      expect(() => attachLora(model, { r: 4, alpha: 8, targetModules: ['q_proj'], layersToTransform: [7] })).toThrow(NoTargetModulesError);
      const short = new Map(['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj'].map((p) => [p, { A: new Float32Array(4 * 32), B: new Float32Array(4) }]));
      expect(() => attachLora(model, { r: 4, alpha: 8, targetModules: ['q_proj'] }, { weights: short })).toThrow(/must be A \[4, 32\] and B \[32, 4\]/);
      untouched();
    });
  });
});
