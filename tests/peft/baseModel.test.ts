// Loading a checkpoint by what its files say (src/peft/baseModel.ts): floats as f32 or quantized on load, and
// bitsandbytes 4-bit checkpoints as stored — found by their config.json or, without one saying so, by their
// Linear4bit tensors — with a plan that lists every tensor under its float shape, so a merged export of a
// pre-quantized base writes the same f32 model as one quantized on load.

import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/io/safetensorsWriter.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { inspectModel } from '../../src/models/load.ts';
import { QuantizedCheckpointError } from '../../src/peft/bnbCheckpoint.ts';
import { inspectBaseModel, loadBaseModel, readBaseModelConfig } from '../../src/peft/baseModel.ts';
import { mergedWeights } from '../../src/peft/mergedExport.ts';
import type { QuantType } from '../../src/quant/codebooks.ts';
import { quantizeModel } from '../../src/quant/quantizeModel.ts';
import { testEngine } from '../helpers/gpu.ts';
import { relativeError } from '../helpers/numeric.ts';
import { fixtureFiles, fixtureProvider, memoryProvider, readGolden, type ModelFixture } from '../models/helpers.ts';

const engine = await testEngine();
const QLORA = { quantType: 'nf4', doubleQuant: true } as const;
const HUB_QUANTIZATION = { quant_method: 'bitsandbytes', load_in_4bit: true, load_in_8bit: false, bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: true };

const logitsOf = (model: CausalLM, ids: number[][]) =>
  engine.scope(async () => (await engine.noGrad(() => model.forward(tokenTensor(engine, ids, model.config.vocabSize))).read()) as Float32Array);

/** `tabtune quantize`'s output beside the fixture's config.json, which may be edited (a hub checkpoint declares its quantization). */
async function prequantized(fixture: ModelFixture, quantType: QuantType, editConfig?: (config: Record<string, unknown>) => void) {
  const { tensors } = await quantizeModel(engine, fixtureProvider(fixture), { quantType, doubleQuant: true });
  const config = JSON.parse(new TextDecoder().decode(fixtureFiles(fixture).get('config.json'))) as Record<string, unknown>;
  editConfig?.(config);
  return new Map([
    ['config.json', new TextEncoder().encode(JSON.stringify(config))],
    ['model.safetensors', writeSafetensors(tensors, { format: 'pt' })],
  ]);
}

describe.each<ModelFixture>(['llama', 'gpt2'])('%s', (fixture) => {
  it('a float checkpoint loads as f32, or 4-bit when asked; its tabtune-quantized copy loads as stored, the same model', async () => {
    const { ids } = await readGolden(fixture);
    const asFloat = await loadBaseModel(engine, fixtureProvider(fixture));
    expect([asFloat.weights, asFloat.prequantized]).toEqual(['f32', null]);
    const floatPlan = (await inspectModel(fixtureProvider(fixture))).plan;
    expect(asFloat.plan.tensors.map((t) => t.name)).toEqual(floatPlan.tensors.map((t) => t.name));
    asFloat.model.dispose();

    const start = engine.memory();
    const onLoad = await loadBaseModel(engine, fixtureProvider(fixture), { quantize: QLORA });
    expect([onLoad.weights, onLoad.prequantized]).toEqual(['nf4', null]);
    // No config.json key says so: the Linear4bit tensors do.
    const stored = await loadBaseModel(engine, memoryProvider(await prequantized(fixture, 'nf4')), { quantize: QLORA });
    try {
      expect([stored.weights, stored.prequantized]).toEqual(['nf4', 'nf4']);
      expect(relativeError(await logitsOf(stored.model, ids), await logitsOf(onLoad.model, ids))).toBe(0);

      // The plan lists every tensor of the float checkpoint under the same name and shape (4-bit ones included).
      const shapes = (plan: typeof floatPlan) => new Map(plan.tensors.map((t) => [t.name, [t.fileName, ...t.shape].join(' ')]));
      expect(shapes(stored.plan)).toEqual(shapes(floatPlan));
      expect([stored.plan.parameterCount, stored.plan.f32Bytes]).toEqual([floatPlan.parameterCount, floatPlan.f32Bytes]);

      // So its merged export is bit for bit the export of the model quantized on load: dequant(W) for every linear.
      const fromStored = await mergedWeights(stored.model, stored.plan);
      const fromOnLoad = await mergedWeights(onLoad.model, onLoad.plan);
      expect([...fromStored.keys()].sort()).toEqual([...fromOnLoad.keys()].sort());
      for (const [name, values] of fromOnLoad) expect(fromStored.get(name), name).toEqual(values);
    } finally {
      stored.model.dispose();
      onLoad.model.dispose();
    }
    expect(engine.memory()).toEqual(start);
  });
});

