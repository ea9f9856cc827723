// The playground's "adapter off" generation (src/worker/calls/generate.ts withAdapterOff) on the demo model: with a
// LoRA adapter whose B is not zero the greedy tokens leave PyTorch's base continuation; switched off for the run
// they are exactly the base tokens again, across the many awaits of a generation, and the adapter is back on
// afterwards (also when the run throws). Bottleneck adapters switch the same way; a merged LoRA adapter cannot
// be switched off and says so.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { localDirectory } from '../../../src/io/sources/localDirectory.ts';
import { loadTokenizer, type Tokenizer } from '../../../src/io/tokenizer.ts';
import { loadModel } from '../../../src/models/load.ts';
import { tokenTensor, type CausalLM } from '../../../src/models/model.ts';
import { BottleneckModel, bottleneckConfig } from '../../../src/peft/bottleneckModel.ts';
import { attachLora } from '../../../src/peft/peftModel.ts';
import { generate } from '../../../src/train/generate.ts';
import { withAdapterOff } from '../../../src/worker/calls/generate.ts';
import type { Adapted } from '../../../src/worker/engineState.ts';
import { BadRequestError } from '../../../src/worker/failures.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const DEMO = fileURLToPath(new URL('../../../public/demo/', import.meta.url));
const golden = JSON.parse(readFileSync(new URL('../../fixtures/demo/golden.json', import.meta.url), 'utf8')) as {
  cases: { prompt: string; greedy_new_tokens: number[]; greedy_top2_margins: number[] }[];
};
const N = 5;

let model: CausalLM;
let tokenizer: Tokenizer;
let prompt: number[];
const baseTokens = golden.cases[0].greedy_new_tokens.slice(0, N);

beforeAll(async () => {
  const engine = await testEngine();
  const files = localDirectory(DEMO);
  tokenizer = await loadTokenizer(files);
  ({ model } = await loadModel(engine, files));
  prompt = tokenizer.encode(golden.cases[0].prompt);
  expect(Math.min(...golden.cases[0].greedy_top2_margins.slice(0, N))).toBeGreaterThan(1e-3);
});
afterAll(() => model?.dispose());

const greedy = (on: CausalLM) => generate(on, prompt, { maxNewTokens: N, temperature: 0 }).then((result) => result.tokens);
const adaptedOf = (parts: Partial<Adapted>) => ({ key: '', peft: null, bottleneck: null, params: [], ...parts }) as Adapted;

it('LoRA: the base model\'s greedy tokens while switched off, the adapter\'s before and after', async () => {
  expect(await greedy(model)).toEqual(baseTokens);
  const peft = attachLora(model, { r: 4, alpha: 8 }, { seed: 3 });
  try {
    // A trained-looking adapter: B no longer zero.
    const random = rng(11);
    for (const module of peft.loraModules()) {
      const B = module.adapters.get('default')!.B;
      model.engine.gpu.upload(B.buffer, toF32(randomArray(B.size, random, 0.5)));
    }
    const adapterTokens = await greedy(peft);
    expect(adapterTokens).not.toEqual(baseTokens);
    const adapted = adaptedOf({ peft });
    expect(await withAdapterOff(adapted, () => greedy(peft))).toEqual(baseTokens);
    expect(peft.adaptersEnabled).toBe(true);
    expect(await greedy(peft)).toEqual(adapterTokens);
    // A failing run still switches the adapter back on.
    await expect(withAdapterOff(adapted, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(peft.adaptersEnabled).toBe(true);
    // Merged into the base weights, there is nothing to switch off.
    await peft.merge();
    await expect(withAdapterOff(adapted, () => greedy(peft))).rejects.toThrow(BadRequestError);
    await expect(withAdapterOff(adapted, () => greedy(peft))).rejects.toThrow(/the adapter cannot be switched off: .*unmerge/);
    peft.unmerge();
  } finally {
    peft.unload();
  }
  expect(await greedy(model)).toEqual(baseTokens);
});

it('bottleneck adapter: base logits while switched off across awaits, adapted ones again after', async () => {
  const engine = model.engine;
  const logits = async () => {
    await new Promise((resolve) => setTimeout(resolve, 0)); // an await before the forward, as every generation step has
    return engine.scope(async () => Float32Array.from(await engine.noGrad(() => model.forward(tokenTensor(engine, [prompt], model.config.vocabSize))).read()));
  };
  const base = await logits();
  const bottleneck = BottleneckModel.attach(model);
  try {
    bottleneck.addAdapter('default', bottleneckConfig('seq_bn', { initWeights: 'bert' }), { seed: 5 });
    const random = rng(12);
    bottleneck.setWeights('default', new Map([...bottleneck.tensors()].map(([key, tensor]) => [key, toF32(randomArray(tensor.size, random, 0.3))])));
    const adapted = await logits();
    let moved = 0;
    for (let i = 0; i < base.length; i++) moved = Math.max(moved, Math.abs(adapted[i] - base[i]));
    expect(moved).toBeGreaterThan(0.1);
    const off = await withAdapterOff(adaptedOf({ bottleneck }), logits);
    expect(Array.from(off)).toEqual(Array.from(base));
    expect(bottleneck.isEnabled).toBe(true);
    expect(Array.from(await logits())).toEqual(Array.from(adapted));
  } finally {
    bottleneck.detach();
  }
});
