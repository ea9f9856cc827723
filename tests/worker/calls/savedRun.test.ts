// The saved run's description (src/worker/calls/savedRun.ts): written and read back unchanged, a file written
// before the schedule and warm-up were saved read as a constant schedule without warm-up, every damaged or foreign
// file refused with a SavedRunError naming the field, the settings comparison that guards a resume, and the dataset
// fingerprint.

import { describe, expect, it } from 'vitest';
import { describeRun, encodeRunDescription, parseRunDescription, runSettingsOf, SavedRunError, settingsDifference, textFingerprint } from '../../../src/worker/calls/savedRun.ts';
import type { TrainRequest } from '../../../src/worker/protocol.ts';

const request: TrainRequest = {
  method: { method: 'qlora', r: 4, alpha: 8, dropout: 0.05, useRslora: true, targetModules: ['q_proj', 'v_proj'], reductionFactor: 16, placement: 'pfeiffer' },
  dataset: 'one\n\ntwo: ünïcødé\n',
  steps: 40,
  seqLen: 64,
  batchSize: 2,
  lr: 0.002,
  schedule: 'cosine',
  warmupSteps: 3,
  seed: 7,
  checkpointEvery: 5,
  validationShare: 0.1,
  evalEvery: 10,
  model: { source: { kind: 'hub', spec: 'org/model@main', endpoint: 'http://localhost:8080' }, label: 'org/model' },
  fromCheckpoint: false,
};

const description = describeRun(request, { runId: '3f2a9c1e-0b7d-4c1e-9a55-2d4f6b8e0c11', createdAt: 1_750_000_000_000, modelType: 'llama' });

function edited(change: (json: Record<string, unknown>) => void): string {
  const json = JSON.parse(encodeRunDescription(description)) as Record<string, unknown>;
  change(json);
  return JSON.stringify(json);
}

function refusal(input: string | Uint8Array): SavedRunError {
  try {
    parseRunDescription(input);
  } catch (error) {
    expect(error).toBeInstanceOf(SavedRunError);
    return error as SavedRunError;
  }
  throw new Error('the description was accepted');
}

