// The model API on the tiny fixtures: greedy generation against the reference, forward options, linear
// modules enumerated and replaced by path, and GPU memory: nothing allocated when validation fails,
// everything returned on dispose. Gradients through whole models are in gradients.test.ts.

import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import type { Tensor } from '../../src/engine/tensor.ts';
import type { Gpu } from '../../src/gpu/runtime.ts';
import { FileReadError, FormatError } from '../../src/io/errors.ts';
import { bytesSource, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import { ConfigError } from '../../src/models/config.ts';
import { DenseLinear, type Linear } from '../../src/models/linear.ts';
import { loadModel, ModelFilesError } from '../../src/models/load.ts';
import { tokenTensor } from '../../src/models/model.ts';
import { expectedTensors, WeightMismatchError, WeightTooLargeError } from '../../src/models/weights.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { argmax, fixtureFiles, fixtureProvider, MODEL_FIXTURES, memoryProvider, readGolden, withConfig, withModel } from './helpers.ts';

const TOLERANCE = 1e-4;

describe.each(MODEL_FIXTURES)('%s greedy generation', (fixture) => {
  it('matches the reference continuation token for token', async () => {
    const golden = await readGolden(fixture);
    expect(golden.greedyMargin).toBeGreaterThan(1e-3); // the reference's choices are not near-ties
    await withModel(fixture, async (engine, model) => {
      const prompt = golden.ids[0];
      const cache = model.createKVCache(1, prompt.length + golden.greedy.length);
      try {
        const generated: number[] = [];
        let input = [prompt];
        const V = model.config.vocabSize;
        for (let step = 0; step < golden.greedy.length; step++) {
          const logits = await engine.scope(() => model.forward(tokenTensor(engine, input, V), { kvCache: cache }).read());
          generated.push(argmax(logits, logits.length - V, logits.length));
          input = [[generated[generated.length - 1]]];
        }
        expect(generated).toEqual(golden.greedy);
      } finally {
        cache.dispose();
      }
    });
  });
});

describe('forward options', () => {
  it('hidden() then head() equals forward()', async () => {
    const golden = await readGolden('llama');
    await withModel('llama', async (engine, model) => {
      const ids = tokenTensor(engine, golden.ids, model.config.vocabSize);
      expectClose(await model.head(model.hidden(ids)).read(), golden.logits, TOLERANCE, 'hidden → head');
    });
  });

  it('positionOffset: rotary attention depends only on relative positions; GPT-2 positions are absolute', async () => {
    const golden = await readGolden('llama');
    const tail = golden.ids.map((row) => row.slice(3));
    await withModel('llama', async (engine, model) => {
      const ids = tokenTensor(engine, tail, model.config.vocabSize);
      const atOffset = await model.forward(ids, { positionOffset: 40 }).read();
      expectClose(atOffset, await model.forward(ids).read(), TOLERANCE, 'llama at offset 40 vs 0');
    });
    await withModel('gpt2', async (engine, model) => {
      const ids = tokenTensor(engine, tail, model.config.vocabSize);
      const atOffset = await model.forward(ids, { positionOffset: 40 }).read();
      expect(relativeError(atOffset, await model.forward(ids).read())).toBeGreaterThan(1e-2);
    });
  });

  it('GPT-2 refuses positions beyond n_positions; a cache refuses more tokens than it holds', async () => {
    await withModel('gpt2', async (engine, model) => {
      const ids = tokenTensor(engine, [[1, 2, 3]], model.config.vocabSize);
      expect(() => model.forward(ids, { positionOffset: 62 })).toThrow(/64 learned positions; positions 62..64/);
      const cache = model.createKVCache(1, 4);
      try {
        model.forward(ids, { kvCache: cache });
        expect(() => model.forward(ids, { kvCache: cache })).toThrow(/3 positions used \+ 3 new exceed its 4 positions/);
        expect(() => model.forward(ids, { kvCache: cache, positionOffset: 0 })).toThrow(/differs from the KV cache's length 3/);
        expect(cache.length).toBe(3);
      } finally {
        cache.dispose();
      }
    });
  });

  it('token ids outside the vocabulary are refused before upload', async () => {
    const engine = await testEngine();
    expect(() => tokenTensor(engine, [[1, 97]], 97)).toThrow(/97 at row 0, position 1 is outside the vocabulary \[0, 97\)/);
    expect(() => tokenTensor(engine, [[1, 2], [3]], 97)).toThrow(/row 1 has 1 tokens/);
  });
});

/** Delegates to the module it wraps and counts calls: the shape of a LoRA wrapper. */
class CountingLinear implements Linear {
  calls = 0;
  constructor(readonly base: Linear) {}
  get path() {
    return this.base.path;
  }
  get inFeatures() {
    return this.base.inFeatures;
  }
  get outFeatures() {
    return this.base.outFeatures;
  }
  forward(x: Tensor): Tensor {
    this.calls++;
    return this.base.forward(x);
  }
  parameters() {
    return this.base.parameters();
  }
  dispose() {
    this.base.dispose();
  }
}

describe('linear modules by Hugging Face path', () => {
  it('GPT-2 Conv1D modules keep their [in, out] storage; Llama modules are [out, in]', async () => {
    await withModel('gpt2', async (_engine, model) => {
      const set = model.linears();
      expect(set.paths()).toEqual([0, 1].flatMap((i) => ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'].map((m) => `transformer.h.${i}.${m}`)));
      const cAttn = set.get('transformer.h.0.attn.c_attn') as DenseLinear;
      expect([cAttn.inFeatures, cAttn.outFeatures, cAttn.fanInFanOut]).toEqual([32, 96, true]);
      expect(cAttn.weight.shape).toEqual([32, 96]);
      expect((set.get('transformer.h.1.mlp.c_proj') as DenseLinear).weight.shape).toEqual([48, 32]);
      expect([...model.parameters().keys()].sort()).toEqual(expectedTensors(model.config).map((t) => t.name).sort());
    });
    await withModel('llama3', async (_engine, model) => {
      const set = model.linears();
      expect(set.size).toBe(14);
      const k = set.get('model.layers.0.self_attn.k_proj') as DenseLinear;
      expect([k.inFeatures, k.outFeatures, k.fanInFanOut]).toEqual([32, 16, false]);
      expect(k.weight.shape).toEqual([16, 32]);
      expect((set.get('model.layers.1.mlp.down_proj') as DenseLinear).bias?.shape).toEqual([32]);
      expect([...model.parameters().keys()].sort()).toEqual(expectedTensors(model.config).map((t) => t.name).sort());
    });
  });

  it('replacing modules changes what forward uses; wrappers that delegate change nothing', async () => {
    const golden = await readGolden('qwen2');
    await withModel('qwen2', async (engine, model) => {
      const set = model.linears();
      const ids = tokenTensor(engine, golden.ids, model.config.vocabSize);
      const wrappers = set.paths().map((path) => {
        let wrapper!: CountingLinear;
        set.replace(path, (current) => (wrapper = new CountingLinear(current)));
        return wrapper;
      });
      expectClose(await model.forward(ids).read(), golden.logits, TOLERANCE, 'wrapped');
      expect(wrappers.map((w) => w.calls)).toEqual(wrappers.map(() => 1));

      // A module that outputs zeros (its weight is zero) where the last MLP projects back.
      const path = 'model.layers.1.mlp.down_proj';
      const zero = new DenseLinear(path, engine.keep(engine.zeros([32, 32])));
      const previous = set.replace(path, () => zero);
      const withoutMlp = await model.forward(ids).read();
      expect(relativeError(withoutMlp, golden.logits)).toBeGreaterThan(1e-2);
      set.replace(path, () => previous).dispose();
      expectClose(await model.forward(ids).read(), golden.logits, TOLERANCE, 'restored');

      expect(() => set.replace(path, () => new DenseLinear(path, engine.keep(engine.zeros([32, 33]))))).toThrow(ShapeError);
      expect(set.get(path)).toBe(previous);
      expect(() => set.get('model.layers.9.mlp.down_proj')).toThrow(/no linear module/);
    });
  });
});

describe('GPU memory', () => {
  const snapshot = (gpu: Gpu) => {
    const { allocations, bytesInUse } = gpu.pool.stats();
    return { allocations, bytesInUse };
  };

  it('nothing is allocated when validation fails', async () => {
    const engine = await testEngine();
    await engine.gpu.sync();
    const before = snapshot(engine.gpu);
    const truncated = fixtureFiles('llama');
    truncated.set('model.safetensors', truncated.get('model.safetensors')!.subarray(0, 30_000));
    const noWeights = fixtureFiles('llama');
    noWeights.delete('model.safetensors');
    noWeights.set('pytorch_model.bin', new Uint8Array(8));
    const missingShard = fixtureFiles('gpt2-noprefix-sharded');
    missingShard.delete('model-00002-of-00002.safetensors');
    const failures: [ReturnType<typeof fixtureProvider>, new (...args: never[]) => Error, RegExp][] = [
      [withConfig('gpt2', (c) => (c.n_layer = 3)), WeightMismatchError, /12 missing/],
      [withConfig('llama', (c) => (c.hidden_size = '32')), ConfigError, /"hidden_size" must be a number/],
      [withConfig('llama3', (c) => (c.rope_scaling = { rope_type: 'yarn', factor: 2 })), ConfigError, /yarn/],
      [memoryProvider(truncated), FormatError, /cut short|past the end|offset/],
      [memoryProvider(noWeights), ModelFilesError, /pytorch_model.bin.*never loaded/],
      [memoryProvider(missingShard), FormatError, /model-00002-of-00002.safetensors.*missing/],
    ];
    for (const [files, errorClass, says] of failures) {
      const failure = loadModel(engine, files);
      await expect(failure).rejects.toBeInstanceOf(errorClass);
      await expect(failure).rejects.toThrow(says);
      expect(snapshot(engine.gpu)).toEqual(before);
    }

    // A device whose binding limit is smaller than the embedding: refused before the first upload.
    const small = Object.create(engine.gpu, {
      info: { value: { ...engine.gpu.info, limits: { ...engine.gpu.info.limits, maxStorageBufferBindingSize: 10_000 } } },
    }) as Gpu;
    await expect(loadModel(new Engine(small), fixtureProvider('gpt2'))).rejects.toThrow(WeightTooLargeError);
    expect(snapshot(engine.gpu)).toEqual(before);
  });

  it('a read that fails mid-stream frees what was uploaded', async () => {
    const engine = await testEngine();
    await engine.gpu.sync();
    const before = engine.gpu.pool.stats().bytesInUse;
    const files = fixtureFiles('llama');
    const provider = memoryProvider(files);
    const bytes = files.get('model.safetensors')!;
    let reads = 0;
    const failing = {
      ...provider,
      open: async (name: string) => {
        if (name !== 'model.safetensors') return provider.open(name);
        const source = bytesSource(bytes);
        // Two header reads, then tensors: the sixth tensor read fails.
        return { size: source.size, read: (offset: number, length: number) => (++reads === 8 ? Promise.reject(new Error('disk gone')) : source.read(offset, length)) };
      },
    };
    await expect(loadModel(engine, failing)).rejects.toThrow(FileReadError);
    expect(reads).toBe(8);
    expect(engine.gpu.pool.stats().bytesInUse).toBe(before);
  });

  it('NaN and ±Inf in weights load, with a warning naming the file and tensor', async () => {
    const engine = await testEngine();
    const files = fixtureFiles('gpt2');
    const bytes = Uint8Array.from(files.get('model.safetensors')!);
    const header = await readSafetensorsHeader(bytesSource(bytes), 'model.safetensors');
    const entry = header.byName.get('transformer.ln_f.bias')!; // F32 in this fixture
    const view = new DataView(bytes.buffer, entry.byteOffset, entry.byteLength);
    view.setFloat32(0, NaN, true);
    view.setFloat32(4, -Infinity, true);
    files.set('model.safetensors', bytes);
    const { model, warnings } = await loadModel(engine, memoryProvider(files));
    model.dispose();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ file: 'model.safetensors', tensor: 'transformer.ln_f.bias', nan: 1, negInf: 1, posInf: 0 });
  });

  it('dispose() returns every buffer of the model, its caches and its index tensors', async () => {
    const engine = await testEngine();
    const golden = await readGolden('gpt2');
    await engine.gpu.sync();
    const before = engine.gpu.pool.stats().bytesInUse;
    const progress: number[] = [];
    const { model, plan, warnings } = await loadModel(engine, fixtureProvider('gpt2'), { onProgress: (p) => progress.push(p.loaded) });
    expect(warnings).toEqual([]);
    expect(progress).toEqual(plan.tensors.map((_, i) => i + 1));
    expect(engine.gpu.pool.stats().bytesInUse).toBeGreaterThanOrEqual(before + plan.f32Bytes);
    const cache = model.createKVCache(2, 8);
    await engine.scope(async () => {
      await model.forward(tokenTensor(engine, golden.ids, model.config.vocabSize), { kvCache: cache }).read();
    });
    cache.dispose();
    model.dispose();
    expect(engine.gpu.pool.stats().bytesInUse).toBe(before);
    expect(() => model.forward(tokenTensor(engine, [[1]], 97))).toThrow(/disposed/);
  });
});
