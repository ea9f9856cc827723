// The description of a saved training run: what browser storage keeps besides the checkpoint and the dataset, so
// that a reloaded page can name the run and continue it with the same settings. Pure data handling, no storage:
// savedRunFiles.ts writes and reads the files.
//
// run.json (UTF-8 JSON, one object):
//   format "tabtune-run", version 1
//   runId       a random id; the checkpoint's extra metadata names it, so a checkpoint of another run is refused
//   createdAt   ms since the epoch, when the run started
//   model       { source: {kind:'demo'} | {kind:'hub', spec, endpoint?} | null (picked files), label, modelType }
//   settings    { method {…MethodSettings}, steps, seqLen, batchSize, lr, schedule, warmupSteps, seed, checkpointEvery,
//                 validationShare, evalEvery }; schedule and warmupSteps are absent from files written before the app
//                 offered them, whose runs used a constant learning rate without warm-up: read as 'constant' and 0
//   dataset     { characters, fingerprint }: identifies dataset.txt, written before it

import { parseJsonObjectFile, JsonFields } from '../../io/jsonFields.ts';
import { FormatError, quoteName } from '../../io/errors.ts';
import { SCHEDULE_KINDS } from '../../train/schedule.ts';
import type { MethodSettings, ReloadableModelSource, RunSettings, SavedRunDescription, TrainRequest } from '../protocol.ts';

export const SAVED_RUN_FORMAT = 'tabtune-run';
export const SAVED_RUN_VERSION = 1;
export const RUN_DESCRIPTION_FILE = 'run.json';
/** Far above any real description; a bigger file is not ours. */
const MAX_DESCRIPTION_BYTES = 64 * 1024;

/** A saved run that cannot be read (damaged, another format, or a dataset that does not match it). */
export class SavedRunError extends FormatError {}

/** The settings a run's numbers depend on, from a train request. */
export function runSettingsOf(request: RunSettings): RunSettings {
  const { method, steps, seqLen, batchSize, lr, schedule, warmupSteps, seed, checkpointEvery, validationShare, evalEvery } = request;
  const methodCopy = { ...method, targetModules: method.targetModules ? [...method.targetModules] : null };
  return { method: methodCopy, steps, seqLen, batchSize, lr, schedule, warmupSteps, seed, checkpointEvery, validationShare, evalEvery };
}

/** FNV-1a (32-bit) over the UTF-16 code units, with the length: tells one dataset text from another. */
export function textFingerprint(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    h = Math.imul(h ^ (unit & 0xff), 0x01000193) >>> 0;
    h = Math.imul(h ^ (unit >>> 8), 0x01000193) >>> 0;
  }
  return `${text.length.toString(16)}-${h.toString(16).padStart(8, '0')}`;
}

export function describeRun(request: TrainRequest, run: { runId: string; createdAt: number; modelType: string }): SavedRunDescription {
  return {
    runId: run.runId,
    createdAt: run.createdAt,
    model: { source: request.model.source, label: request.model.label, modelType: run.modelType },
    settings: runSettingsOf(request),
    dataset: { characters: request.dataset.length, fingerprint: textFingerprint(request.dataset) },
  };
}

export function encodeRunDescription(description: SavedRunDescription): string {
  return JSON.stringify({ format: SAVED_RUN_FORMAT, version: SAVED_RUN_VERSION, ...description });
}

class RunFields extends JsonFields {
  integer(name: string, min: number, max: number): number {
    const value = this.number(name);
    if (!Number.isSafeInteger(value) || value < min || value > max) this.fail(name, `must be an integer in [${min}, ${max}], got ${value}`);
    return value;
  }

  oneOf<T extends string>(name: string, values: readonly T[]): T {
    const value = this.string(name);
    if (!values.includes(value as T)) this.fail(name, `must be one of ${values.join(', ')}, got ${quoteName(value)}`);
    return value as T;
  }

  stringList(name: string): string[] | null {
    const value = this.raw(name);
    if (value === null || value === undefined) return null;
    if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) this.fail(name, 'must be a list of strings or null');
    return value as string[];
  }
}

function readSource(fields: RunFields): ReloadableModelSource | null {
  if (!fields.present('source')) return null;
  const source = fields.object('source');
  const kind = source.oneOf('kind', ['demo', 'hub'] as const);
  if (kind === 'demo') return { kind: 'demo' };
  const endpoint = source.optionalString('endpoint');
  return { kind: 'hub', spec: source.string('spec'), ...(endpoint !== null ? { endpoint } : {}) };
}