describe('checkpoint routing', () => {
  it('a hub-style checkpoint is known from config.json alone; FP4 loads as FP4; inspecting allocates nothing', async () => {
    const hub = await prequantized('llama', 'fp4', (config) => (config.quantization_config = { ...HUB_QUANTIZATION, bnb_4bit_quant_type: 'fp4' }));
    const declared = await readBaseModelConfig(memoryProvider(hub));
    expect(declared.declaresQuantization).toBe(true);
    expect(declared.config.modelType).toBe('llama');
    expect((await readBaseModelConfig(fixtureProvider('llama'))).declaresQuantization).toBe(false);

    const before = engine.memory();
    const inspected = await inspectBaseModel(memoryProvider(hub), engine.gpu.info.limits);
    expect(inspected.prequantized).toBe('fp4');
    expect(engine.memory()).toEqual(before);

    const loaded = await loadBaseModel(engine, memoryProvider(hub));
    try {
      expect([loaded.weights, loaded.prequantized]).toEqual(['fp4', 'fp4']);
      const golden = await readGolden('llama');
      // FP4 is coarser than NF4, but still the same function roughly.
      expect(relativeError(await logitsOf(loaded.model, golden.ids), golden.logits)).toBeLessThan(1);
    } finally {
      loaded.model.dispose();
    }
    expect(engine.memory()).toEqual(before);
  });

  it('refuses what it cannot load by file and field, before allocating anything', async () => {
    const before = engine.memory();
    const failure = async (files: Map<string, Uint8Array>) => {
      try {
        await loadBaseModel(engine, memoryProvider(files));
      } catch (error) {
        return error as Error & { file?: string; field?: string };
      }
      throw new Error('expected the load to fail');
    };
    // Another quantization method.
    const gptq = await prequantized('llama', 'nf4', (config) => (config.quantization_config = { quant_method: 'gptq', bits: 4 }));
    const e1 = await failure(gptq);
    expect(e1).toBeInstanceOf(QuantizedCheckpointError);
    expect([e1.file, e1.field]).toEqual(['config.json', 'quantization_config.quant_method']);

    // config.json declares 4-bit, the weights are floats.
    const files = new Map(fixtureFiles('llama'));
    const config = JSON.parse(new TextDecoder().decode(files.get('config.json'))) as Record<string, unknown>;
    files.set('config.json', new TextEncoder().encode(JSON.stringify({ ...config, quantization_config: HUB_QUANTIZATION })));
    const e2 = await failure(files);
    expect(e2).toBeInstanceOf(QuantizedCheckpointError);
    expect(e2.message).toContain('declares a quantization_config');

    // NF4 and FP4 layers in one checkpoint.
    const nf4 = await quantizeModel(engine, fixtureProvider('llama'), { quantType: 'nf4' });
    const fp4 = await quantizeModel(engine, fixtureProvider('llama'), { quantType: 'fp4' });
    const layer0 = (name: string) => name.startsWith('model.layers.0.');
    const mixed = [...nf4.tensors.filter((t) => !layer0(t.name)), ...fp4.tensors.filter((t) => layer0(t.name))];
    const e3 = await failure(new Map([['config.json', fixtureFiles('llama').get('config.json')!], ['model.safetensors', writeSafetensors(mixed, { format: 'pt' })]]));
    expect(e3).toBeInstanceOf(QuantizedCheckpointError);
    expect(e3.message).toMatch(/mixes 4-bit data types \((nf4, fp4|fp4, nf4)\)/);
    expect(engine.memory()).toEqual(before);
  });
});
