// `tabtune train` on the demo model (public/demo, a 4-layer Llama with its tokenizer) and a small text dataset:
// each method trains a few steps and lowers the validation loss, the adapter files re-import onto the model, a
// run resumes from its checkpoint and goes on, and hyperparameter mistakes exit 1 naming the option before any GPU
// work. Runs are tiny (rows of 32 tokens, batches of 2, 4 steps): every kernel runs on a software GPU.

import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadModel } from '../../src/models/load.ts';
import { importBottleneckAdapter } from '../../src/peft/bottleneckFiles.ts';
import { BottleneckModel } from '../../src/peft/bottleneckModel.ts';
import { importLoraAdapter } from '../../src/peft/peftFiles.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../../src/train/checkpoint.ts';
import { testEngine } from '../helpers/gpu.ts';
import { runCli, runCliAsync, type CliResult } from './run.ts';

const DEMO = 'public/demo';
const DATA = 'tests/fixtures/datasets/train_small.jsonl';
const TINY = ['--seq', '32', '--batch', '2', '--steps', '4', '--eval-every', '0', '--lr', '1e-2'];

type Result = CliResult;

const tempDir = () => mkdtempSync(join(tmpdir(), 'tabtune-train-'));

function expectSummary(result: Result, method: string, out: string) {
  expect(result.status, result.stderr).toBe(0);
  const summary = JSON.parse(result.stdout);
  expect(summary).toMatchObject({ method, steps: 4, stopReason: 'completed', skippedSteps: [], out });
  for (const key of ['firstLoss', 'lastLoss', 'valLossBefore', 'valLossAfter', 'trainableParameters', 'tokensPerSecond', 'peakGpuBytes']) {
    expect(Number.isFinite(summary[key]), `${key} = ${summary[key]}`).toBe(true);
    expect(summary[key], key).toBeGreaterThan(0);
  }
  expect(summary.valLossAfter).toBeLessThan(summary.valLossBefore);
  expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
  return summary;
}

