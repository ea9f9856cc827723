// Random-access byte sources: the one interface the file readers use, over memory, a browser
// Blob/File, or (nodeFileSource.ts, sources/) a file on disk, whose read loop is readAtMost here.
// No Node-only APIs here.

import { FileReadError, FormatError, IncompleteFileError } from './errors.ts';

/** Random-access bytes: an in-memory buffer, a browser Blob/File, or a file on disk (see nodeFileSource.ts). */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** `length` bytes from `offset`; fewer only when the source ends early (the reader then reports a cut-short file). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** RangeError unless `offset` and `length` are non-negative safe integers and `offset` is within `size`. */
export function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RangeError(`invalid read of ${length} bytes at ${offset}`);
  }
  if (offset > size) throw new RangeError(`read at ${offset} is past the end (${size} bytes)`);
}

/** A source over bytes already in memory. Reads return views, not copies. */
export function bytesSource(data: Uint8Array | ArrayBuffer): ByteSource {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  return {
    size: bytes.byteLength,
    read(offset, length) {
      checkRange(bytes.byteLength, offset, length);
      return Promise.resolve(bytes.subarray(offset, Math.min(bytes.byteLength, offset + length)));
    },
  };
}

/** What {@link blobSource} needs of a Blob or File (browser, worker, or Node's Blob). */
export interface BlobLike {
  readonly size: number;
  slice(start?: number, end?: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/** A source over a Blob or File: each read slices the range it needs, so a large file is never loaded whole. */
export function blobSource(blob: BlobLike): ByteSource {
  return {
    size: blob.size,
    async read(offset, length) {
      checkRange(blob.size, offset, length);
      const buffer = await blob.slice(offset, Math.min(blob.size, offset + length)).arrayBuffer();
      return new Uint8Array(buffer);
    },
  };
}

/** What {@link readAtMost} needs of an open file: Node's FileHandle, kept structural so no Node API is imported. */
export interface PositionalReader {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

/** `length` bytes of an open file from `position`; fewer only when the file ends first (it shrank). */
export async function readAtMost(file: PositionalReader, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await file.read(out, filled, length - filled, position + filled);
    if (bytesRead === 0) break; // the file shrank: the caller sees a short read
    filled += bytesRead;
  }
  return filled === length ? out : out.subarray(0, filled);
}

/** Read exactly `length` bytes or fail with a typed error naming the file, the part (`what`) and the tensor. */
export async function readExactly(source: ByteSource, file: string, offset: number, length: number, what: string, tensor?: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await source.read(offset, length);
  } catch (error) {
    if (error instanceof FormatError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new FileReadError(file, `could not read ${what} (${length} bytes at offset ${offset}): ${reason}`, { tensor, field: what }, { cause: error });
  }
  if (!(bytes instanceof Uint8Array)) {
    throw new FileReadError(file, `reading ${what} returned no bytes`, { tensor, field: what });
  }
  if (bytes.byteLength < length) {
    throw new IncompleteFileError(file, `file cut short while reading ${what}: wanted ${length} bytes at offset ${offset}, got ${bytes.byteLength}`, {
      tensor,
      field: what,
    });
  }
  return bytes.byteLength === length ? bytes : bytes.subarray(0, length);
}
