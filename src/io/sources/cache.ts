// Where downloaded model files are kept so that the second load is offline. Three implementations of one
// interface: a folder in Node (default ~/.cache/tabtune, or TABTUNE_CACHE), Cache Storage in the browser, and
// memory (tests, or a browser without Cache Storage).
//
// A file becomes visible (get() returns it) only once it was downloaded completely and its size matched: bytes
// go to a partial entry first, which commit() turns into the complete file (a rename in Node). After a dropped
// connection the partial is kept (suspend()) and a later download resumes from its size with an HTTP Range.
// Partials and complete files live in separate trees, so no file name can collide with a partial.
//
// This file is loaded in the browser too: Node modules are imported lazily, only by the folder cache.

import { FileReadError, quoteName } from '../errors.ts';
import { blobSource, bytesSource, readAtMost, type ByteSource } from '../byteSource.ts';

export interface FileCache {
  /** For messages: the folder, or "Cache Storage". */
  readonly description: string;
  /** The complete file stored under `key`, or null. */
  get(key: string): Promise<ByteSource | null>;
  /**
   * Start, or continue, the partial file of `key`. One writer per key at a time: hub.ts shares one download per
   * file within a process; two processes downloading the same file into one cache folder are not coordinated.
   */
  partial(key: string): Promise<PartialFile>;
  /** Store a small complete file in one step (listings). */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Forget the complete file and any partial of `key`. */
  delete(key: string): Promise<void>;
}

export interface PartialFile {
  /** Bytes already held: where a resumed download continues. */
  readonly size: number;
  /** The validator (e.g. an ETag) of the file whose bytes these are, for `If-Range`; null when unknown. */
  readonly validator: string | null;
  /** Drop the bytes held and start over, for a file with this validator. */
  restart(validator: string | null): Promise<void>;
  append(chunk: Uint8Array): Promise<void>;
  /** Keep the bytes written so far for a later resume; the file stays invisible. */
  suspend(): Promise<void>;
  /** Make the file visible; refused (CacheSizeError, the partial kept) when `expectedSize` is known and differs. */
  commit(expectedSize: number | null): Promise<ByteSource>;
}

/** A download whose size does not match what the server announced. */
export class CacheSizeError extends FileReadError {}

/** What every cache's partial tracks: the bytes held and the validator they belong to. */
interface PartialState {
  size: number;
  validator: string | null;
}

/** A PartialFile whose size and validator are read from `state`, which the methods keep up to date. */
function livePartial(state: PartialState, methods: Omit<PartialFile, 'size' | 'validator'>): PartialFile {
  return {
    get size() {
      return state.size;
    },
    get validator() {
      return state.validator;
    },
    ...methods,
  };
}

