// Checkpoint storage in a directory on disk, for Node (CLI, tests). Browser code uses checkpoint.ts's
// opfsCheckpointStorage instead.
//
// replace() is atomic on POSIX file systems: the bytes go to a new temporary file in the same directory, which
// is fsync'd, renamed over the target (rename(2) replaces atomically), and the directory is fsync'd so the rename
// itself survives a power loss. A failure midway removes the temporary file; a crash midway leaves it behind
// (its name starts with `.` and ends in `.partial`), and the target is untouched either way.

import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CheckpointStorage } from './checkpoint.ts';

/** Names are plain file names inside the directory. */
function checkName(name: string): void {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[/\\\u0000]/.test(name)) {
    throw new RangeError(`checkpoint file name ${JSON.stringify(name)} is not a plain file name`);
  }
}

let counter = 0;

export function nodeCheckpointStorage(directory: string): CheckpointStorage {
  return {
    name: directory,
    async replace(name, chunks) {
      checkName(name);
      await mkdir(directory, { recursive: true });
      const target = join(directory, name);
      const temporary = join(directory, `.${name}.${process.pid}.${++counter}.partial`);
      const file = await open(temporary, 'wx');
      let renamed = false;
      try {
        for (const chunk of chunks) {
          let at = 0;
          while (at < chunk.byteLength) {
            const { bytesWritten } = await file.write(chunk, at, chunk.byteLength - at);
            at += bytesWritten;
          }
        }
        await file.sync();
        await file.close();
        await rename(temporary, target);
        renamed = true;
        await syncDirectory(directory);
      } finally {
        if (!renamed) {
          await file.close().catch(() => undefined);
          await rm(temporary, { force: true }).catch(() => undefined);
        }
      }
    },
    async read(name) {
      checkName(name);
      try {
        return new Uint8Array(await readFile(join(directory, name)));
      } catch (error) {
        if ((error as { code?: string }).code === 'ENOENT') return null;
        throw error;
      }
    },
  };
}

/** fsync a directory so a rename in it is durable (not supported on every platform: Windows refuses, harmlessly). */
async function syncDirectory(directory: string): Promise<void> {
  let handle;
  try {
    handle = await open(directory, 'r');
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
