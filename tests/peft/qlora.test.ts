// QLoRA's 4-bit base: converting a loaded model's linears to NF4 on the GPU (GPT-2's Conv1D transposed as
// bitsandbytes does), what memory accounting shows, and loading a pre-quantized bitsandbytes checkpoint (as
// `tabtune quantize` writes it, or with a hub-style quantization_config) without re-quantizing.

import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/io/safetensorsWriter.ts';
import { DenseLinear } from '../../src/models/linear.ts';
import { loadModel } from '../../src/models/load.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { TABLE_LENGTH } from '../../src/quant/gpuQuantize.ts';
import { QuantStateError } from '../../src/quant/quantState.ts';
import { quantizeModel } from '../../src/quant/quantizeModel.ts';
import { Linear4bitModule } from '../../src/peft/linear4bitModule.ts';
import { loadQuantizedModel, QuantizedCheckpointError } from '../../src/peft/bnbCheckpoint.ts';
import { quantizeLinears } from '../../src/peft/qlora.ts';
import { testEngine } from '../helpers/gpu.ts';
import { randomArray, relativeError, rng, toF32 } from '../helpers/numeric.ts';
import { fixtureFiles, fixtureProvider, memoryProvider, readGolden, type ModelFixture } from '../models/helpers.ts';

const engine = await testEngine();
const seen: string[] = [];

const logitsOf = (model: CausalLM, ids: number[][]) =>
  engine.scope(async () => (await engine.noGrad(() => model.forward(tokenTensor(engine, ids, model.config.vocabSize))).read()) as Float32Array);

/** A model folder holding `tabtune quantize`'s output (a bitsandbytes-layout safetensors) and config.json. */
async function prequantized(fixture: ModelFixture, doubleQuant: boolean, editConfig?: (config: Record<string, unknown>) => void) {
  const result = await quantizeModel(engine, fixtureProvider(fixture), { doubleQuant });
  const files = new Map<string, Uint8Array>([['model.safetensors', writeSafetensors(result.tensors, { format: 'pt' })]]);
  const config = JSON.parse(new TextDecoder().decode(fixtureFiles(fixture).get('config.json'))) as Record<string, unknown>;
  editConfig?.(config);
  files.set('config.json', new TextEncoder().encode(JSON.stringify(config)));
  return files;
}