/** Keys are `/`-separated relative paths of plain segments: checked here too, since they become file paths. */
export function checkCacheKey(key: string): void {
  const segments = key.split('/');
  const bad = segments.find((s) => s.length === 0 || s === '.' || s === '..' || s.length > 255 || /[\u0000-\u001f\u007f\\]/.test(s));
  if (key.length === 0 || key.length > 2048 || bad !== undefined) throw new RangeError(`invalid cache key ${quoteName(key)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Node: a folder

type Fs = typeof import('node:fs/promises');
type Path = typeof import('node:path');

// A variable specifier keeps bundlers from pulling Node modules into the browser build.
const importNode = <T>(name: string): Promise<T> => import(/* @vite-ignore */ name) as Promise<T>;

function nodeFileSource(fs: Fs, path: string, size: number): ByteSource {
  return {
    size,
    async read(offset, length) {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset > size) {
        throw new RangeError(`invalid read of ${length} bytes at ${offset} (${size} bytes)`);
      }
      const handle = await fs.open(path, 'r');
      try {
        return await readAtMost(handle, offset, Math.min(length, size - offset));
      } finally {
        await handle.close();
      }
    },
  };
}

/** The default Node cache folder: TABTUNE_CACHE, else ~/.cache/tabtune. */
export async function defaultCacheFolder(): Promise<string> {
  const fromEnv = typeof process !== 'undefined' ? process.env.TABTUNE_CACHE : undefined;
  if (fromEnv) return fromEnv;
  const [os, path] = await Promise.all([importNode<typeof import('node:os')>('node:os'), importNode<Path>('node:path')]);
  return path.join(os.homedir(), '.cache', 'tabtune');
}

/** A cache in a folder: `files/<key>` complete, `partial/<key>/data` (+ `validator`) in progress. */
export async function folderCache(root?: string): Promise<FileCache> {
  const [fs, path] = await Promise.all([importNode<Fs>('node:fs/promises'), importNode<Path>('node:path')]);
  const base = path.resolve(root ?? (await defaultCacheFolder()));
  const filePath = (key: string) => path.join(base, 'files', ...key.split('/'));
  const partialDir = (key: string) => path.join(base, 'partial', ...key.split('/'));
  const sizeOf = async (file: string): Promise<number | null> => {
    try {
      const stats = await fs.stat(file);
      return stats.isFile() ? stats.size : null;
    } catch {
      return null;
    }
  };

  const cache: FileCache = {
    description: base,
    async get(key) {
      checkCacheKey(key);
      const size = await sizeOf(filePath(key));
      return size === null ? null : nodeFileSource(fs, filePath(key), size);
    },
    async partial(key) {
      checkCacheKey(key);
      const dir = partialDir(key);
      const data = path.join(dir, 'data');
      const validatorFile = path.join(dir, 'validator');
      await fs.mkdir(dir, { recursive: true });
      const size = (await sizeOf(data)) ?? 0;
      const state: PartialState = { size, validator: size > 0 ? await fs.readFile(validatorFile, 'utf8').catch(() => null) : null };
      let handle: Awaited<ReturnType<Fs['open']>> | null = null;
      const close = async () => {
        const open = handle;
        handle = null;
        if (open) await open.close();
      };
      return livePartial(state, {
        async restart(next) {
          await close();
          await fs.writeFile(data, new Uint8Array(0));
          if (next === null) await fs.rm(validatorFile, { force: true });
          else await fs.writeFile(validatorFile, next);
          state.size = 0;
          state.validator = next;
        },
        async append(chunk) {
          handle ??= await fs.open(data, 'a');
          let written = 0;
          while (written < chunk.byteLength) {
            const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written);
            written += bytesWritten;
          }
          state.size += chunk.byteLength;
        },
        async suspend() {
          await close();
        },
        async commit(expectedSize) {
          await close();
          const actual = (await sizeOf(data)) ?? 0;
          if (expectedSize !== null && actual !== expectedSize) {
            throw new CacheSizeError(key, `download holds ${actual} bytes, but the server announced ${expectedSize}`, { field: 'size' });
          }
          const target = filePath(key);
          await fs.mkdir(path.dirname(target), { recursive: true });
          await fs.rename(data, target);
          await fs.rm(dir, { recursive: true, force: true });
          return nodeFileSource(fs, target, actual);
        },
      });
    },
    async put(key, bytes) {
      const partial = await cache.partial(key);
      await partial.restart(null);
      await partial.append(bytes);
      await partial.commit(bytes.byteLength);
    },
    async delete(key) {
      checkCacheKey(key);
      await fs.rm(filePath(key), { force: true });
      await fs.rm(partialDir(key), { recursive: true, force: true });
    },
  };
  return cache;
}

// ---------------------------------------------------------------------------------------------------------------
// Browser: Cache Storage

/** What {@link cacheStorageCache} needs of the browser's CacheStorage (`globalThis.caches`). */
export interface CacheStorageLike {
  open(name: string): Promise<{
    match(request: string): Promise<Response | undefined>;
    put(request: string, response: Response): Promise<void>;
    delete(request: string): Promise<boolean>;
  }>;
}

const SIZE_HEADER = 'x-tabtune-size';
const VALIDATOR_HEADER = 'x-tabtune-validator';

/**
 * Cache Storage entries under a private URL prefix. A partial's bytes are held in memory as Blob parts while
 * downloading, and stored as a `partial/` entry by suspend() so that a reload can resume; commit() stores the
 * complete file with its size in a header, which get() checks.
 */
export async function cacheStorageCache(storage: CacheStorageLike = (globalThis as { caches?: CacheStorageLike }).caches as CacheStorageLike, name = 'tabtune-files'): Promise<FileCache> {
  if (storage === undefined) throw new Error('Cache Storage is not available here');
  const cache = await storage.open(name);
  const url = (tree: 'files' | 'partial', key: string) => `https://tabtune.cache/${tree}/${key.split('/').map(encodeURIComponent).join('/')}`;
  const store = (request: string, parts: BlobPart[], headers: Record<string, string>) => {
    const blob = new Blob(parts);
    return cache.put(request, new Response(blob, { headers: { 'content-type': 'application/octet-stream', ...headers, [SIZE_HEADER]: String(blob.size) } }));
  };
  const load = async (request: string): Promise<{ blob: Blob; validator: string | null } | null> => {
    const response = await cache.match(request);
    if (response === undefined) return null;
    const blob = await response.blob();
    if (String(blob.size) !== response.headers.get(SIZE_HEADER)) {
      await cache.delete(request);
      return null;
    }
    return { blob, validator: response.headers.get(VALIDATOR_HEADER) };
  };

  return {
    description: `Cache Storage ${quoteName(name)}`,
    async get(key) {
      checkCacheKey(key);
      const found = await load(url('files', key));
      return found === null ? null : blobSource(found.blob);
    },
    async partial(key) {
      checkCacheKey(key);
      const request = url('partial', key);
      const existing = await load(request);
      let parts: BlobPart[] = existing ? [existing.blob] : [];
      const state: PartialState = { size: existing?.blob.size ?? 0, validator: existing?.validator ?? null };
      const headers = (): Record<string, string> => (state.validator === null ? {} : { [VALIDATOR_HEADER]: state.validator });
      const suspend = async () => {
        if (state.size > 0) await store(request, parts, headers());
      };
      return livePartial(state, {
        async restart(next) {
          parts = [];
          state.size = 0;
          state.validator = next;
          await cache.delete(request);
        },
        async append(chunk) {
          parts.push(chunk.slice());
          state.size += chunk.byteLength;
        },
        suspend,
        async commit(expectedSize) {
          if (expectedSize !== null && state.size !== expectedSize) {
            await suspend();
            throw new CacheSizeError(key, `download holds ${state.size} bytes, but the server announced ${expectedSize}`, { field: 'size' });
          }
          const blob = new Blob(parts);
          await store(url('files', key), [blob], headers());
          await cache.delete(request);
          return blobSource(blob);
        },
      });
    },
    async put(key, bytes) {
      checkCacheKey(key);
      await store(url('files', key), [bytes.slice()], {});
    },
    async delete(key) {
      checkCacheKey(key);
      await cache.delete(url('files', key));
      await cache.delete(url('partial', key));
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Memory

/** A cache in memory: lost with the page or process; partials survive within it, so resume still works. */
export function memoryCache(): FileCache {
  const files = new Map<string, Uint8Array>();
  const partials = new Map<string, PartialState & { chunks: Uint8Array[] }>();
  const join = (chunks: Uint8Array[]) => {
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  };
  return {
    description: 'memory',
    async get(key) {
      checkCacheKey(key);
      const bytes = files.get(key);
      return bytes === undefined ? null : bytesSource(bytes);
    },
    async partial(key) {
      checkCacheKey(key);
      let state = partials.get(key);
      if (state === undefined) partials.set(key, (state = { chunks: [], size: 0, validator: null }));
      const entry = state;
      return livePartial(entry, {
        async restart(next) {
          entry.chunks = [];
          entry.size = 0;
          entry.validator = next;
        },
        async append(chunk) {
          entry.chunks.push(chunk.slice());
          entry.size += chunk.byteLength;
        },
        async suspend() {},
        async commit(expectedSize) {
          const bytes = join(entry.chunks);
          if (expectedSize !== null && bytes.byteLength !== expectedSize) {
            throw new CacheSizeError(key, `download holds ${bytes.byteLength} bytes, but the server announced ${expectedSize}`, { field: 'size' });
          }
          files.set(key, bytes);
          partials.delete(key);
          return bytesSource(bytes);
        },
      });
    },
    async put(key, bytes) {
      checkCacheKey(key);
      files.set(key, bytes.slice());
    },
    async delete(key) {
      files.delete(key);
      partials.delete(key);
    },
  };
}

/** The cache for this environment: a folder in Node, Cache Storage in a browser that has it, else memory. */
export async function defaultCache(): Promise<FileCache> {
  if (typeof process !== 'undefined' && typeof process.versions?.node === 'string') return folderCache();
  const storage = (globalThis as { caches?: CacheStorageLike }).caches;
  return storage !== undefined ? cacheStorageCache(storage) : memoryCache();
}