describe('tabtune train', () => {
  it('trains LoRA, QLoRA and a bottleneck adapter; the files re-import; a run resumes and goes on', async () => {
    const dirs = { lora: tempDir(), qlora: tempDir(), adapter: tempDir() };
    const [lora, qlora, adapter] = await Promise.all([
      runCliAsync(['train', '--model', DEMO, '--data', DATA, '--method', 'lora', '--r', '4', '--targets', 'q_proj,v_proj', ...TINY, '--out', dirs.lora, '--json']),
      runCliAsync(['train', '--model', DEMO, '--data', DATA, '--method', 'qlora', '--r', '4', '--targets', 'all-linear', ...TINY, '--out', dirs.qlora, '--json']),
      runCliAsync(['train', '--model', DEMO, '--data', DATA, '--method', 'adapter', '--reduction-factor', '8', '--placement', 'houlsby', ...TINY, '--out', dirs.adapter, '--json']),
    ]);
    const loraSummary = expectSummary(lora, 'lora', dirs.lora);
    const qloraSummary = expectSummary(qlora, 'qlora', dirs.qlora);
    const adapterSummary = expectSummary(adapter, 'adapter', dirs.adapter);
    // r = 4 on q_proj [128 → 128] and v_proj [128 → 64] of 4 layers: 4 · 4 · (128 + 128 + 128 + 64).
    expect(loraSummary.trainableParameters).toBe(4 * 4 * (128 + 128 + 128 + 64));
    expect(qloraSummary.trainableParameters).toBeGreaterThan(loraSummary.trainableParameters);
    // Houlsby: two adapters per layer, down 128 → 16 and up 16 → 128 with biases.
    expect(adapterSummary.trainableParameters).toBe(4 * 2 * (128 * 16 + 16 + 16 * 128 + 128));
    expect(readFileSync(join(dirs.lora, 'adapter_config.json'), 'utf8')).toContain('"peft_type": "LORA"');
    expect(existsSync(join(dirs.adapter, 'adapter.safetensors'))).toBe(true);

    // Re-import onto the model: LoRA and QLoRA files through PEFT's import, the adapter through AdapterHub's.
    const engine = await testEngine();
    for (const dir of [dirs.lora, dirs.qlora]) {
      const { model } = await loadModel(engine, localDirectory(DEMO));
      const imported = await importLoraAdapter(model, localDirectory(dir));
      const B = [...imported.peft.trainableParameters().entries()].find(([name]) => name.includes('lora_B'))![1];
      const values = (await B.read()) as Float32Array;
      expect(values.some((v) => v !== 0)).toBe(true); // trained (B starts at zero)
      imported.peft.dispose();
    }
    {
      const { model } = await loadModel(engine, localDirectory(DEMO));
      const adapted = BottleneckModel.attach(model);
      const imported = await importBottleneckAdapter(adapted, localDirectory(dirs.adapter));
      expect(adapted.trainableParameterCount(imported.name)).toBe(adapterSummary.trainableParameters);
      adapted.detach();
      model.dispose();
    }

    // Resume the LoRA run from its checkpoint and go on to 6 steps: the restored history is kept.
    const resumedDir = tempDir();
    const resumed = runCli(['train', '--model', DEMO, '--data', DATA, '--method', 'lora', '--r', '4', '--targets', 'q_proj,v_proj', ...TINY, '--steps', '6', '--resume', dirs.lora, '--out', resumedDir, '--json']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain('resuming at step 4');
    const summary = JSON.parse(resumed.stdout);
    expect(summary.steps).toBe(6);
    expect(summary.firstLoss).toBe(loraSummary.firstLoss);
    expect(summary.valLossBefore).toBe(loraSummary.valLossBefore);
    expect(Number.isFinite(summary.valLossAfter)).toBe(true);
    expect(summary.valLossAfter).toBeLessThan(summary.valLossBefore);
    const checkpoint = await decodeCheckpoint(new Uint8Array(readFileSync(join(resumedDir, 'checkpoint.safetensors'))));
    expect(checkpoint.snapshot.progress.step).toBe(6);
    expect(checkpoint.snapshot.progress.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6]);

    // A checkpoint of another model (another hidden size) is refused, by name, before the GPU is taken.
    const other = tempDir();
    const original = await decodeCheckpoint(new Uint8Array(readFileSync(join(dirs.lora, 'checkpoint.safetensors'))));
    const foreign = encodeCheckpoint({ ...original.snapshot, model: { ...original.snapshot.model, hiddenSize: 64 } });
    writeFileSync(join(other, 'checkpoint.safetensors'), Buffer.concat(foreign.chunks));
    const refused = runCli(['train', '--model', DEMO, '--data', DATA, '--method', 'lora', ...TINY, '--resume', other, '--out', tempDir()]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('ResumeMismatchError: cannot resume: the checkpoint is for another model (hiddenSize 64, this model has 128)');
    expect(refused.stderr).not.toContain('    at ');
  }, 600_000);

  it('refuses hyperparameter mistakes with one line naming the option, writing nothing', () => {
    const cases: [string[], RegExp][] = [
      [['--method', 'lora', '--r', '0'], /--r must be an integer ≥ 1, got 0/],
      [['--method', 'lora', '--lr=-1e-3'], /--lr must be a number in \(0, 1\], got -0\.001/],
      [['--method', 'lora', '--steps', '4', '--warmup', '4'], /--warmup 4 must be shorter than the 4 training steps/],
      [['--method', 'prefix'], /--method must be one of lora, qlora, adapter, got 'prefix'/],
      [['--method', 'adapter', '--reduction-factor', '0'], /--reduction-factor must be an integer ≥ 1, got 0/],
      [['--method', 'lora', '--schedule', 'step'], /--schedule must be one of constant, linear, cosine/],
      [['--method', 'lora', '--dropout', '1'], /--dropout must be in \[0, 1\), got 1/],
      [['--method', 'lora', '--batch', '0'], /--batch must be an integer in \[1, /],
    ];
    for (const [options, message] of cases) {
      const out = join(tempDir(), 'out');
      const { status, stderr } = runCli(['train', '--model', DEMO, '--data', DATA, ...options, '--out', out]);
      expect(status, stderr).toBe(1);
      expect(stderr).toMatch(message);
      expect(stderr.trim().split('\n')).toHaveLength(1); // one line, no stack, no GPU start-up noise
      expect(existsSync(out)).toBe(false);
    }
  }, 120_000);
  it('trains every method on the tiny fixture models of each architecture family', async () => {
    // Lower-case words only: the fixtures' tokenizers spell a small alphabet (llama3's: lower case only).
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'to', 'it'];
    const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: Array.from({ length: 12 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' ') }));
    const data = join(tempDir(), 'words.jsonl');
    writeFileSync(data, `${lines.join('\n')}\n`);
    const runs = (['gpt2', 'llama'] as const).flatMap((fixture) =>
      (['lora', 'qlora', 'adapter'] as const).map(async (method) => {
        const out = tempDir();
        const extra = method === 'adapter' ? ['--reduction-factor', '4'] : ['--r', '4', '--targets', 'all-linear'];
        const result = await runCliAsync(['train', '--model', `tests/fixtures/models/${fixture}`, '--data', data, '--method', method, ...extra, ...TINY, '--out', out, '--json']);
        return { fixture, method, summary: expectSummary(result, method, out) };
      }),
    );
    const results = await Promise.all(runs);
    expect(results.map((r) => `${r.fixture}/${r.method}`)).toEqual(['gpt2/lora', 'gpt2/qlora', 'gpt2/adapter', 'llama/lora', 'llama/qlora', 'llama/adapter']);
  }, 900_000);
});