describe.each<[ModelFixture, boolean]>([
  ['llama', true],
  ['gpt2', false],
])('%s (double quantization %s)', (fixture, doubleQuant) => {
  it('quantizeLinears converts every linear layer by layer; the 4-bit weights are bitsandbytes-close to the originals', async () => {
    const golden = await readGolden(fixture);
    const { model } = await loadModel(engine, fixtureProvider(fixture));
    try {
      const originals = new Map<string, Float32Array>();
      let linearBytes = 0;
      for (const [path, module] of model.linears().entries()) {
        originals.set(path, Float32Array.from((await (module as DenseLinear).weight.read()) as Float32Array));
        linearBytes += (module as DenseLinear).weight.byteLength;
      }
      const before = engine.memory();
      const converted = await quantizeLinears(model, { doubleQuant });
      expect(converted).toEqual([...originals.keys()]);
      const after = engine.memory();
      let packedBytes = 0;
      for (const [path, module] of model.linears().entries()) {
        expect(module).toBeInstanceOf(Linear4bitModule);
        const q = module as Linear4bitModule;
        packedBytes += q.weight.bytes.packed;
        expect(q.weight.quantType).toBe('nf4');
        expect(q.weight.nested).toBe(doubleQuant);
        // Same function as the original up to NF4 rounding: |W − dequant(W)| ≤ half the widest code gap × absmax.
        const dense = await q.toDense(engine, { fanInFanOut: fixture === 'gpt2' });
        const original = originals.get(path)!;
        const restored = (await dense.weight.read()) as Float32Array;
        expect([...dense.weight.shape]).toEqual(fixture === 'gpt2' ? [q.inFeatures, q.outFeatures] : [q.outFeatures, q.inFeatures]);
        const scale = Math.max(...original.map(Math.abs));
        const worst = Math.max(...restored.map((v, i) => Math.abs(v - original[i])));
        expect(worst, path).toBeLessThan(0.14 * scale);
        expect(worst, path).toBeGreaterThan(0);
        dense.dispose();
      }
      expect(before.frozenWeights - after.frozenWeights).toBe(linearBytes - packedBytes);
      expect(after.quantState).toBeGreaterThan(before.quantState);
      const logits = await logitsOf(model, golden.ids);
      const error = relativeError(logits, golden.logits);
      seen.push(`${fixture}: 4-bit logits vs f32 golden ${error.toExponential(2)}`);
      // NF4 moves a 32-wide random model's logits by tens of percent (the weights are checked above);
      // this only catches a broken conversion (NaN, a wrong layout: errors of order 1 and more).
      expect(error).toBeLessThan(1);
    } finally {
      model.dispose();
    }
  });

  it('a pre-quantized bitsandbytes checkpoint loads without re-quantizing: the same model as converting after load', async () => {
    const golden = await readGolden(fixture);
    const { model: converted } = await loadModel(engine, fixtureProvider(fixture));
    await quantizeLinears(converted, { doubleQuant });
    const expected = await logitsOf(converted, golden.ids);
    const memoryConverted = engine.memory();
    converted.dispose();
    const before = engine.memory();
    const progress: number[] = [];
    const loaded = await loadQuantizedModel(engine, memoryProvider(await prequantized(fixture, doubleQuant)), { onProgress: (p) => progress.push(p.loaded / p.total, p.bytes / p.totalBytes) });
    expect(progress.slice(-2)).toEqual([1, 1]);
    try {
      expect(loaded.quantized).toEqual(loaded.model.linears().paths());
      expect(loaded.model.linears().entries().every(([, m]) => m instanceof Linear4bitModule)).toBe(true);
      expect(relativeError(await logitsOf(loaded.model, golden.ids), expected)).toBe(0);
      const after = engine.memory();
      expect(after.frozenWeights - before.frozenWeights).toBe(memoryConverted.frozenWeights - before.frozenWeights);
      expect(after.quantState - before.quantState).toBe(memoryConverted.quantState - before.quantState);
    } finally {
      loaded.model.dispose();
    }
  });
});

