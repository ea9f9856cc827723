// Bottleneck adapters on whole fixture models (src/peft/bottleneckModel.ts): the model is unchanged at
// step 0 (bit for bit), placements and parameter counts per preset, only adapter tensors receive gradients
// and those agree with finite differences of the loss, switching / disabling / detaching, and the KV-cache
// path with an adapter active.

import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { scale } from '../../src/engine/ops/arithmetic.ts';
import { crossEntropy } from '../../src/engine/ops/crossEntropy.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { BottleneckError } from '../../src/peft/bottleneck.ts';
import { BottleneckModel, bottleneckConfig } from '../../src/peft/bottleneckModel.ts';
import { expectClose, randomArray, rng, toF32 } from '../helpers/numeric.ts';
import { readGolden, sliceTokens, withModel, type ModelFixture } from '../models/helpers.ts';

const notes: string[] = [];
afterAll(() => console.info(notes.join('\n')));

const logitsOf = async (engine: Engine, model: CausalLM, ids: number[][]) =>
  engine.scope(async () => Float32Array.from(await engine.noGrad(() => model.forward(tokenTensor(engine, ids, model.config.vocabSize))).read()));

/** Give every tensor of the active adapter seeded random values (a trained-looking adapter). */
function randomize(adapted: BottleneckModel, seed: number, size = 0.3): void {
  const random = rng(seed);
  adapted.setWeights(
    adapted.activeAdapter!,
    new Map([...adapted.tensors()].map(([key, tensor]) => [key, toF32(randomArray(tensor.size, random, size))])),
  );
}

describe.each(['gpt2', 'llama'] as ModelFixture[])('%s', (fixture) => {
  it('at init (mam_adapter) the adapted logits equal the base logits exactly, for both presets', async () => {
    const golden = await readGolden(fixture);
    await withModel(fixture, async (engine, model) => {
      const base = await logitsOf(engine, model, golden.ids);
      const adapted = BottleneckModel.attach(model);
      try {
        for (const preset of ['seq_bn', 'double_seq_bn']) {
          adapted.addAdapter(preset, preset, { seed: 1 });
          const logits = await logitsOf(engine, model, golden.ids);
          expect(logits.every((v, i) => Object.is(v, base[i]) || v === base[i]), `${preset}: bit-identical logits`).toBe(true);
        }
        // A "bert" init starts near, not at, the identity: the hook is really in the path.
        adapted.addAdapter('bert', bottleneckConfig('double_seq_bn', { initWeights: 'bert' }), { seed: 2 });
        const moved = await logitsOf(engine, model, golden.ids);
        const shift = Math.max(...moved.map((v, i) => Math.abs(v - base[i])));
        expect(shift).toBeGreaterThan(1e-6);
        expect(shift).toBeLessThan(0.5);
        // Disabled, or with no adapter active, the base function again.
        expect(Array.from(await withDisabled(adapted, engine, model, golden.ids))).toEqual(Array.from(base));
        expect(Array.from(await adapted.withAdaptersDisabled(() => logitsOf(engine, model, golden.ids)))).toEqual(Array.from(base));
        expect(adapted.isEnabled).toBe(true);
        adapted.setActive(null);
        expect(Array.from(await logitsOf(engine, model, golden.ids))).toEqual(Array.from(base));
      } finally {
        adapted.detach();
      }
      expect(Array.from(await logitsOf(engine, model, golden.ids))).toEqual(Array.from(base));
      expect(engine.memory().adapters).toBe(0);
    });
  });

  it('Pfeiffer: one adapter per layer after the MLP; Houlsby: after attention and after the MLP; counts', async () => {
    await withModel(fixture, async (_engine, model) => {
      const adapted = BottleneckModel.attach(model);
      try {
        const { hiddenSize: C, numLayers: L } = model.config;
        const pfeiffer = adapted.addAdapter('p', 'pfeiffer');
        expect(pfeiffer.map((p) => `${p.layer}:${p.slot}`)).toEqual(Array.from({ length: L }, (_, i) => `${i}:output_adapters`));
        const M = Math.floor(C / 16);
        expect(adapted.trainableParameterCount()).toBe(L * (2 * M * C + M + C));
        const houlsby = adapted.addAdapter('h', 'houlsby', { setActive: false });
        expect(houlsby.map((p) => `${p.layer}:${p.site}`)).toEqual(
          Array.from({ length: L }, (_, i) => [`${i}:attention`, `${i}:mlp`]).flat(),
        );
        expect(adapted.trainableParameterCount('h')).toBe(2 * L * (2 * M * C + M + C));
        expect(adapted.activeAdapter).toBe('p');
        // trainableParameters(): the active adapter's tensors under AdapterHub's keys.
        const keys = [...adapted.trainableParameters().keys()];
        const layers = fixture === 'gpt2' ? 'transformer.h' : 'model.layers';
        expect(keys.slice(0, 4)).toEqual([
          `${layers}.0.output_adapters.adapters.p.adapter_down.0.weight`,
          `${layers}.0.output_adapters.adapters.p.adapter_down.0.bias`,
          `${layers}.0.output_adapters.adapters.p.adapter_up.weight`,
          `${layers}.0.output_adapters.adapters.p.adapter_up.bias`,
        ]);
        const shapes = [...adapted.trainableParameters().values()].slice(0, 4).map((t) => t.shape);
        expect(shapes).toEqual([[M, C], [M], [C, M], [C]]);
        adapted.setActive('h');
        expect([...adapted.trainableParameters().keys()]).toHaveLength(8 * L);
        const withLeaveOut = adapted.addAdapter('l', bottleneckConfig('houlsby', { leaveOut: [0] }), { setActive: false });
        expect(withLeaveOut.every((p) => p.layer !== 0)).toBe(true);
        expect(() => adapted.addAdapter('h')).toThrow(/already exists/);
        expect(() => adapted.addAdapter('a.b')).toThrow(BottleneckError);
        expect(() => adapted.setActive('missing')).toThrow(/no adapter named/);
        adapted.deleteAdapter('h');
        expect(adapted.activeAdapter).toBeNull();
        expect(adapted.trainableParameters().size).toBe(0);
        expect(adapted.adapterNames).toEqual(['p', 'l']);
      } finally {
        adapted.detach();
      }
      expect(() => BottleneckModel.attach(model).detach()).not.toThrow();
    });
  });
});

