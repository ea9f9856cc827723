// `tabtune merge`: a LoRA adapter on every linear layer of the demo model (random B, so the update is not zero) is
// written with PEFT's export, merged by the CLI, and the merged folder loaded with loadModel must give the adapted
// model's logits; the folder has the base's tensor names, f32, the config and tokenizer files. A bottleneck
// adapter is refused by name.

import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { withNodeFileSource } from '../../src/io/nodeFileSource.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadModel } from '../../src/models/load.ts';
import { exportBottleneckAdapter } from '../../src/peft/bottleneckFiles.ts';
import { BottleneckModel } from '../../src/peft/bottleneckModel.ts';
import { mergedConfigJson } from '../../src/peft/mergedExport.ts';
import { exportLoraAdapter } from '../../src/peft/peftFiles.ts';
import { attachLora } from '../../src/peft/peftModel.ts';
import { testEngine } from '../helpers/gpu.ts';
import { runCli } from './run.ts';

const DEMO = 'public/demo';
const TOKENS = [1, 17, 250, 3000, 42, 9];
const tempDir = () => mkdtempSync(join(tmpdir(), 'tabtune-merge-'));

function writeFiles(dir: string, files: Map<string, Uint8Array>) {
  for (const [name, bytes] of files) writeFileSync(join(dir, name), bytes);
}

async function logits(engine: Engine, model: CausalLM): Promise<Float32Array> {
  return engine.scope(async () => {
    const ids = engine.tensor(Int32Array.from(TOKENS), [1, TOKENS.length], { dtype: 'i32' });
    return Float32Array.from((await model.forward(ids).read()) as Float32Array);
  });
}

/** Seeded values in [-a, a). */
function randomValues(n: number, seed: number, a: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32 - 0.5) * 2 * a;
  });
}

describe('tabtune merge', () => {
  it('writes an HF model folder whose logits are the adapted model’s', async () => {
    const engine = await testEngine();
    const adapterDir = tempDir();
    const { model } = await loadModel(engine, localDirectory(DEMO));
    const peft = attachLora(model, { r: 4, alpha: 8, targetModules: 'all-linear' }, { seed: 5 });
    let seed = 1;
    for (const module of peft.loraModules()) {
      const B = module.adapters.get('default')!.B;
      engine.gpu.upload(B.buffer, randomValues(B.size, seed++, 0.05));
    }
    const adapted = await logits(engine, peft);
    const base = await peft.withAdaptersDisabled(() => logits(engine, peft));
    writeFiles(adapterDir, await exportLoraAdapter(peft, { baseModelNameOrPath: DEMO }));
    peft.dispose();

    const out = join(tempDir(), 'merged');
    const { status, stdout, stderr } = runCli(['merge', '--model', DEMO, '--adapter', adapterDir, '--out', out, '--json']);
    expect(status, stderr).toBe(0);
    const summary = JSON.parse(stdout);
    expect(summary).toMatchObject({ out, mergedModules: 4 * 7 });
    for (const name of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
      expect(existsSync(join(out, name)), name).toBe(true);
    }
    expect(readFileSync(join(out, 'tokenizer.json')).equals(readFileSync(join(DEMO, 'tokenizer.json')))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))).toEqual({ ...JSON.parse(readFileSync(join(DEMO, 'config.json'), 'utf8')), torch_dtype: 'float32' });

    // The base checkpoint's names and shapes, all F32.
    const read = (path: string) => withNodeFileSource(path, (source) => readSafetensors(source, path));
    const [merged, original] = await Promise.all([read(join(out, 'model.safetensors')), read(join(DEMO, 'model.safetensors'))]);
    expect([...merged.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
    for (const [name, tensor] of merged.tensors) {
      expect(tensor.dtype, name).toBe('F32');
      expect(tensor.shape, name).toEqual(original.tensors.get(name)!.shape);
    }

    // Loads with loadModel and reproduces the adapted logits (which differ from the base's).
    const reloaded = await loadModel(engine, localDirectory(out));
    const mergedLogits = await logits(engine, reloaded.model);
    reloaded.model.dispose();
    let maxAbs = 0;
    let maxDiff = 0;
    let baseDiff = 0;
    for (let i = 0; i < adapted.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(adapted[i]));
      maxDiff = Math.max(maxDiff, Math.abs(mergedLogits[i] - adapted[i]));
      baseDiff = Math.max(baseDiff, Math.abs(base[i] - adapted[i]));
    }
    console.info(`merge: max |merged − adapted| / max |adapted| = ${(maxDiff / maxAbs).toExponential(2)}; the adapter moves logits by up to ${baseDiff.toFixed(3)}`);
    expect(baseDiff / maxAbs).toBeGreaterThan(1e-2);
    expect(maxDiff / maxAbs).toBeLessThan(1e-5);
  }, 300_000);

  it('refuses a bottleneck adapter by name, writing nothing', async () => {
    const engine = await testEngine();
    const { model } = await loadModel(engine, localDirectory(DEMO));
    const adapted = BottleneckModel.attach(model);
    adapted.addAdapter('default', 'pfeiffer');
    const dir = tempDir();
    writeFiles(dir, await exportBottleneckAdapter(adapted));
    adapted.detach();
    model.dispose();
    const out = join(tempDir(), 'merged');
    const { status, stderr } = runCli(['merge', '--model', DEMO, '--adapter', dir, '--out', out]);
    expect(status).toBe(1);
    expect(stderr).toContain('is an AdapterHub bottleneck adapter, which cannot be merged into the weights');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
  }, 120_000);

  it('drops quantization_config from config.json', () => {
    const config = mergedConfigJson(JSON.stringify({ model_type: 'llama', quantization_config: { load_in_4bit: true }, torch_dtype: 'bfloat16' }));
    expect(JSON.parse(config)).toEqual({ model_type: 'llama', torch_dtype: 'float32' });
  });
});