describe('QLoRA base', () => {
  it('memory: the linear weights\' frozenWeights shrink 8× (packed codes) and about 7× with their quantization state', async () => {
    // One Llama block large enough that the per-layer code tables are negligible: C 256, I 512.
    const [C, I, V] = [256, 512, 64];
    const config = { model_type: 'llama', vocab_size: V, hidden_size: C, intermediate_size: I, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 4, rms_norm_eps: 1e-5, max_position_embeddings: 64, tie_word_embeddings: false };
    const random = rng(1);
    const tensor = (name: string, ...shape: number[]) => ({ name, dtype: 'F32' as const, shape, data: toF32(randomArray(shape.reduce((p, d) => p * d, 1), random, 0.05)) });
    const p = 'model.layers.0.';
    const tensors = [
      tensor('model.embed_tokens.weight', V, C),
      tensor(`${p}input_layernorm.weight`, C),
      ...['q', 'k', 'v', 'o'].map((n) => tensor(`${p}self_attn.${n}_proj.weight`, C, C)),
      tensor(`${p}post_attention_layernorm.weight`, C),
      tensor(`${p}mlp.gate_proj.weight`, I, C),
      tensor(`${p}mlp.up_proj.weight`, I, C),
      tensor(`${p}mlp.down_proj.weight`, C, I),
      tensor('model.norm.weight', C),
      tensor('lm_head.weight', V, C),
    ];
    const files = new Map([
      ['config.json', new TextEncoder().encode(JSON.stringify(config))],
      ['model.safetensors', writeSafetensors(tensors, { format: 'pt' })],
    ]);
    const linearF32 = (4 * C * C + 3 * I * C) * 4;
    for (const doubleQuant of [false, true]) {
      const start = engine.memory();
      const { model } = await loadModel(engine, memoryProvider(files));
      try {
        const loaded = engine.memory();
        const allF32 = tensors.reduce((sum, t) => sum + t.data.byteLength, 0);
        expect(loaded.frozenWeights - start.frozenWeights).toBe(allF32);
        await quantizeLinears(model, { doubleQuant });
        const after = engine.memory();
        const packed = linearF32 / 8;
        expect(loaded.frozenWeights - after.frozenWeights).toBe(linearF32 - packed);
        const state = after.quantState - loaded.quantState;
        // Per layer: an f32 absmax per 64-block, or a byte per block plus an f32 per 256 blocks; code tables.
        const layerBlocks = [C * C, C * C, C * C, C * C, I * C, I * C, C * I].map((n) => n / 64);
        const perLayer = (blocks: number) => (doubleQuant ? blocks + 4 * Math.ceil(blocks / 256) : 4 * blocks) + TABLE_LENGTH * 4;
        expect(state).toBe(layerBlocks.reduce((sum, blocks) => sum + perLayer(blocks), 0));
        const ratio = linearF32 / (packed + state);
        seen.push(`memory, double quant ${doubleQuant}: linear weights ${linearF32} B f32 → ${packed} B codes (8×) + ${state} B state: ${ratio.toFixed(2)}×; whole model frozen+state ${(allF32 / (after.frozenWeights + after.quantState - start.frozenWeights - start.quantState)).toFixed(2)}×`);
        expect(ratio).toBeGreaterThan(doubleQuant ? 7.5 : 6.9);
        expect(ratio).toBeLessThan(8);
      } finally {
        model.dispose();
      }
      expect(engine.memory()).toEqual(start);
    }
    console.info(seen.join('\n'));
  });

  it('pre-quantized checkpoints: hub quantization_config accepted, unsupported ones and damaged layers refused, nothing leaked', async () => {
    const golden = await readGolden('gpt2-noprefix-sharded');
    const start = engine.memory();
    // GPT-2 saved without the transformer. prefix, with the config a hub bitsandbytes checkpoint carries.
    const hub = await prequantized('gpt2-noprefix-sharded', true, (config) => {
      config.quantization_config = { quant_method: 'bitsandbytes', load_in_4bit: true, load_in_8bit: false, bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: true, bnb_4bit_compute_dtype: 'float32' };
    });
    const loaded = await loadQuantizedModel(engine, memoryProvider(hub));
    expect(loaded.quantized).toEqual(loaded.model.linears().paths());
    expect(loaded.quantized[0]).toBe('transformer.h.0.attn.c_attn');
    expect(relativeError(await logitsOf(loaded.model, golden.ids), golden.logits)).toBeLessThan(1);
    loaded.model.dispose();

    const failure = async (files: Map<string, Uint8Array>) => {
      try {
        await loadQuantizedModel(engine, memoryProvider(files));
      } catch (error) {
        return error as Error & { file?: string; field?: string; tensor?: string };
      }
      throw new Error('expected the load to fail');
    };
    const eightBit = await prequantized('llama', false, (config) => {
      config.quantization_config = { quant_method: 'bitsandbytes', load_in_8bit: true };
    });
    const e1 = await failure(eightBit);
    expect(e1).toBeInstanceOf(QuantizedCheckpointError);
    expect(e1.field).toBe('quantization_config.load_in_8bit');

    const e2 = await failure(fixtureFiles('llama'));
    expect(e2).toBeInstanceOf(QuantizedCheckpointError);
    expect(e2.message).toContain('no bitsandbytes 4-bit layer');

    // A layer whose absmax lost its last block: a typed error naming the file and the layer, before anything is uploaded.
    const result = await quantizeModel(engine, fixtureProvider('llama'), {});
    const victim = 'model.layers.1.mlp.down_proj.weight.absmax';
    const damaged = result.tensors.map((t) => (t.name === victim ? { ...t, shape: [t.shape[0] - 1], data: (t.data as Float32Array).slice(0, -1) } : t));
    const files = new Map([['config.json', fixtureFiles('llama').get('config.json')!], ['model.safetensors', writeSafetensors(damaged, { format: 'pt' })]]);
    const e3 = await failure(files);
    expect(e3).toBeInstanceOf(QuantizedCheckpointError);
    expect(e3.cause).toBeInstanceOf(QuantStateError);
    expect([e3.file, e3.tensor]).toEqual(['model.safetensors', 'model.layers.1.mlp.down_proj.weight']);
    expect(e3.message).toContain('model.layers.1.mlp.down_proj.weight');
    expect(engine.memory()).toEqual(start);
  });
});
