// Checkpoint files and storages (src/train/checkpoint.ts, nodeCheckpointStorage.ts), on snapshots built on the
// host. Resuming a real run exactly is tested with the trainer (trainer.test.ts).

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bytesSource, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import {
  CheckpointError,
  CheckpointWriteError,
  decodeCheckpoint,
  DEFAULT_CHECKPOINT_NAME,
  encodeCheckpoint,
  loadCheckpoint,
  memoryCheckpointStorage,
  opfsCheckpointStorage,
  saveCheckpoint,
  type CheckpointStorage,
  type DirectoryHandleLike,
} from '../../src/train/checkpoint.ts';
import { nodeCheckpointStorage } from '../../src/train/nodeCheckpointStorage.ts';
import { resolveTrainerConfig, type TrainerSnapshot } from '../../src/train/trainer.ts';
import { randomArray, rng } from '../helpers/numeric.ts';

const directories: string[] = [];
afterAll(() => {
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
});
function tempDirectory(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tabtune-checkpoint-'));
  directories.push(dir);
  return dir;
}

function snapshot(seed: number, step = 3): TrainerSnapshot {
  const random = rng(seed);
  const tensor = (n: number) => Float32Array.from(randomArray(n, random));
  const positive = (n: number) => Float32Array.from(randomArray(n, random), (x) => x * x);
  return {
    config: resolveTrainerConfig({ steps: 10, batchSize: 2, lr: 1e-3, seed: 5 }),
    progress: {
      step,
      optimizerStep: step,
      samplerPosition: step * 2,
      history: [
        { step: 1, loss: 3.5, gradNorm: 1.25, lr: 1e-3, skipped: false },
        { step: 2, loss: NaN, gradNorm: Infinity, lr: 1e-3, skipped: true },
        { step: 3, loss: 3.25, gradNorm: 0.5, lr: 1e-3, skipped: false },
      ].slice(0, step),
      evals: [{ step: 2, loss: 3.4, perplexity: Math.exp(3.4), tokens: 40 }],
    },
    groups: [
      { name: 'lora_A', lrScale: 1, weightDecay: 0 },
      { name: 'lora_B', lrScale: 16, weightDecay: 0 },
    ],
    parameters: [
      { name: 'model.layers.0.self_attn.q_proj.lora_A.weight', group: 0, shape: [4, 8], value: tensor(32), m: tensor(32), v: positive(32) },
      { name: 'model.layers.0.self_attn.q_proj.lora_B.weight', group: 1, shape: [8, 4], value: tensor(32), m: tensor(32), v: positive(32) },
    ],
    model: { modelType: 'llama', vocabSize: 101, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2 },
    dataFingerprint: '0123abcd',
  };
}

function expectSameSnapshot(actual: TrainerSnapshot, expected: TrainerSnapshot): void {
  expect(actual.config).toEqual(expected.config);
  expect(actual.progress).toEqual(expected.progress); // NaN equals NaN for toEqual
  expect(actual.groups).toEqual(expected.groups);
  expect(actual.model).toEqual(expected.model);
  expect(actual.dataFingerprint).toBe(expected.dataFingerprint);
  expect(actual.parameters.length).toBe(expected.parameters.length);
  actual.parameters.forEach((p, i) => {
    const e = expected.parameters[i];
    expect([p.name, p.group, p.shape]).toEqual([e.name, e.group, e.shape]);
    // Bit for bit.
    for (const key of ['value', 'm', 'v'] as const) expect(new Uint32Array(p[key].buffer, p[key].byteOffset, p[key].length)).toEqual(new Uint32Array(e[key].buffer, e[key].byteOffset, e[key].length));
  });
}

/** A storage whose replace() fails after writing `after` chunks (a crash or a full disk midway). */
function failingMidway(storage: CheckpointStorage, after: number): CheckpointStorage {
  return {
    name: storage.name,
    read: (name) => storage.read(name),
    replace: (name, chunks) =>
      storage.replace(
        name,
        (function* () {
          let k = 0;
          for (const chunk of chunks) {
            if (k++ === after) throw new Error('QuotaExceededError: simulated crash while writing');
            yield chunk;
          }
        })(),
      ),
  };
}

