// A ByteSource over a file on disk, for Node (CLI, tests). Reads only the ranges asked for, so a model is
// streamed tensor by tensor rather than loaded whole. Browser code uses bytesSource / blobSource instead.

import { open, type FileHandle } from 'node:fs/promises';
import { readAtMost, type ByteSource } from './byteSource.ts';
import { FileReadError } from './errors.ts';

export interface NodeFileSource extends ByteSource {
  readonly path: string;
  close(): Promise<void>;
}

function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' ? `${code}: ${message}` : message;
}

/** Open `path` for random-access reads; FileReadError (naming the path) when it cannot be opened or is not a file. */
export async function openNodeFileSource(path: string): Promise<NodeFileSource> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new FileReadError(path, `cannot open the file (${reasonOf(error)})`, { field: 'file' }, { cause: error });
  }
  let size: number;
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new FileReadError(path, 'is not a regular file', { field: 'file' });
    size = stats.size;
  } catch (error) {
    await handle.close().catch(() => undefined);
    if (error instanceof FileReadError) throw error;
    throw new FileReadError(path, `cannot stat the file (${reasonOf(error)})`, { field: 'file' }, { cause: error });
  }

  let closed = false;
  return {
    path,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (closed) throw new FileReadError(path, 'read after close', { field: 'file' });
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
        throw new RangeError(`invalid read of ${length} bytes at ${offset}`);
      }
      return readAtMost(handle, offset, Math.max(0, Math.min(length, size - offset)));
    },
    async close() {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}

/** Open, run `use`, and close whatever happens. */
export async function withNodeFileSource<T>(path: string, use: (source: NodeFileSource) => Promise<T>): Promise<T> {
  const source = await openNodeFileSource(path);
  try {
    return await use(source);
  } finally {
    await source.close();
  }
}
