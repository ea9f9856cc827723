// loadModelQuantized: a QLoRA base loaded by quantizing each linear weight as the checkpoint streams. It must
// give the very codes (and so the very logits) of loadModel + quantizeLinears, never hold more than one
// linear weight in f32, and free everything when aborted mid-load.

import { describe, expect, it } from 'vitest';
import { expectedTensors } from '../../src/models/weights.ts';
import { inspectModel, loadModel } from '../../src/models/load.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { downloadQuantState } from '../../src/quant/gpuQuantize.ts';
import type { QuantType } from '../../src/quant/codebooks.ts';
import { isQuantizedLinearWeight } from '../../src/quant/quantizeModel.ts';
import { Linear4bitModule } from '../../src/peft/linear4bitModule.ts';
import { loadModelQuantized, quantizeLinears } from '../../src/peft/qlora.ts';
import { testEngine } from '../helpers/gpu.ts';
import { fixtureProvider, readGolden, type ModelFixture } from '../models/helpers.ts';

const engine = await testEngine();

const logitsOf = (model: CausalLM, ids: number[][]) =>
  engine.scope(async () => (await engine.noGrad(() => model.forward(tokenTensor(engine, ids, model.config.vocabSize))).read()) as Float32Array);

interface Case {
  fixture: ModelFixture;
  quantType: QuantType;
  blocksize: number;
  doubleQuant: boolean;
}

describe.each<Case>([
  { fixture: 'llama', quantType: 'nf4', blocksize: 64, doubleQuant: true },
  { fixture: 'gpt2', quantType: 'fp4', blocksize: 32, doubleQuant: false },
])('$fixture ($quantType, blocksize $blocksize, double quantization $doubleQuant)', ({ fixture, quantType, blocksize, doubleQuant }) => {
  const quant = { quantType, blocksize, doubleQuant };

  it('gives the codes and logits of loadModel + quantizeLinears exactly', async () => {
    const { ids } = await readGolden(fixture);
    const reference = (await loadModel(engine, fixtureProvider(fixture))).model;
    let streamed: CausalLM | undefined;
    try {
      await quantizeLinears(reference, quant);
      const loaded = await loadModelQuantized(engine, fixtureProvider(fixture), quant);
      streamed = loaded.model;
      const paths = reference.linears().paths();
      expect([...loaded.quantized].sort()).toEqual([...paths].sort());
      expect(streamed.linears().paths()).toEqual(paths);
      for (const path of paths) {
        const [a, b] = [reference.linears().get(path), streamed.linears().get(path)] as Linear4bitModule[];
        expect(b).toBeInstanceOf(Linear4bitModule);
        expect([...b.weight.shape]).toEqual([...a.weight.shape]);
        expect(b.bias === null).toBe(a.bias === null);
        const [sa, sb] = [await downloadQuantState(a.weight), await downloadQuantState(b.weight)];
        expect(sb.quantType).toBe(quantType);
        expect(sb.blocksize).toBe(blocksize);
        expect(sb.packed, path).toEqual(sa.packed);
        expect(sb.absmax, path).toEqual(sa.absmax);
        expect(sb.nested, path).toEqual(sa.nested);
        expect(sb.nested !== null).toBe(doubleQuant);
      }
      const [want, got] = [await logitsOf(reference, ids), await logitsOf(streamed, ids)];
      expect(got.length).toBe(want.length);
      expect(got).toEqual(want);
    } finally {
      reference.dispose();
      streamed?.dispose();
    }
  });

  it('never holds more than one linear weight in f32 while loading', async () => {
    const config = (await inspectModel(fixtureProvider(fixture))).config;
    let nonLinearF32 = 0;
    let largestLinearF32 = 0;
    let allLinearF32 = 0;
    for (const { name, shape } of expectedTensors(config)) {
      const bytes = shape.reduce((a, b) => a * b, 1) * 4;
      if (isQuantizedLinearWeight(config, name)) {
        largestLinearF32 = Math.max(largestLinearF32, bytes);
        allLinearF32 += bytes;
      } else {
        nonLinearF32 += bytes;
      }
    }
    const start = engine.memory().frozenWeights;
    const progressSamples: number[] = [];
    // Also sample at every allocation (the transient f32 linear is live only inside a step).
    let allocationPeak = 0;
    const empty = engine.empty;
    engine.empty = (...args) => {
      const tensor = empty.apply(engine, args);
      allocationPeak = Math.max(allocationPeak, engine.memory().frozenWeights - start);
      return tensor;
    };
    let loaded;
    try {
      loaded = await loadModelQuantized(engine, fixtureProvider(fixture), { ...quant, onProgress: () => progressSamples.push(engine.memory().frozenWeights - start) });
    } finally {
      engine.empty = empty;
    }
    try {
      let packed = 0;
      for (const [, module] of loaded.model.linears().entries()) packed += (module as Linear4bitModule).weight.bytes.packed;
      expect(packed).toBe(allLinearF32 / 8);
      const bound = nonLinearF32 + largestLinearF32 + packed;
      const progressPeak = Math.max(...progressSamples);
      expect(progressSamples.length).toBe(expectedTensors(config).length);
      // After the last tensor: every f32 tensor but the linears, and the linears' 4-bit codes.
      expect(progressSamples.at(-1)).toBe(nonLinearF32 + packed);
      expect(progressPeak).toBeLessThanOrEqual(bound);
      expect(allocationPeak).toBeLessThanOrEqual(bound);
      expect(allocationPeak).toBeGreaterThanOrEqual(progressPeak);
      expect(Math.max(progressPeak, allocationPeak)).toBeLessThan(nonLinearF32 + allLinearF32);
      expect(engine.memory().frozenWeights - start).toBe(nonLinearF32 + packed);
    } finally {
      loaded.model.dispose();
    }
  });

  it('an abort mid-load frees everything it uploaded', async () => {
    const before = engine.gpu.pool.stats().bytesInUse;
    const memoryBefore = engine.memory();
    const controller = new AbortController();
    const config = (await inspectModel(fixtureProvider(fixture))).config;
    let quantizedSoFar = 0;
    let seen = 0;
    const load = loadModelQuantized(engine, fixtureProvider(fixture), {
      ...quant,
      signal: controller.signal,
      onProgress: (p) => {
        seen = p.loaded;
        if (isQuantizedLinearWeight(config, p.tensor) && ++quantizedSoFar === 3) controller.abort();
      },
    });
    await expect(load).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toBeGreaterThan(3);
    expect(seen).toBeLessThan(expectedTensors(config).length);
    expect(engine.gpu.pool.stats().bytesInUse).toBe(before);
    expect(engine.memory()).toEqual(memoryBefore);
  });
});