describe('checkpoint files', () => {
  it('round-trip everything to resume: weights, moments, step, data position, history, config, in one safetensors file', async () => {
    const original = snapshot(1);
    const { chunks, byteLength } = encodeCheckpoint(original, { extraMetadata: { adapter_config: '{"r": 4}' } });
    const bytes = new Uint8Array(byteLength);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.byteLength;
    }
    const header = await readSafetensorsHeader(bytesSource(bytes), 'ckpt');
    expect(header.tensors.map((t) => t.name).sort()).toEqual(
      ['param/', 'adam_m/', 'adam_v/'].flatMap((p) => original.parameters.map((q) => `${p}${q.name}`)).sort(),
    );
    expect(header.metadata.get('format')).toBe('tabtune-checkpoint');
    expect(JSON.parse(header.metadata.get('trainer')!).progress.samplerPosition).toBe(6);
    const loaded = await decodeCheckpoint(bytes);
    expectSameSnapshot(loaded.snapshot, original);
    expect(loaded.extraMetadata.adapter_config).toBe('{"r": 4}');
  });

  it('refuses to write NaN or Inf weights or moments, and nothing reaches the storage', async () => {
    const storage = memoryCheckpointStorage();
    await saveCheckpoint(storage, snapshot(1));
    const before = storage.files.get(DEFAULT_CHECKPOINT_NAME)!.slice();
    for (const key of ['value', 'm', 'v'] as const) {
      const bad = snapshot(2);
      bad.parameters[1][key][5] = key === 'm' ? Infinity : NaN;
      const error = await saveCheckpoint(storage, bad).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CheckpointError);
      expect((error as Error).message).toMatch(/refusing to write a checkpoint: .*lora_B.weight holds 1 NaN or infinite values/);
      expect(storage.files.get(DEFAULT_CHECKPOINT_NAME)).toEqual(before);
    }
  });

  it('a damaged file (a flipped data byte, a cut) or another format is refused with a typed error', async () => {
    const storage = memoryCheckpointStorage();
    await saveCheckpoint(storage, snapshot(1));
    const good = storage.files.get(DEFAULT_CHECKPOINT_NAME)!;
    const flipped = good.slice();
    flipped[flipped.length - 3] ^= 0x40;
    await expect(decodeCheckpoint(flipped)).rejects.toThrow(/checksum/);
    await expect(decodeCheckpoint(good.slice(0, good.length - 10))).rejects.toThrow(/cut short|past the end|incomplete/i);
    const model = new Uint8Array(readFileSync(new URL('../fixtures/models/llama/model.safetensors', import.meta.url)));
    await expect(decodeCheckpoint(model, 'model.safetensors')).rejects.toThrow(CheckpointError);
    expect(await loadCheckpoint(memoryCheckpointStorage(), 'absent')).toBeNull();
  });
});

describe('atomic replacement', () => {
  it('Node: a write that fails midway leaves the previous checkpoint valid and no temporary file', async () => {
    const dir = tempDirectory();
    const storage = nodeCheckpointStorage(dir);
    const first = snapshot(1);
    await saveCheckpoint(storage, first);
    for (const after of [0, 1, 3]) {
      const error = await saveCheckpoint(failingMidway(storage, after), snapshot(2, 2)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CheckpointWriteError);
      expect((error as CheckpointWriteError).bytesNeeded).toBe(encodeCheckpoint(snapshot(2, 2)).byteLength);
      expect((error as Error).message).toMatch(/the previous checkpoint is kept/);
      expect(readdirSync(dir)).toEqual([DEFAULT_CHECKPOINT_NAME]);
      expectSameSnapshot((await loadCheckpoint(storage))!.snapshot, first);
    }
    // A crash (no cleanup) leaves a stray partial file beside it: still harmless.
    writeFileSync(join(dir, `.${DEFAULT_CHECKPOINT_NAME}.999.1.partial`), new Uint8Array(10));
    expectSameSnapshot((await loadCheckpoint(storage))!.snapshot, first);
    // A later save replaces it.
    const second = snapshot(3, 2);
    await saveCheckpoint(storage, second);
    expectSameSnapshot((await loadCheckpoint(storage))!.snapshot, second);
    await expect(storage.replace('../escape', [])).rejects.toThrow(/plain file name/);
  });

  it('memory and OPFS-like storages keep the old bytes when a write fails', async () => {
    const memory = memoryCheckpointStorage();
    await saveCheckpoint(memory, snapshot(1));
    await expect(saveCheckpoint(failingMidway(memory, 1), snapshot(2))).rejects.toThrow(CheckpointWriteError);
    expectSameSnapshot((await loadCheckpoint(memory))!.snapshot, snapshot(1));

    // A fake origin-private file system with createWritable()'s swap-file semantics.
    const files = new Map<string, Uint8Array>();
    const directory: DirectoryHandleLike = {
      async getFileHandle(name, options) {
        if (!files.has(name)) {
          if (!options?.create) throw Object.assign(new Error('missing'), { name: 'NotFoundError' });
          files.set(name, new Uint8Array(0));
        }
        return {
          getFile: async () => ({ arrayBuffer: async () => files.get(name)!.slice().buffer }),
          createWritable: async () => {
            const swap: Uint8Array[] = [];
            return {
              write: async (data: Uint8Array) => void swap.push(data.slice()),
              close: async () => void files.set(name, Uint8Array.from(swap.flatMap((c) => Array.from(c)))),
              abort: async () => void swap.splice(0),
            };
          },
        };
      },
    };
    const opfs = opfsCheckpointStorage(directory);
    expect(await loadCheckpoint(opfs)).toBeNull();
    // A first save that fails leaves an empty file, which reads as "no checkpoint".
    await expect(saveCheckpoint(failingMidway(opfs, 1), snapshot(1))).rejects.toThrow(CheckpointWriteError);
    expect(await loadCheckpoint(opfs)).toBeNull();
    await saveCheckpoint(opfs, snapshot(1));
    await expect(saveCheckpoint(failingMidway(opfs, 2), snapshot(2))).rejects.toThrow(CheckpointWriteError);
    expectSameSnapshot((await loadCheckpoint(opfs))!.snapshot, snapshot(1));
  });
});