/** Logits with the adapters switched off. */
async function withDisabled(adapted: BottleneckModel, engine: Engine, model: CausalLM, ids: number[][]): Promise<Float32Array> {
  adapted.disable();
  try {
    expect(adapted.isEnabled).toBe(false);
    return await logitsOf(engine, model, ids);
  } finally {
    adapted.enable();
  }
}

describe('gradients', () => {
  const cases: [ModelFixture, string][] = [
    ['gpt2', 'double_seq_bn'],
    ['llama', 'seq_bn'],
  ];
  it.each(cases)('%s %s: only adapter tensors get gradients, and they agree with finite differences', async (fixture, preset) => {
    const golden = await readGolden(fixture);
    await withModel(fixture, async (engine, model) => {
      const adapted = BottleneckModel.attach(model);
      try {
        adapted.addAdapter('idle', preset, { seed: 3 }); // present but inactive: must get no gradient either
        adapted.addAdapter('train', preset, { seed: 4 });
        randomize(adapted, 5);
        const V = model.config.vocabSize;
        const ids = tokenTensor(engine, golden.ids.map((row) => row.slice(0, -1)), V);
        const targets = tokenTensor(engine, golden.ids.map((row) => row.slice(1)), V);
        const loss = () => scale(crossEntropy(model.forward(ids), targets), 10);

        await engine.scope(async () => engine.backward(loss()));
        for (const [name, tensor] of model.parameters()) {
          expect(tensor.requiresGrad, name).toBe(false);
          expect(tensor.grad, name).toBeNull();
        }
        for (const [name, tensor] of adapted.tensors('idle')) expect(tensor.grad, name).toBeNull();
        const trainable = adapted.trainableParameters();
        for (const [name, tensor] of trainable) {
          expect(tensor.grad, name).not.toBeNull();
          expect(tensor.grad!.category).toBe('gradients');
        }

        // Finite differences on the entry with the largest gradient of four tensors, in the first and last layer.
        const keys = [...trainable.keys()];
        const probe = [keys[0], keys[1], keys[keys.length - 2], keys[keys.length - 1]];
        for (const key of probe) {
          const tensor = trainable.get(key)!;
          const grad = Array.from(await tensor.grad!.read());
          const original = Float32Array.from(await tensor.read());
          const order = grad.map((g, i) => [Math.abs(g), i]).sort((a, b) => b[0] - a[0]);
          for (const [, index] of order.slice(0, 1)) {
            const eps = 4e-3;
            const lossAt = async (delta: number) => {
              const values = Float32Array.from(original);
              values[index] += delta;
              engine.gpu.upload(tensor.buffer, values);
              return engine.scope(async () => (await engine.noGrad(loss).read())[0]);
            };
            const numeric = ((await lossAt(eps)) - (await lossAt(-eps))) / (2 * eps);
            engine.gpu.upload(tensor.buffer, original);
            const error = Math.abs(numeric - grad[index]) / Math.abs(grad[index]);
            notes.push(`${fixture} ${key}[${index}]: backward ${grad[index].toFixed(5)}, finite difference ${numeric.toFixed(5)}, relative ${error.toExponential(2)}`);
            expect(Math.abs(grad[index])).toBeGreaterThan(1e-2);
            expect(error, key).toBeLessThan(2e-2);
          }
        }
      } finally {
        for (const tensor of adapted.tensors('train').values()) {
          tensor.grad?.dispose();
          tensor.grad = null;
        }
        adapted.detach();
      }
    });
  });
});