function readMethod(fields: RunFields): MethodSettings {
  return {
    method: fields.oneOf('method', ['lora', 'qlora', 'adapter'] as const),
    r: fields.integer('r', 1, 1 << 20),
    alpha: fields.number('alpha'),
    dropout: fields.number('dropout'),
    useRslora: fields.bool('useRslora'),
    targetModules: fields.stringList('targetModules'),
    reductionFactor: fields.integer('reductionFactor', 1, 1 << 20),
    placement: fields.oneOf('placement', ['pfeiffer', 'houlsby'] as const),
  };
}

/** Parse run.json; SavedRunError naming the field when it is not a saved run this build can continue. */
export function parseRunDescription(input: string | Uint8Array, file = RUN_DESCRIPTION_FILE): SavedRunDescription {
  const fields = new RunFields(file, parseJsonObjectFile(input, file, MAX_DESCRIPTION_BYTES, SavedRunError), '', SavedRunError);
  if (fields.string('format') !== SAVED_RUN_FORMAT) fields.fail('format', `must be ${quoteName(SAVED_RUN_FORMAT)}`);
  const version = fields.number('version');
  if (version !== SAVED_RUN_VERSION) fields.fail('version', `is ${version}; this build reads version ${SAVED_RUN_VERSION}`);
  const runId = fields.string('runId');
  if (!/^[0-9a-z-]{1,64}$/.test(runId)) fields.fail('runId', 'is not a run id');
  const createdAt = fields.integer('createdAt', 0, Number.MAX_SAFE_INTEGER);
  const model = fields.object('model');
  const settings = fields.object('settings');
  const dataset = fields.object('dataset');
  const steps = settings.integer('steps', 1, 100_000);
  return {
    runId,
    createdAt,
    model: { source: readSource(model), label: model.string('label'), modelType: model.string('modelType') },
    settings: {
      method: readMethod(settings.object('method')),
      steps,
      seqLen: settings.integer('seqLen', 1, 1 << 20),
      batchSize: settings.integer('batchSize', 1, 1 << 20),
      lr: settings.number('lr'),
      schedule: settings.present('schedule') ? settings.oneOf('schedule', SCHEDULE_KINDS) : 'constant',
      warmupSteps: settings.present('warmupSteps') ? settings.integer('warmupSteps', 0, steps - 1) : 0,
      seed: settings.integer('seed', 0, 2 ** 32 - 1),
      checkpointEvery: settings.integer('checkpointEvery', 0, 100_000),
      validationShare: settings.number('validationShare'),
      evalEvery: settings.integer('evalEvery', 0, 100_000),
    },
    dataset: { characters: dataset.integer('characters', 0, Number.MAX_SAFE_INTEGER), fingerprint: dataset.string('fingerprint') },
  };
}

const SETTING_NAMES: Record<keyof Omit<RunSettings, 'method'>, string> = {
  steps: 'steps',
  seqLen: 'sequence length',
  batchSize: 'batch size',
  lr: 'learning rate',
  schedule: 'learning-rate schedule',
  warmupSteps: 'warm-up steps',
  seed: 'seed',
  checkpointEvery: 'checkpoint interval',
  validationShare: 'validation share',
  evalEvery: 'evaluation interval',
};

/** The first setting in which two runs differ, in words ("learning rate: 0.001 saved, 0.01 now"), or null. */
export function settingsDifference(saved: RunSettings, now: RunSettings): string | null {
  const a = runSettingsOf(saved);
  const b = runSettingsOf(now);
  for (const key of Object.keys(SETTING_NAMES) as (keyof typeof SETTING_NAMES)[]) {
    if (a[key] !== b[key]) return `${SETTING_NAMES[key]}: ${a[key]} saved, ${b[key]} now`;
  }
  for (const key of Object.keys(a.method) as (keyof MethodSettings)[]) {
    if (JSON.stringify(a.method[key]) !== JSON.stringify(b.method[key])) {
      return `method setting ${key}: ${JSON.stringify(a.method[key])} saved, ${JSON.stringify(b.method[key])} now`;
    }
  }
  return null;
}
