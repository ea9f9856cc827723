// Seeded mutation fuzzing of pre-quantized bitsandbytes checkpoints, the files a user may hand the app or the CLI:
// one layer's quant-state JSON (flipped bytes, cut short, hostile field values), its small tensors (shortened,
// another dtype, missing) or its key renamed. Checking (inspectBaseModel) may only throw our typed FormatErrors,
// naming the file; and whatever it accepts must load (the loader finds nothing it missed), so a damaged
// checkpoint is refused before anything is allocated and never replaces a loaded model.

import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/io/errors.ts';
import { writeSafetensors, type SafetensorsTensorInput } from '../../src/io/safetensorsWriter.ts';
import { inspectBaseModel, loadBaseModel } from '../../src/peft/baseModel.ts';
import { quantizeModel } from '../../src/quant/quantizeModel.ts';
import { testEngine } from '../helpers/gpu.ts';
import { rng } from '../helpers/numeric.ts';
import { fixtureFiles, fixtureProvider, memoryProvider } from '../models/helpers.ts';

const engine = await testEngine();
const CASES = 400;
const STATE_KEY = 'weight.quant_state.bitsandbytes__';
const config = fixtureFiles('llama').get('config.json')!;

type Random = () => number;
const int = (random: Random, n: number) => Math.floor(random() * n);
const pick = <T>(random: Random, items: readonly T[]): T => items[int(random, items.length)];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Values a hostile or broken quant state might hold. */
const HOSTILE: unknown[] = [0, -64, 63, 65, 2 ** 53, 1e308, '64', null, true, [], {}, [64], 'nf5', 'fp4', 'nf4', [-1, 5], [1.5, 2], [1e9, 1e9], [0, 64], [64]];
const FIELDS = ['quant_type', 'blocksize', 'shape', 'dtype', 'nested_blocksize', 'nested_offset', '__proto__', 'constructor'];

/** One mutation of one layer's tensors (in place on a copy of the list); returns what it did. */
function mutate(tensors: SafetensorsTensorInput[], random: Random): string {
  const prefixes = [...new Set(tensors.filter((t) => t.name.includes(STATE_KEY)).map((t) => t.name.slice(0, t.name.indexOf(STATE_KEY))))];
  const prefix = pick(random, prefixes);
  const stateIndex = tensors.findIndex((t) => t.name.startsWith(`${prefix}${STATE_KEY}`));
  const state = tensors[stateIndex];
  const layerTensors = tensors.map((t, i) => [t, i] as const).filter(([t]) => t.name.startsWith(`${prefix}weight.`) && !t.name.includes(STATE_KEY));
  const setState = (bytes: Uint8Array) => (tensors[stateIndex] = { ...state, shape: [bytes.length], data: bytes });
  switch (int(random, 7)) {
    case 0: {
      const bytes = Uint8Array.from(state.data as Uint8Array);
      const flips = 1 + int(random, 4);
      for (let k = 0; k < flips; k++) bytes[int(random, bytes.length)] = int(random, 256);
      setState(bytes);
      return `${prefix}: ${flips} quant-state byte(s) changed`;
    }
    case 1: {
      const cut = int(random, (state.data as Uint8Array).length);
      setState((state.data as Uint8Array).slice(0, cut));
      return `${prefix}: quant state cut to ${cut} bytes`;
    }
    case 2:
    case 3: {
      const json = JSON.parse(decoder.decode(state.data as Uint8Array)) as Record<string, unknown>;
      const field = pick(random, FIELDS);
      const value = pick(random, HOSTILE);
      // Written as text so that `__proto__` is an own key, as a hostile file would hold it.
      const text = `{${[...Object.entries(json).filter(([key]) => key !== field), [field, value]].map(([key, v]) => `${JSON.stringify(key)}: ${JSON.stringify(v)}`).join(', ')}}`;
      setState(encoder.encode(text));
      return `${prefix}: quant state ${field} = ${JSON.stringify(value)}`;
    }
    case 4: {
      const [tensor, index] = pick(random, layerTensors);
      const shorter = Math.max(0, tensor.shape[0] - 1 - int(random, 3));
      const row = tensor.shape.slice(1).reduce((a, b) => a * b, 1);
      tensors[index] = { ...tensor, shape: [shorter, ...tensor.shape.slice(1)], data: tensor.data.slice(0, shorter * row) };
      return `${tensor.name}: ${shorter} rows`;
    }
    case 5: {
      const [tensor, index] = pick(random, layerTensors);
      const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength).slice();
      tensors[index] = tensor.dtype === 'F32' ? { ...tensor, dtype: 'U8', shape: [bytes.length], data: bytes } : { ...tensor, dtype: 'F32', shape: [bytes.length >> 2], data: new Float32Array(bytes.buffer, 0, bytes.length >> 2) };
      return `${tensor.name}: stored as ${tensors[index].dtype}`;
    }
    default: {
      if (random() < 0.5) {
        const [tensor, index] = pick(random, layerTensors);
        tensors.splice(index, 1);
        return `${tensor.name}: missing`;
      }
      tensors[stateIndex] = { ...state, name: `${prefix}${STATE_KEY}${pick(random, ['nf5', 'fp4', 'NF4', ''])}` };
      return `${prefix}: quant-state key renamed to ${tensors[stateIndex].name}`;
    }
  }
}

describe('pre-quantized checkpoint fuzzing', () => {
  it(`${CASES} mutated checkpoints: only typed errors naming the file, and whatever is accepted loads`, async () => {
    const originals = [(await quantizeModel(engine, fixtureProvider('llama'), { doubleQuant: true })).tensors, (await quantizeModel(engine, fixtureProvider('llama'))).tensors];
    const start = engine.memory();
    const random = rng(20261128);
    const outcomes = new Map<string, number>();
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const tensors = [...originals[i % 2]];
      const what = mutate(tensors, random);
      const files = new Map([
        ['config.json', config],
        ['model.safetensors', writeSafetensors(tensors, { format: 'pt' })],
      ]);
      let inspected = true;
      try {
        await inspectBaseModel(memoryProvider(files), engine.gpu.info.limits);
      } catch (error) {
        inspected = false;
        expect(error, `case ${i} (${what}): ${String(error)}`).toBeInstanceOf(FormatError);
        expect((error as FormatError).file, `case ${i} (${what})`).toBe('model.safetensors');
        outcomes.set((error as Error).name, (outcomes.get((error as Error).name) ?? 0) + 1);
      }
      expect(engine.memory(), `case ${i} (${what}): checking allocated`).toEqual(start);
      if (!inspected) continue;
      accepted++;
      const loaded = await loadBaseModel(engine, memoryProvider(files)).catch((error: unknown) => {
        throw new Error(`case ${i} (${what}) passed the checks but failed to load: ${String(error)}`);
      });
      loaded.model.dispose();
      expect(engine.memory()).toEqual(start);
    }
    console.info(`bnb checkpoint fuzzing: ${CASES} cases, ${accepted} accepted and loaded; refused: ${[...outcomes].map(([name, n]) => `${name} ${n}`).join(', ')}`);
    expect(accepted).toBeLessThan(CASES); // the mutations do damage
    expect([...outcomes.values()].reduce((a, b) => a + b, 0)).toBe(CASES - accepted);
  }, 300_000);
});
