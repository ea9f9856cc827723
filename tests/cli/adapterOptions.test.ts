// --adapter and --quant on the commands that run a model, and export-onnx with a merged LoRA adapter,
// checked against the independent PyTorch goldens of tests/fixtures/peft/.

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { bytesSource, readSafetensors } from '../../src/io/safetensors.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { runCli } from './run.ts';

const PEFT = 'tests/fixtures/peft';

async function golden(folder: string) {
  const { header, tensors } = await readSafetensors(bytesSource(new Uint8Array(readFileSync(`${folder}/golden.safetensors`))), 'golden.safetensors');
  const logits = tensors.get('logits')!;
  return { ids: JSON.parse(header.metadata.get('input_ids')!) as number[][], V: logits.shape[2], logits: logits.data as Float32Array };
}

function cliLogits(args: string[]): number[][] {
  const { status, stdout, stderr } = runCli(['logits', ...args, '--json']);
  expect(status, stderr).toBe(0);
  return JSON.parse(stdout).logits;
}

describe('--adapter and --quant', () => {
  for (const [adapter, kind] of [[`${PEFT}/llama-qvd`, 'PEFT LoRA'], [`${PEFT}/bottleneck/llama-pfeiffer`, 'AdapterHub bottleneck']] as const) {
    it(`logits --adapter with a ${kind} adapter reproduce the reference`, async () => {
      const { ids, V, logits } = await golden(adapter);
      const rows = cliLogits(['--model', 'tests/fixtures/models/llama', '--tokens', ids[0].join(','), '--adapter', adapter]);
      expectClose(rows.flat(), logits.subarray(0, ids[0].length * V), 1e-4, `${kind} logits`);
    });
  }

  it('--quant nf4 runs the base in 4 bits (close to, but not equal to, the f32 logits)', () => {
    const tokens = ['--model', 'tests/fixtures/models/llama', '--tokens', '1,2,3,4'];
    const full = cliLogits(tokens).flat();
    const quantized = cliLogits([...tokens, '--quant', 'nf4']).flat();
    expect(quantized.every(Number.isFinite)).toBe(true);
    const error = relativeError(quantized, full);
    expect(error).toBeGreaterThan(0); // the 4-bit weights really are used
    expect(error).toBeLessThan(1); // NF4 of 32-wide random weights: a coarse but related function
  });

  it('refuses a missing adapter folder and an unknown --quant in one line, before loading', () => {
    for (const extra of [['--adapter', 'no/such/adapter'], ['--quant', 'int8']]) {
      const { status, stderr } = runCli(['logits', '--model', 'tests/fixtures/models/llama', '--tokens', '1', ...extra]);
      expect(status).toBe(1);
      expect(stderr.trim().split('\n').at(-1)).toMatch(/no such folder|--quant must be nf4/);
      expect(stderr).not.toContain('    at ');
    }
  });
});

describe('export-onnx', () => {
  it('exports the model with the LoRA adapter merged, and ONNX Runtime Web reproduces the adapted logits', async () => {
    const adapter = `${PEFT}/llama-qvd`;
    const out = join(mkdtempSync(join(tmpdir(), 'tabtune-onnx-')), 'model.onnx');
    const { status, stdout, stderr } = runCli(['export-onnx', '--model', 'tests/fixtures/models/llama', '--adapter', adapter, '--out', out, '--json']);
    expect(status, stderr).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ out, architecture: 'llama', merged: true });

    const { ids, logits } = await golden(adapter);
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    const session = await ort.InferenceSession.create(readFileSync(out), { executionProviders: ['wasm'] });
    const input = new ort.Tensor('int64', BigInt64Array.from(ids.flat(), BigInt), [ids.length, ids[0].length]);
    const result = await session.run({ input_ids: input });
    expectClose(result.logits.data as Float32Array, logits, 1e-4, 'ONNX logits of the merged model');
    await session.release();
  });

  it('refuses a bottleneck adapter, which has no merged form', () => {
    const { status, stderr } = runCli(['export-onnx', '--model', 'tests/fixtures/models/llama', '--adapter', `${PEFT}/bottleneck/llama-pfeiffer`, '--out', join(tmpdir(), 'x.onnx')]);
    expect(status).toBe(1);
    expect(stderr).toContain('bottleneck adapters cannot be merged');
  });
});
