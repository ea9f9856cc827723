// The saved run's files (src/worker/calls/savedRunFiles.ts) over an in-memory directory: a run begun and read back
// with its dataset and checkpoint step, a run saved by the build before the schedule and warm-up were saved still
// offered and continued with the same settings, the order of writes that never leaves a description next to another
// run's files, and the typed refusals of a damaged or mismatched saved run.

import { describe, expect, it } from 'vitest';
import { CheckpointError, memoryCheckpointStorage, saveCheckpoint } from '../../../src/train/checkpoint.ts';
import { resolveTrainerConfig, type TrainerSnapshot } from '../../../src/train/trainer.ts';
import { describeRun, RUN_DESCRIPTION_FILE, SavedRunError, settingsDifference } from '../../../src/worker/calls/savedRun.ts';
import { CHECKPOINT_FILE, DATASET_FILE, SavedRunStore, type RunFiles } from '../../../src/worker/calls/savedRunFiles.ts';
import type { TrainRequest } from '../../../src/worker/protocol.ts';

/** A memory directory. */
function memoryRunFiles(): RunFiles & { files: Map<string, Uint8Array> } {
  const storage = memoryCheckpointStorage();
  return {
    name: 'memory',
    files: storage.files,
    replace: (name, chunks) => storage.replace(name, chunks),
    read: (name) => storage.read(name),
    remove: async (name) => void storage.files.delete(name),
  };
}

const request: TrainRequest = {
  method: { method: 'lora', r: 8, alpha: 16, dropout: 0, useRslora: false, targetModules: null, reductionFactor: 16, placement: 'pfeiffer' },
  dataset: 'first example\n\nsecond example — ünïcødé\n',
  steps: 10,
  seqLen: 16,
  batchSize: 1,
  lr: 0.01,
  schedule: 'constant',
  warmupSteps: 0,
  seed: 0,
  checkpointEvery: 2,
  validationShare: 0.1,
  evalEvery: 5,
  model: { source: { kind: 'demo' }, label: 'Demo model' },
  fromCheckpoint: false,
};

const runA = describeRun(request, { runId: 'run-a', createdAt: 1000, modelType: 'llama' });
const runB = describeRun({ ...request, dataset: 'another text' }, { runId: 'run-b', createdAt: 2000, modelType: 'llama' });

function snapshot(step: number): TrainerSnapshot {
  const values = (n: number) => Float32Array.from({ length: n }, (_, i) => (i + 1) / 8);
  return {
    config: resolveTrainerConfig({ steps: 10, batchSize: 1, lr: 0.01 }),
    progress: { step, optimizerStep: step, samplerPosition: step, history: [], evals: [] },
    groups: [{ name: 'default', lrScale: 1, weightDecay: 0 }],
    parameters: [{ name: 'a', group: 0, shape: [2, 2], value: values(4), m: values(4), v: values(4) }],
    model: { modelType: 'llama', vocabSize: 10, hiddenSize: 4, numLayers: 1, numHeads: 1, numKvHeads: 1 },
    dataFingerprint: '00000000',
  };
}

