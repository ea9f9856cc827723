// Pre-quantized bitsandbytes 4-bit checkpoints in the CLI. `tabtune quantize --double-quant` (block size 64) writes
// the codes `--quant nf4` makes while loading, so a folder of its output beside the fixture's config and tokenizer
// must behave exactly like the float fixture loaded with `--quant nf4`: the same greedy tokens and logits (also
// with a hub-style config.json declaring the quantization), the same parameter count in `info`, and the same
// merged f32 folder bit for bit, and the same QLoRA training run loss for loss; LoRA training is refused (no float
// weights), and export-onnx writes the dequantized, merged model that ONNX Runtime Web runs to the engine's logits.
// A quantization_config of another method is refused in one line before anything.

import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { withNodeFileSource } from '../../src/io/nodeFileSource.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadModel } from '../../src/models/load.ts';
import { exportLoraAdapter } from '../../src/peft/peftFiles.ts';
import { attachLora } from '../../src/peft/peftModel.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/numeric.ts';
import { runCliAsync, type CliResult } from './run.ts';

const MODELS = 'tests/fixtures/models';
const FIXTURES = ['llama', 'gpt2'] as const;
type Fixture = (typeof FIXTURES)[number];
const SIDE_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];
const PROMPT = 'the cat sat on';
const TOKENS = '1,17,4,30,8,11,2,9';
const HUB_QUANTIZATION = { quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: true, bnb_4bit_compute_dtype: 'float32' };

interface Folders {
  /** `tabtune quantize` output beside the fixture's own config.json (no quantization_config). */
  prequantized: string;
  /** The same weights with a hub "-bnb-4bit" config.json (quantization_config declared). */
  hub: string;
  /** The same weights, config.json declaring a GPTQ quantization. */
  gptq: string;
  /** A PEFT LoRA adapter on every linear, B random so the update is not zero. */
  adapter: string;
  /** A JSONL training file in the words the fixtures' tokenizers spell. */
  data: string;
}

function expectOk(result: CliResult): void {
  expect(result.status, result.stderr).toBe(0);
  expect(result.stdout.trim().split('\n')).toHaveLength(1); // --json: exactly one object
}

/** Seeded values in [-a, a). */
function randomValues(n: number, seed: number, a: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32 - 0.5) * 2 * a;
  });
}

async function readAll(path: string) {
  return withNodeFileSource(path, (source) => readSafetensors(source, path));
}

async function makeFolders(fixture: Fixture, root: string): Promise<Folders> {
  const source = join(MODELS, fixture);
  const dir = (name: string) => {
    const path = join(root, `${fixture}-${name}`);
    mkdirSync(path);
    return path;
  };
  const prequantized = dir('4bit');
  const quantized = await runCliAsync(['quantize', '--model', source, '--out', join(prequantized, 'model.safetensors'), '--double-quant', '--json']);
  expectOk(quantized);
  expect(JSON.parse(quantized.stdout)).toMatchObject({ quantType: 'nf4', blocksize: 64, doubleQuant: true, quantizedLinears: fixture === 'llama' ? 2 * 7 : 2 * 4 });
  for (const file of SIDE_FILES) copyFileSync(join(source, file), join(prequantized, file));

  const config = JSON.parse(readFileSync(join(source, 'config.json'), 'utf8'));
  const withConfig = (name: string, json: unknown) => {
    const path = dir(name);
    for (const file of ['model.safetensors', ...SIDE_FILES.slice(1)]) copyFileSync(join(prequantized, file), join(path, file));
    writeFileSync(join(path, 'config.json'), JSON.stringify(json, null, 2));
    return path;
  };
  const hub = withConfig('hub', { ...config, quantization_config: HUB_QUANTIZATION });
  const gptq = withConfig('gptq', { ...config, quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128 } });

  const adapter = dir('adapter');
  const engine = await testEngine();
  const { model } = await loadModel(engine, localDirectory(source));
  const peft = attachLora(model, { r: 4, alpha: 8, targetModules: 'all-linear' }, { seed: 3 });
  let seed = 11;
  for (const module of peft.loraModules()) {
    const B = module.adapters.get('default')!.B;
    engine.gpu.upload(B.buffer, randomValues(B.size, seed++, 0.05));
  }
  for (const [name, bytes] of await exportLoraAdapter(peft, { baseModelNameOrPath: source })) writeFileSync(join(adapter, name), bytes);
  peft.dispose();

  const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'to', 'it'];
  const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: Array.from({ length: 12 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' ') }));
  const data = join(root, `${fixture}-words.jsonl`);
  writeFileSync(data, `${lines.join('\n')}\n`);
  return { prequantized, hub, gptq, adapter, data };
}

