// Training checkpoints: everything a run needs to continue exactly where it stopped, in ONE safetensors file.
//
// Tensors (F32): `param/<name>` (the trainable weights), `adam_m/<name>` and `adam_v/<name>` (AdamW moments), in
// the trainer's parameter order. `__metadata__`:
//   format          "tabtune-checkpoint"
//   format_version  "1"
//   trainer         JSON: { config, progress (step, optimizer step, sampler position = data position and, with
//                   the seed, the whole RNG state; step and eval history), groups, model identity, data fingerprint,
//                   parameters [{name, group, shape}] }. Losses of skipped steps (NaN/Inf) are written as strings.
//   checksum        CRC-32 of the data section, hex: a torn or altered file is refused on load
//   extra.*         the caller's own strings (adapter config, base model name, ...)
// A checkpoint whose weights or moments hold NaN or Inf is refused before anything is written.
//
// Storage is injected: `replace(name, chunks)` must be atomic — after a failure or a crash at any point, `read`
// returns the previous bytes or the new ones, never a mix. nodeCheckpointStorage.ts does it on disk (write a
// temporary file, fsync, rename, fsync the directory); opfsCheckpointStorage below does it in the browser's
// origin-private file system, whose createWritable() streams into a swap file that replaces the file only on
// close(); memoryCheckpointStorage is for tests.

import { FormatError, quoteName } from '../io/errors.ts';
import { bytesSource, readSafetensors } from '../io/safetensors.ts';
import { encodeSafetensors, type SafetensorsTensorInput } from '../io/safetensorsWriter.ts';
import type { CheckpointSaver, ParameterSnapshot, StepRecord, Trainer, TrainerSnapshot } from './trainer.ts';

export const CHECKPOINT_FORMAT = 'tabtune-checkpoint';
export const CHECKPOINT_VERSION = '1';
export const DEFAULT_CHECKPOINT_NAME = 'checkpoint.safetensors';

/** A checkpoint that cannot be written (it holds NaN) or read (absent, torn, another format). */
export class CheckpointError extends FormatError {}

/** Writing failed (quota, I/O); the previous checkpoint is untouched. `bytesNeeded` is the new file's size. */
export class CheckpointWriteError extends CheckpointError {
  constructor(
    file: string,
    detail: string,
    readonly bytesNeeded: number,
    options?: { cause?: unknown },
  ) {
    super(file, detail, { field: 'file' }, options);
  }
}

export interface CheckpointStorage {
  /** Human-readable location, for messages. */
  readonly name: string;
  /** Replace the file `name` with the chunks, atomically (see the file header). Throws when it cannot. */
  replace(name: string, chunks: Iterable<Uint8Array>): Promise<void>;
  /** The file's bytes, or null when there is none. */
  read(name: string): Promise<Uint8Array | null>;
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(chunks: Iterable<Uint8Array>): string {
  let crc = 0xffffffff;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) crc = CRC_TABLE[(crc ^ chunk[i]) & 0xff] ^ (crc >>> 8);
  }
  return ((crc ^ 0xffffffff) >>> 0).toString(16).padStart(8, '0');
}

function countNonFinite(data: Float32Array): number {
  let bad = 0;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) bad++;
  return bad;
}

const KINDS = [
  ['param/', 'value'],
  ['adam_m/', 'm'],
  ['adam_v/', 'v'],
] as const;

/** The file as a header and data chunks. CheckpointError when a weight or moment is NaN/Inf (nothing is produced). */
export function encodeCheckpoint(
  snapshot: TrainerSnapshot,
  options: { fileName?: string; extraMetadata?: Readonly<Record<string, string>> } = {},
): { chunks: Uint8Array[]; byteLength: number } {
  const file = options.fileName ?? DEFAULT_CHECKPOINT_NAME;
  const tensors: SafetensorsTensorInput[] = [];
  for (const p of snapshot.parameters) {
    for (const [prefix, key] of KINDS) {
      const data = p[key];
      const bad = countNonFinite(data);
      if (bad > 0) {
        throw new CheckpointError(file, `refusing to write a checkpoint: ${prefix}${p.name} holds ${bad} NaN or infinite values`, { tensor: `${prefix}${p.name}` });
      }
      tensors.push({ name: `${prefix}${p.name}`, dtype: 'F32', shape: p.shape, data });
    }
  }
  const trainer = {
    config: snapshot.config,
    progress: {
      ...snapshot.progress,
      history: snapshot.progress.history.map((r) => ({ ...r, loss: finiteOrText(r.loss), gradNorm: finiteOrText(r.gradNorm) })),
      evals: snapshot.progress.evals.map((e) => ({ ...e, loss: finiteOrText(e.loss), perplexity: finiteOrText(e.perplexity) })),
    },
    groups: snapshot.groups,
    model: snapshot.model,
    dataFingerprint: snapshot.dataFingerprint,
    parameters: snapshot.parameters.map(({ name, group, shape }) => ({ name, group, shape })),
  };
  // The checksum covers the data section, which does not depend on the metadata.
  const dataOnly = encodeSafetensors(tensors, undefined, { fileName: file });
  const metadata: Record<string, string> = Object.create(null);
  for (const [key, value] of Object.entries(options.extraMetadata ?? {})) metadata[`extra.${key}`] = value;
  metadata.format = CHECKPOINT_FORMAT;
  metadata.format_version = CHECKPOINT_VERSION;
  metadata.trainer = JSON.stringify(trainer);
  metadata.checksum = crc32(dataOnly.chunks);
  const encoded = encodeSafetensors(tensors, metadata, { fileName: file });
  return { chunks: [encoded.header, ...encoded.chunks], byteLength: encoded.byteLength };
}