describe('SavedRunStore', () => {
  it('reads back a begun run: description, dataset, no checkpoint yet (step 0, saved at its start)', async () => {
    const store = new SavedRunStore(memoryRunFiles());
    expect(await store.read()).toBeNull();
    await store.begin(runA, request.dataset);
    expect(await store.read()).toEqual({ description: runA, checkpointStep: 0, savedAt: 1000, dataset: request.dataset });
  });

  it("reports the checkpoint's step and save time, written by the run's saver stamp", async () => {
    const files = memoryRunFiles();
    const store = new SavedRunStore(files);
    await store.begin(runA, request.dataset);
    await saveCheckpoint(files, snapshot(4), { name: CHECKPOINT_FILE, extraMetadata: { runId: 'run-a', savedAt: '123456' } });
    const run = await store.read();
    expect(run?.checkpointStep).toBe(4);
    expect(run?.savedAt).toBe(123456);
    expect(store.saver('run-a', 2).every).toBe(2);
  });

  it('a run saved before the schedule and warm-up were saved is offered as constant, 0: the same request continues it', async () => {
    const files = memoryRunFiles();
    const store = new SavedRunStore(files);
    await store.begin(runA, request.dataset);
    await saveCheckpoint(files, snapshot(4), { name: CHECKPOINT_FILE, extraMetadata: { runId: 'run-a', savedAt: '5000' } });
    // The older build's run.json: the same description without the two settings.
    const older = JSON.parse(new TextDecoder().decode(files.files.get(RUN_DESCRIPTION_FILE))) as { settings: Record<string, unknown> };
    delete older.settings.schedule;
    delete older.settings.warmupSteps;
    files.files.set(RUN_DESCRIPTION_FILE, new TextEncoder().encode(JSON.stringify(older)));
    const run = await store.read();
    expect(run).toEqual({ description: runA, checkpointStep: 4, savedAt: 5000, dataset: request.dataset });
    expect(run?.description.settings).toMatchObject({ schedule: 'constant', warmupSteps: 0, seed: 0 });
    expect(settingsDifference(run!.description.settings, request)).toBeNull(); // what the app sends by default
    expect(settingsDifference(run!.description.settings, { ...request, schedule: 'cosine' })).toBe('learning-rate schedule: constant saved, cosine now');
  });

  it('a new run removes the previous checkpoint before its own files are written', async () => {
    const files = memoryRunFiles();
    const store = new SavedRunStore(files);
    await store.begin(runA, request.dataset);
    await saveCheckpoint(files, snapshot(6), { name: CHECKPOINT_FILE, extraMetadata: { runId: 'run-a' } });
    await store.begin(runB, 'another text');
    expect(await store.read()).toEqual({ description: runB, checkpointStep: 0, savedAt: 2000, dataset: 'another text' });
  });

  it('a new run whose description cannot be written leaves no saved run to offer (not the old one)', async () => {
    const files = memoryRunFiles();
    await new SavedRunStore(files).begin(runA, request.dataset);
    const failing = new SavedRunStore({
      ...files,
      replace: (name, chunks) => (name === RUN_DESCRIPTION_FILE ? Promise.reject(new Error('quota exceeded')) : files.replace(name, chunks)),
    });
    await expect(failing.begin(runB, 'another text')).rejects.toThrow('quota exceeded');
    expect(await new SavedRunStore(files).read()).toBeNull();
  });

  it('refuses a dataset that is missing, not UTF-8, or another text', async () => {
    const files = memoryRunFiles();
    const store = new SavedRunStore(files);
    await store.begin(runA, request.dataset);
    files.files.set(DATASET_FILE, new TextEncoder().encode('edited text'));
    await expect(store.read()).rejects.toThrow(/is not the dataset of the saved run \(11 characters, the run was saved with 40\)/);
    files.files.set(DATASET_FILE, new Uint8Array([0xc3, 0x28]));
    await expect(store.read()).rejects.toThrow(SavedRunError);
    files.files.delete(DATASET_FILE);
    const missing = await store.read().catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(SavedRunError);
    expect((missing as SavedRunError).file).toBe(DATASET_FILE);
  });

  it("refuses another run's checkpoint and a damaged one; a damaged description names its field", async () => {
    const files = memoryRunFiles();
    const store = new SavedRunStore(files);
    await store.begin(runA, request.dataset);
    await saveCheckpoint(files, snapshot(4), { name: CHECKPOINT_FILE, extraMetadata: { runId: 'run-b' } });
    await expect(store.read()).rejects.toThrow(/belongs to another run/);
    await saveCheckpoint(files, snapshot(4), { name: CHECKPOINT_FILE, extraMetadata: { runId: 'run-a' } });
    const bytes = files.files.get(CHECKPOINT_FILE)!;
    bytes[bytes.length - 1] ^= 0xff;
    await expect(store.read()).rejects.toThrow(CheckpointError);
    files.files.set(RUN_DESCRIPTION_FILE, new TextEncoder().encode('{"format":"tabtune-run","version":1}'));
    const damaged = await store.read().catch((error: unknown) => error);
    expect(damaged).toBeInstanceOf(SavedRunError);
    expect((damaged as SavedRunError).field).toBe('runId');
  });

  it('an empty description (a first write cut short) is no saved run; clear removes everything', async () => {
    const files = memoryRunFiles();
    const store = new SavedRunStore(files);
    await store.begin(runA, request.dataset);
    await saveCheckpoint(files, snapshot(2), { name: CHECKPOINT_FILE, extraMetadata: { runId: 'run-a' } });
    expect(await store.clear()).toBe(true);
    expect([...files.files.keys()]).toEqual([]);
    expect(await store.clear()).toBe(false);
    files.files.set(RUN_DESCRIPTION_FILE, new Uint8Array());
    expect(await store.read()).toBeNull();
  });
});