/**
 * Every run of one fixture, started together (each is a separate process). GPT-2 (Conv1D weights stored [IN, OUT],
 * quantized as [OUT, IN]) runs the checks that see its layout: logits, info and merge.
 */
function startRuns(fixture: Fixture, f: Folders, root: string) {
  const float = join(MODELS, fixture);
  const full = fixture === 'llama';
  const generate = (model: string, ...extra: string[]) =>
    runCliAsync(['generate', '--model', model, '--prompt', PROMPT, '--max-new-tokens', '6', '--temperature', '0', ...extra, '--json']);
  const logits = (model: string, ...extra: string[]) => runCliAsync(['logits', '--model', model, '--tokens', TOKENS, ...extra, '--json']);
  const merge = (model: string, out: string, ...extra: string[]) => runCliAsync(['merge', '--model', model, '--adapter', f.adapter, '--out', join(root, out), ...extra, '--json']);
  const train = (model: string, method: string, out: string) =>
    runCliAsync(['train', '--model', model, '--data', f.data, '--method', method, '--r', '4', '--targets', 'all-linear', '--seq', '32', '--batch', '2', '--steps', '3', '--eval-every', '0', '--lr', '1e-2', '--out', join(root, out), '--json']);
  const gptqOut = join(root, `${fixture}-gptq-merged`);
  const onnxOut = join(root, `${fixture}-merged.onnx`);
  return {
    gptqOut,
    onnxOut,
    mergedFrom4bit: join(root, `${fixture}-merged-4bit`),
    mergedFromFloat: join(root, `${fixture}-merged-float-nf4`),
    generate: full ? { float: generate(float, '--quant', 'nf4'), prequantized: generate(f.prequantized), hub: generate(f.hub, '--quant', 'nf4') } : null,
    logits: { float: logits(float, '--quant', 'nf4'), floatF32: logits(float), prequantized: logits(f.prequantized) },
    info: { float: runCliAsync(['info', '--model', float, '--json']), prequantized: runCliAsync(['info', '--model', f.prequantized, '--json']), hub: runCliAsync(['info', '--model', f.hub]) },
    merge: { prequantized: merge(f.prequantized, `${fixture}-merged-4bit`), float: merge(float, `${fixture}-merged-float-nf4`, '--quant', 'nf4') },
    train: full ? { prequantized: train(f.prequantized, 'qlora', 'qlora-4bit'), float: train(float, 'qlora', 'qlora-float'), lora: train(f.prequantized, 'lora', 'lora-4bit') } : null,
    onnx: full ? { export: runCliAsync(['export-onnx', '--model', f.prequantized, '--adapter', f.adapter, '--out', onnxOut, '--json']), logits: logits(f.prequantized, '--adapter', f.adapter) } : null,
    gptq: full
      ? {
          info: runCliAsync(['info', '--model', f.gptq, '--json']),
          generate: generate(f.gptq),
          merge: runCliAsync(['merge', '--model', f.gptq, '--adapter', f.adapter, '--out', gptqOut]),
        }
      : null,
  };
}