describe('run description', () => {
  it('round-trips through run.json, as text and as bytes', () => {
    expect(description.settings).toEqual(runSettingsOf(request));
    expect(description.dataset).toEqual({ characters: request.dataset.length, fingerprint: textFingerprint(request.dataset) });
    const text = encodeRunDescription(description);
    expect(parseRunDescription(text)).toEqual(description);
    expect(parseRunDescription(new TextEncoder().encode(text))).toEqual(description);
  });

  it('writes the schedule and warm-up steps', () => {
    const json = JSON.parse(encodeRunDescription(description)) as { settings: Record<string, unknown> };
    expect(json.settings).toMatchObject({ schedule: 'cosine', warmupSteps: 3, seed: 7 });
  });

  it('reads a run.json written before the schedule and warm-up were saved as constant and 0', () => {
    // Exactly what the build before them wrote (its runs all trained at a constant learning rate, no warm-up).
    const older =
      '{"format":"tabtune-run","version":1,"runId":"3f2a9c1e-0b7d-4c1e-9a55-2d4f6b8e0c11","createdAt":1750000000000,' +
      '"model":{"source":{"kind":"demo"},"label":"Demo model","modelType":"gpt2"},' +
      '"settings":{"method":{"method":"lora","r":8,"alpha":16,"dropout":0,"useRslora":false,"targetModules":null,"reductionFactor":16,"placement":"pfeiffer"},' +
      '"steps":20,"seqLen":32,"batchSize":1,"lr":0.001,"seed":0,"checkpointEvery":10,"validationShare":0.1,"evalEvery":10},' +
      '"dataset":{"characters":12,"fingerprint":"c-0123abcd"}}';
    const read = parseRunDescription(older);
    expect(read.settings).toEqual({
      method: { method: 'lora', r: 8, alpha: 16, dropout: 0, useRslora: false, targetModules: null, reductionFactor: 16, placement: 'pfeiffer' },
      steps: 20,
      seqLen: 32,
      batchSize: 1,
      lr: 0.001,
      schedule: 'constant',
      warmupSteps: 0,
      seed: 0,
      checkpointEvery: 10,
      validationShare: 0.1,
      evalEvery: 10,
    });
    // Written again, it carries the two fields and reads back the same.
    expect(parseRunDescription(encodeRunDescription(read))).toEqual(read);
  });

  it('keeps a demo source and a picked-files (null) source', () => {
    for (const source of [{ kind: 'demo' } as const, null]) {
      const run = describeRun({ ...request, model: { source, label: 'x' } }, { runId: 'abc', createdAt: 1, modelType: 'gpt2' });
      expect(parseRunDescription(encodeRunDescription(run)).model).toEqual({ source, label: 'x', modelType: 'gpt2' });
    }
  });

  it('refuses damaged and foreign files, naming the field', () => {
    expect(refusal('{"format": "tabtune-run", "version": 1').message).toMatch(/not valid JSON/);
    expect(refusal('').field).toBe('file');
    expect(refusal(new Uint8Array([0x7b, 0xff, 0x7d])).message).toMatch(/UTF-8/);
    expect(refusal('[1, 2]').message).toMatch(/JSON object/);
    expect(refusal(edited((j) => (j.format = 'something-else'))).field).toBe('format');
    const version = refusal(edited((j) => (j.version = 2)));
    expect(version.field).toBe('version');
    expect(version.message).toMatch(/is 2; this build reads version 1/);
    expect(refusal(edited((j) => delete j.settings)).field).toBe('settings');
    expect(refusal(edited((j) => ((j.settings as Record<string, unknown>).steps = 2.5))).field).toBe('settings.steps');
    expect(refusal(edited((j) => ((j.settings as Record<string, unknown>).lr = '0.1'))).field).toBe('settings.lr');
    const schedule = refusal(edited((j) => ((j.settings as Record<string, unknown>).schedule = 'step')));
    expect(schedule.field).toBe('settings.schedule');
    expect(schedule.message).toMatch(/must be one of constant, linear, cosine, got "step"/);
    expect(refusal(edited((j) => ((j.settings as Record<string, unknown>).warmupSteps = -1))).field).toBe('settings.warmupSteps');
    expect(refusal(edited((j) => ((j.settings as Record<string, unknown>).warmupSteps = 1.5))).field).toBe('settings.warmupSteps');
    // The warm-up ends before the last step (the run has 40).
    const warmup = refusal(edited((j) => ((j.settings as Record<string, unknown>).warmupSteps = 40)));
    expect(warmup.field).toBe('settings.warmupSteps');
    expect(warmup.message).toMatch(/must be an integer in \[0, 39\], got 40/);
    expect(refusal(edited((j) => ((j.settings as Record<string, unknown>).seed = 2 ** 32))).field).toBe('settings.seed');
    expect(refusal(edited((j) => (((j.settings as Record<string, Record<string, unknown>>).method.method = 'full')))).field).toBe('settings.method.method');
    expect(refusal(edited((j) => (((j.settings as Record<string, Record<string, unknown>>).method.targetModules = [1])))).field).toBe('settings.method.targetModules');
    expect(refusal(edited((j) => (((j.model as Record<string, Record<string, unknown>>).source.kind = 'files')))).field).toBe('model.source.kind');
    expect(refusal(edited((j) => (j.runId = '../../etc'))).field).toBe('runId');
    expect(refusal(edited((j) => ((j.dataset as Record<string, unknown>).characters = -1))).field).toBe('dataset.characters');
    // A duplicated key is ambiguous: refused rather than resolved silently.
    expect(refusal(encodeRunDescription(description).replace('"version":1', '"version":1,"version":1')).field).toBe('version');
    expect(refusal('x'.repeat(70_000)).field).toBe('file size');
  });
});

describe('settingsDifference', () => {
  const settings = runSettingsOf(request);
  it('is null for the same settings', () => {
    const resumed: TrainRequest = { ...request, fromCheckpoint: true };
    expect(settingsDifference(settings, runSettingsOf(resumed))).toBeNull();
  });
  it('names the first setting that differs, with both values', () => {
    expect(settingsDifference(settings, { ...settings, lr: 0.01 })).toBe('learning rate: 0.002 saved, 0.01 now');
    expect(settingsDifference(settings, { ...settings, steps: 41 })).toBe('steps: 40 saved, 41 now');
    expect(settingsDifference(settings, { ...settings, schedule: 'linear' })).toBe('learning-rate schedule: cosine saved, linear now');
    expect(settingsDifference(settings, { ...settings, warmupSteps: 0 })).toBe('warm-up steps: 3 saved, 0 now');
    expect(settingsDifference(settings, { ...settings, seed: 8 })).toBe('seed: 7 saved, 8 now');
    expect(settingsDifference(settings, { ...settings, method: { ...settings.method, r: 8 } })).toBe('method setting r: 4 saved, 8 now');
    expect(settingsDifference(settings, { ...settings, method: { ...settings.method, targetModules: null } })).toBe('method setting targetModules: ["q_proj","v_proj"] saved, null now');
  });
});

describe('textFingerprint', () => {
  it('tells texts apart by content and length, and is stable', () => {
    expect(textFingerprint('abc')).toBe(textFingerprint('abc'));
    expect(textFingerprint('abc')).not.toBe(textFingerprint('abd'));
    expect(textFingerprint('abc')).not.toBe(textFingerprint('abc\n'));
    // Code units above 0xff count with both bytes.
    expect(textFingerprint('\u0100')).not.toBe(textFingerprint('\u0001'));
    expect(textFingerprint('')).toBe('0-811c9dc5');
  });
});