/** JSON has no NaN or Infinity: those are written as the strings "NaN", "Infinity", "-Infinity". */
const finiteOrText = (value: number): number | string => (Number.isFinite(value) ? value : String(value));
const numberOrNaN = (value: unknown) => (typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN);

export interface LoadedCheckpoint {
  readonly snapshot: TrainerSnapshot;
  /** The caller's extra metadata, without the `extra.` prefix. */
  readonly extraMetadata: Readonly<Record<string, string>>;
}

/** Parse and verify a checkpoint file. CheckpointError (or the safetensors reader's typed errors) when it is not one. */
export async function decodeCheckpoint(bytes: Uint8Array, fileName = DEFAULT_CHECKPOINT_NAME): Promise<LoadedCheckpoint> {
  const { header, tensors } = await readSafetensors(bytesSource(bytes), fileName);
  const meta = header.metadata;
  const fail = (detail: string, field = '__metadata__'): never => {
    throw new CheckpointError(fileName, detail, { field });
  };
  if (meta.get('format') !== CHECKPOINT_FORMAT) fail(`is not a tabtune checkpoint (__metadata__.format is ${quoteName(String(meta.get('format') ?? 'missing'))})`, '__metadata__.format');
  if (meta.get('format_version') !== CHECKPOINT_VERSION) fail(`has checkpoint format version ${quoteName(String(meta.get('format_version')))}; this build reads ${CHECKPOINT_VERSION}`, '__metadata__.format_version');
  const data = bytes.subarray(header.dataStart);
  if (meta.get('checksum') !== crc32([data])) fail('is damaged: the checksum of its data does not match', '__metadata__.checksum');
  let trainer: {
    config: TrainerSnapshot['config'];
    progress: TrainerSnapshot['progress'];
    groups: TrainerSnapshot['groups'];
    model: TrainerSnapshot['model'];
    dataFingerprint: string;
    parameters: { name: string; group: number; shape: number[] }[];
  };
  try {
    trainer = JSON.parse(meta.get('trainer') ?? '');
  } catch {
    return fail('has unreadable trainer state (__metadata__.trainer is not JSON)', '__metadata__.trainer');
  }
  if (typeof trainer !== 'object' || trainer === null || !Array.isArray(trainer.parameters) || typeof trainer.progress !== 'object' || typeof trainer.config !== 'object') {
    fail('has incomplete trainer state', '__metadata__.trainer');
  }
  const parameters: ParameterSnapshot[] = trainer.parameters.map((p) => {
    const arrays = KINDS.map(([prefix]) => {
      const tensor = tensors.get(`${prefix}${p.name}`);
      if (!tensor || tensor.dtype !== 'F32') return fail(`lacks the F32 tensor ${quoteName(`${prefix}${p.name}`)}`, 'tensors');
      if (tensor.shape.length !== p.shape.length || tensor.shape.some((d, k) => d !== p.shape[k])) fail(`tensor ${quoteName(`${prefix}${p.name}`)} does not have the recorded shape`, 'tensors');
      return tensor.data;
    });
    return { name: p.name, group: p.group, shape: p.shape, value: arrays[0], m: arrays[1], v: arrays[2] };
  });
  const progress = trainer.progress;
  const snapshot: TrainerSnapshot = {
    config: trainer.config,
    progress: {
      ...progress,
      history: progress.history.map((r): StepRecord => ({ ...r, loss: numberOrNaN(r.loss), gradNorm: numberOrNaN(r.gradNorm) })),
      evals: progress.evals.map((e) => ({ ...e, loss: numberOrNaN(e.loss), perplexity: numberOrNaN(e.perplexity) })),
    },
    groups: trainer.groups,
    model: trainer.model,
    dataFingerprint: trainer.dataFingerprint,
    parameters,
  };
  const extraMetadata: Record<string, string> = Object.create(null);
  for (const [key, value] of meta) if (key.startsWith('extra.')) extraMetadata[key.slice(6)] = value;
  return { snapshot, extraMetadata };
}