describe.each(FIXTURES)('a pre-quantized %s checkpoint in the CLI', (fixture) => {
  let runs: ReturnType<typeof startRuns>;
  let folders: Folders;

  beforeAll(async () => {
    const root = mkdtempSync(join(tmpdir(), 'tabtune-prequant-'));
    folders = await makeFolders(fixture, root);
    runs = startRuns(fixture, folders, root);
  }, 300_000);

  it.runIf(fixture === 'llama')('generates exactly what --quant nf4 generates from the float checkpoint, with either config.json', async () => {
    const [float, prequantized, hub] = await Promise.all(Object.values(runs.generate!));
    for (const result of [float, prequantized, hub]) expectOk(result);
    const expected = JSON.parse(float.stdout) as { text: string; tokens: number[] };
    expect(expected.tokens).toHaveLength(6);
    expect(JSON.parse(prequantized.stdout)).toEqual(expected);
    expect(JSON.parse(hub.stdout)).toEqual(expected);
    console.info(`${fixture}: greedy ${JSON.stringify(expected)} from the float checkpoint with --quant nf4 and from both 4-bit folders`);
    expect(prequantized.stderr).toContain(`loaded 21 tensors from ${folders.prequantized} (linear layers 4-bit nf4, as stored)`);
    // --quant nf4 on a 4-bit checkpoint: one line says so, and the run goes on.
    expect(hub.stderr.split('\n').filter((line) => line.includes('already 4-bit'))).toEqual([
      `--quant nf4: ${folders.hub} is already 4-bit (bitsandbytes nf4); its weights load as stored`,
    ]);
  }, 300_000);

  it('gives logits bit-identical to --quant nf4 on the float checkpoint (which differ from the f32 ones)', async () => {
    const [float, floatF32, prequantized] = await Promise.all(Object.values(runs.logits));
    for (const result of [float, floatF32, prequantized]) expectOk(result);
    const expected = (JSON.parse(float.stdout) as { logits: number[][] }).logits;
    expect(expected).toHaveLength(TOKENS.split(',').length);
    expect(JSON.parse(prequantized.stdout).logits).toEqual(expected);
    const f32 = (JSON.parse(floatF32.stdout) as { logits: number[][] }).logits.flat();
    const quantizedDiff = Math.max(...expected.flat().map((value, i) => Math.abs(value - f32[i])));
    console.info(`${fixture}: logits of the 4-bit folder = --quant nf4's; max |4-bit − f32| = ${quantizedDiff.toExponential(2)}`);
    expect(quantizedDiff).toBeGreaterThan(1e-4); // the 4-bit weights are really in use
  }, 300_000);

  it('info reports the 4-bit type and the float checkpoint’s parameter count', async () => {
    const [float, prequantized, hub] = await Promise.all(Object.values(runs.info));
    expectOk(float);
    expectOk(prequantized);
    expect(hub.status, hub.stderr).toBe(0);
    const floatInfo = JSON.parse(float.stdout);
    const info = JSON.parse(prequantized.stdout);
    expect(floatInfo.quantized).toBeUndefined(); // a float checkpoint's summary is unchanged
    // The same parameters and bytes: the same 4-bit layers, everything else in f32.
    expect(info).toEqual({ ...floatInfo, dtype: 'bitsandbytes nf4', quantized: 'nf4' });
    expect(info.parameterCount).toBe(fixture === 'llama' ? 21_984 : floatInfo.parameterCount);
    expect(hub.stdout).toContain(`${fixture}, ${info.parameterCount.toLocaleString('en-US')} parameters (bitsandbytes nf4)`);
    expect(hub.stdout).toContain('pre-quantized: linear layers stored in bitsandbytes 4-bit nf4, loaded as they are; fine-tune with QLoRA only');
  }, 300_000);

  it('merges a LoRA adapter into an f32 folder equal bit for bit to merge --quant nf4 on the float checkpoint', async () => {
    const [prequantized, float] = await Promise.all([runs.merge.prequantized, runs.merge.float]);
    expectOk(prequantized);
    expectOk(float);
    const linears = fixture === 'llama' ? 2 * 7 : 2 * 4;
    expect(JSON.parse(prequantized.stdout)).toMatchObject({ mergedModules: linears, quant: 'nf4' });
    expect(JSON.parse(float.stdout)).toMatchObject({ mergedModules: linears, quant: 'nf4' });

    const [merged, reference, original] = await Promise.all([
      readAll(join(runs.mergedFrom4bit, 'model.safetensors')),
      readAll(join(runs.mergedFromFloat, 'model.safetensors')),
      readAll(join(MODELS, fixture, 'model.safetensors')),
    ]);
    expect([...merged.tensors.keys()].sort()).toEqual([...reference.tensors.keys()].sort());
    let changed = 0;
    for (const [name, tensor] of merged.tensors) {
      const source = original.tensors.get(name)!;
      expect(tensor.dtype, name).toBe('F32');
      expect(tensor.shape, name).toEqual(source.entry.shape);
      const bytes = (t: typeof tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      expect(bytes(tensor).equals(bytes(reference.tensors.get(name)!)), name).toBe(true);
      if (tensor.data.some((value, i) => value !== source.data[i])) changed++;
    }
    expect(merged.tensors.size).toBeGreaterThan(linears);
    expect(changed).toBe(linears); // the linears (dequantized, LoRA added) and nothing else
    const config = JSON.parse(readFileSync(join(runs.mergedFrom4bit, 'config.json'), 'utf8'));
    expect(config).toEqual({ ...JSON.parse(readFileSync(join(MODELS, fixture, 'config.json'), 'utf8')), torch_dtype: 'float32' });
    expect(readFileSync(join(runs.mergedFrom4bit, 'tokenizer.json')).equals(readFileSync(join(MODELS, fixture, 'tokenizer.json')))).toBe(true);
  }, 300_000);

  it.runIf(fixture === 'llama')('refuses a GPTQ quantization_config in one line naming the field, before the GPU, writing nothing', async () => {
    const results = await Promise.all(Object.values(runs.gptq!));
    for (const result of results) {
      expect(result.status, result.stderr).toBe(1);
      expect(result.stdout).toBe('');
      // Only the error line: no Dawn adapter messages either, so the GPU was never touched.
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr.trim()).toMatch(/^tabtune (info|generate|merge): "config\.json": quantization_config\.quant_method is "gptq"; only bitsandbytes 4-bit checkpoints load$/);
    }
    expect(existsSync(runs.gptqOut)).toBe(false);
  }, 300_000);

  it.runIf(fixture === 'llama')('trains QLoRA loss for loss as on the float checkpoint quantized on load, and refuses LoRA before the GPU', async () => {
    const [prequantized, float, lora] = await Promise.all(Object.values(runs.train!));
    expectOk(prequantized);
    expectOk(float);
    const summary = (result: CliResult) => {
      const { firstLoss, lastLoss, valLossBefore, valLossAfter, trainableParameters } = JSON.parse(result.stdout);
      return { firstLoss, lastLoss, valLossBefore, valLossAfter, trainableParameters };
    };
    const expected = summary(float);
    expect(summary(prequantized)).toEqual(expected);
    expect(expected.lastLoss).toBeLessThan(expected.firstLoss);
    console.info(`${fixture}: QLoRA on the 4-bit folder = on the float checkpoint: ${JSON.stringify(expected)}`);
    expect(lora.status).toBe(1);
    expect(lora.stderr.trim().split('\n')).toEqual([
      `tabtune train: ${folders.prequantized} is stored in 4-bit (bitsandbytes nf4), so only --method qlora trains on it; use its unquantized version for --method lora`,
    ]);
  }, 300_000);

  it.runIf(fixture === 'llama')('export-onnx writes the dequantized model with the adapter merged: ONNX Runtime Web gives the engine\'s logits', async () => {
    const [exported, logits] = await Promise.all([runs.onnx!.export, runs.onnx!.logits]);
    expectOk(exported);
    expectOk(logits);
    expect(JSON.parse(exported.stdout)).toMatchObject({ out: runs.onnxOut, architecture: 'llama', merged: true });
    const expected = (JSON.parse(logits.stdout) as { logits: number[][] }).logits;
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    const session = await ort.InferenceSession.create(readFileSync(runs.onnxOut), { executionProviders: ['wasm'] });
    const ids = TOKENS.split(',').map(Number);
    const result = await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]) });
    expectClose(result.logits.data as Float32Array, Float32Array.from(expected.flat()), 1e-4, 'ONNX logits of the merged 4-bit model');
    await session.release();
  }, 300_000);
});