describe('switching, caches and attachment', () => {
  it('two named adapters: switching is instant and each gives its own function', async () => {
    const golden = await readGolden('llama');
    await withModel('llama', async (engine, model) => {
      const adapted = BottleneckModel.attach(model);
      try {
        adapted.addAdapter('one', 'seq_bn');
        randomize(adapted, 11);
        const one = await logitsOf(engine, model, golden.ids);
        adapted.addAdapter('two', 'double_seq_bn');
        randomize(adapted, 12);
        const two = await logitsOf(engine, model, golden.ids);
        expect(Math.max(...one.map((v, i) => Math.abs(v - two[i])))).toBeGreaterThan(1e-2);
        adapted.setActive('one');
        expect(Array.from(await logitsOf(engine, model, golden.ids))).toEqual(Array.from(one));
        adapted.setActive('two');
        expect(Array.from(await logitsOf(engine, model, golden.ids))).toEqual(Array.from(two));
      } finally {
        adapted.detach();
      }
    });
  });

  it('decoding through the KV cache with an adapter active matches the full forward', async () => {
    const golden = await readGolden('gpt2');
    const [B, T, V] = golden.shape;
    await withModel('gpt2', async (engine, model) => {
      const adapted = BottleneckModel.attach(model);
      try {
        adapted.addAdapter('a', 'double_seq_bn');
        randomize(adapted, 21);
        const full = await logitsOf(engine, model, golden.ids);
        const cache = model.createKVCache(B, T);
        try {
          for (let t = 0; t < T; t++) {
            const step = await engine.scope(async () =>
              model.forward(tokenTensor(engine, golden.ids.map((row) => [row[t]]), V), { kvCache: cache }).read(),
            );
            expectClose(step, sliceTokens(full, [B, T, V], t, t + 1), 1e-4, `token ${t}`);
          }
        } finally {
          cache.dispose();
        }
      } finally {
        adapted.detach();
      }
    });
  });

  it('one set of adapters per model; detached adapters refuse use; dropout only in train mode', async () => {
    const golden = await readGolden('llama');
    await withModel('llama', async (engine, model) => {
      const adapted = BottleneckModel.attach(model);
      expect(() => BottleneckModel.attach(model)).toThrow(/already has a residual hook/);
      adapted.addAdapter('d', bottleneckConfig('seq_bn', { dropout: 0.5 }));
      randomize(adapted, 31);
      const evalLogits = await logitsOf(engine, model, golden.ids);
      expect(Array.from(await logitsOf(engine, model, golden.ids))).toEqual(Array.from(evalLogits));
      adapted.train(7);
      const trained = await logitsOf(engine, model, golden.ids);
      expect(adapted.dropoutState!.offset).toBeGreaterThan(0);
      expect(Math.max(...trained.map((v, i) => Math.abs(v - evalLogits[i])))).toBeGreaterThan(1e-3);
      adapted.train(7);
      expect(Array.from(await logitsOf(engine, model, golden.ids))).toEqual(Array.from(trained));
      adapted.eval();
      expect(adapted.dropoutState).toBeNull();
      adapted.detach();
      expect(() => adapted.addAdapter('x')).toThrow(/detached/);
      const fresh = BottleneckModel.attach(model);
      fresh.detach();
    });
  });

  it('refuses a model that is not one of src/models transformers', () => {
    expect(() => BottleneckModel.attach({} as CausalLM)).toThrow(BottleneckError);
  });
});