// ---------------------------------------------------------------------------------------------------------------
// Saving and loading through a storage

/** Encode and write atomically; returns the bytes written. CheckpointError for NaN, CheckpointWriteError when writing fails. */
export async function saveCheckpoint(
  storage: CheckpointStorage,
  snapshot: TrainerSnapshot,
  options: { name?: string; extraMetadata?: Readonly<Record<string, string>> } = {},
): Promise<number> {
  const name = options.name ?? DEFAULT_CHECKPOINT_NAME;
  const { chunks, byteLength } = encodeCheckpoint(snapshot, { fileName: name, extraMetadata: options.extraMetadata });
  try {
    await storage.replace(name, chunks);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CheckpointWriteError(name, `could not be written to ${storage.name} (${byteLength} bytes needed): ${reason}; the previous checkpoint is kept`, byteLength, {
      cause: error,
    });
  }
  return byteLength;
}

/** The checkpoint `name` from storage, or null when there is none. */
export async function loadCheckpoint(storage: CheckpointStorage, name = DEFAULT_CHECKPOINT_NAME): Promise<LoadedCheckpoint | null> {
  const bytes = await storage.read(name);
  // An empty file is what a first save that never completed can leave behind (OPFS creates the file first).
  return bytes === null || bytes.byteLength === 0 ? null : decodeCheckpoint(bytes, name);
}

/** A trainer's CheckpointSaver: snapshot and save every `every` steps (and when a run stops). */
export function checkpointSaver(
  storage: CheckpointStorage,
  options: { every: number; name?: string; extraMetadata?: Readonly<Record<string, string>> },
): CheckpointSaver {
  if (!Number.isSafeInteger(options.every) || options.every < 1) throw new RangeError(`checkpointSaver: every must be a positive integer, got ${options.every}`);
  return {
    every: options.every,
    save: async (trainer: Trainer) => saveCheckpoint(storage, await trainer.snapshot(), options),
  };
}

/** Load `name` and restore it into the trainer; false when there is no checkpoint. ResumeMismatchError when it does not fit. */
export async function resumeFromCheckpoint(trainer: Trainer, storage: CheckpointStorage, name = DEFAULT_CHECKPOINT_NAME): Promise<boolean> {
  const loaded = await loadCheckpoint(storage, name);
  if (!loaded) return false;
  trainer.restore(loaded.snapshot);
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Storages

/** In memory (tests, or a caller that persists elsewhere). A replace that throws midway leaves the old bytes. */
export function memoryCheckpointStorage(files = new Map<string, Uint8Array>()): CheckpointStorage & { files: Map<string, Uint8Array> } {
  return {
    name: 'memory',
    files,
    async replace(name, chunks) {
      const parts = [...chunks];
      const out = new Uint8Array(parts.reduce((sum, c) => sum + c.byteLength, 0));
      let at = 0;
      for (const part of parts) {
        out.set(part, at);
        at += part.byteLength;
      }
      files.set(name, out);
    },
    async read(name) {
      return files.get(name)?.slice() ?? null;
    },
  };
}

/** What opfsCheckpointStorage needs of a FileSystemDirectoryHandle (navigator.storage.getDirectory()). */
export interface DirectoryHandleLike {
  getFileHandle(name: string, options?: { create?: boolean }): Promise<{
    getFile(): Promise<{ arrayBuffer(): Promise<ArrayBuffer> }>;
    createWritable(options?: { keepExistingData?: boolean }): Promise<{
      write(data: Uint8Array): Promise<void>;
      close(): Promise<void>;
      abort(reason?: unknown): Promise<void>;
    }>;
  }>;
}

/**
 * The browser's origin-private file system. createWritable() writes into a swap file; close() replaces the file
 * in one step, and abort() (or a crash) discards the swap file, so the previous checkpoint survives.
 */
export function opfsCheckpointStorage(directory: DirectoryHandleLike, label = 'browser storage'): CheckpointStorage {
  return {
    name: label,
    async replace(name, chunks) {
      const handle = await directory.getFileHandle(name, { create: true });
      const writable = await handle.createWritable({ keepExistingData: false });
      try {
        for (const chunk of chunks) await writable.write(chunk);
      } catch (error) {
        await writable.abort(error).catch(() => undefined);
        throw error;
      }
      await writable.close();
    },
    async read(name) {
      let handle;
      try {
        handle = await directory.getFileHandle(name);
      } catch (error) {
        if ((error as { name?: string }).name === 'NotFoundError') return null;
        throw error;
      }
      return new Uint8Array(await (await handle.getFile()).arrayBuffer());
    },
  };
}
