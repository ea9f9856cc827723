// The saved run in browser storage: three files in one directory of the origin-private file system (OPFS), each
// replaced atomically (checkpoint.ts's storages write a swap file that replaces the old one on close):
//   run.json                 the run's description (savedRun.ts)
//   dataset.txt              the dataset text, UTF-8
//   checkpoint.safetensors   the trainer's checkpoint (checkpoint.ts); extra metadata runId and savedAt
// A new run first removes the previous description and checkpoint, then writes its dataset and, last, its
// description: whatever point a crash interrupts, a description is only ever found next to its own dataset, and a
// checkpoint only next to its own description (the runId says so). The files sit behind `RunFiles`, so this logic
// runs in Node tests over memory; opfsRunFiles gives the worker's real directory.

import { checkpointSaver as makeCheckpointSaver, DEFAULT_CHECKPOINT_NAME, loadCheckpoint, opfsCheckpointStorage, type CheckpointStorage, type DirectoryHandleLike, type LoadedCheckpoint } from '../../train/checkpoint.ts';
import type { CheckpointSaver } from '../../train/trainer.ts';
import type { SavedRun, SavedRunDescription } from '../protocol.ts';
import { encodeRunDescription, parseRunDescription, RUN_DESCRIPTION_FILE, SavedRunError, textFingerprint } from './savedRun.ts';

export const DATASET_FILE = 'dataset.txt';
export const CHECKPOINT_FILE = DEFAULT_CHECKPOINT_NAME;
/** The OPFS directory of the saved run. */
export const RUN_DIRECTORY = 'tabtune-saved-run';

/** A directory of whole files replaced atomically (CheckpointStorage), which can also remove one. */
export interface RunFiles extends CheckpointStorage {
  /** Remove the file; nothing happens when there is none. */
  remove(name: string): Promise<void>;
}

const encoder = new TextEncoder();

export class SavedRunStore {
  constructor(readonly files: RunFiles) {}

  /** Replace any saved run by a new one (see the file header for the order). */
  async begin(description: SavedRunDescription, dataset: string): Promise<void> {
    await this.files.remove(RUN_DESCRIPTION_FILE);
    await this.files.remove(CHECKPOINT_FILE);
    await this.files.replace(DATASET_FILE, [encoder.encode(dataset)]);
    await this.files.replace(RUN_DESCRIPTION_FILE, [encoder.encode(encodeRunDescription(description))]);
  }

  /** Remove the saved run; true when there was one. */
  async clear(): Promise<boolean> {
    const had = (await this.files.read(RUN_DESCRIPTION_FILE)) !== null;
    await this.files.remove(RUN_DESCRIPTION_FILE);
    await this.files.remove(CHECKPOINT_FILE);
    await this.files.remove(DATASET_FILE);
    return had;
  }

  /** The saved description, or null when there is none. SavedRunError when it is damaged. */
  async description(): Promise<SavedRunDescription | null> {
    const bytes = await this.files.read(RUN_DESCRIPTION_FILE);
    // A zero-byte file is what a first write that never completed can leave (OPFS creates the file first).
    return bytes === null || bytes.byteLength === 0 ? null : parseRunDescription(bytes);
  }

  /** The run's dataset text, checked against its description. SavedRunError when it is missing or another text. */
  async dataset(description: SavedRunDescription): Promise<string> {
    const bytes = await this.files.read(DATASET_FILE);
    if (bytes === null) throw new SavedRunError(DATASET_FILE, 'is missing: the saved run cannot be continued without its dataset', { field: 'file' });
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new SavedRunError(DATASET_FILE, 'is not valid UTF-8', { field: 'file' });
    }
    if (textFingerprint(text) !== description.dataset.fingerprint) {
      throw new SavedRunError(DATASET_FILE, `is not the dataset of the saved run (${text.length} characters, the run was saved with ${description.dataset.characters})`, { field: 'file' });
    }
    return text;
  }

  /** The run's checkpoint, or null before its first. CheckpointError when damaged, SavedRunError when it is another run's. */
  async checkpoint(description: SavedRunDescription): Promise<LoadedCheckpoint | null> {
    const loaded = await loadCheckpoint(this.files, CHECKPOINT_FILE);
    if (loaded && loaded.extraMetadata.runId !== description.runId) {
      throw new SavedRunError(CHECKPOINT_FILE, 'belongs to another run than the saved description', { field: '__metadata__.extra.runId' });
    }
    return loaded;
  }

  /** Everything a reloaded page needs to offer the run, or null when none is saved. */
  async read(): Promise<SavedRun | null> {
    const description = await this.description();
    if (!description) return null;
    const dataset = await this.dataset(description);
    const checkpoint = await this.checkpoint(description);
    const savedAt = Number(checkpoint?.extraMetadata.savedAt);
    return {
      description,
      checkpointStep: checkpoint?.snapshot.progress.step ?? 0,
      savedAt: Number.isFinite(savedAt) && savedAt > 0 ? savedAt : description.createdAt,
      dataset,
    };
  }

  /** A trainer's saver writing this run's checkpoint every `every` steps, stamped with its run id and the time. */
  saver(runId: string, every: number, now: () => number = Date.now): CheckpointSaver {
    return {
      every,
      save: (trainer) => makeCheckpointSaver(this.files, { every, name: CHECKPOINT_FILE, extraMetadata: { runId, savedAt: String(now()) } }).save(trainer),
    };
  }
}

/** The worker's saved-run directory in the origin-private file system. Throws when the browser offers no OPFS. */
export async function opfsRunFiles(): Promise<RunFiles> {
  const root = await navigator.storage.getDirectory();
  const directory = await root.getDirectoryHandle(RUN_DIRECTORY, { create: true });
  // The DOM typings' writable stream takes ArrayBuffer-backed views only; checkpoint chunks are such views.
  const storage = opfsCheckpointStorage(directory as unknown as DirectoryHandleLike, 'browser storage');
  return {
    name: storage.name,
    replace: (name, chunks) => storage.replace(name, chunks),
    read: (name) => storage.read(name),
    async remove(name) {
      try {
        await directory.removeEntry(name);
      } catch (error) {
        if ((error as { name?: string }).name !== 'NotFoundError') throw error;
      }
    },
  };
}
