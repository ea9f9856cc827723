// A model folder served as plain files by the app's own server (the demo model in public/demo/): there is no
// listing endpoint, so the caller names the folder's files, and a name outside that list is missing without a
// request. Each file is fetched whole on first open (the demo is a few MB), with progress, and kept in memory.

import { bytesSource, type ByteSource } from '../io/byteSource.ts';
import { FileReadError, quoteName } from '../io/errors.ts';
import { checkFileName, MissingFileError, readText, type ModelFiles } from '../io/sources/types.ts';

export type FetchProgress = (file: string, done: number, total: number | null) => void;

export function staticFolder(baseUrl: string, names: readonly string[], options: { name: string; onProgress?: FetchProgress; signal?: AbortSignal }): ModelFiles {
  const base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
  const fetched = new Map<string, Promise<ByteSource>>();

  const download = async (file: string): Promise<ByteSource> => {
    const url = new URL(file.split('/').map(encodeURIComponent).join('/'), base).href;
    let response: Response;
    try {
      response = await fetch(url, { signal: options.signal });
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw new FileReadError(file, `could not be fetched from ${quoteName(url)}: ${(error as Error).message}`, { field: 'file' }, { cause: error });
    }
    if (response.status === 404) throw new MissingFileError(file, `is not in ${quoteName(options.name)} (HTTP 404 at ${quoteName(url)})`, { field: 'file' });
    if (!response.ok || response.body === null) throw new FileReadError(file, `could not be fetched (HTTP ${response.status} at ${quoteName(url)})`, { field: 'file' });
    const declared = response.headers.get('content-length');
    const encoded = (response.headers.get('content-encoding') ?? 'identity') !== 'identity';
    const total = declared !== null && /^\d+$/.test(declared) && !encoded ? Number(declared) : null;
    const chunks: Uint8Array[] = [];
    let done = 0;
    const reader = response.body.getReader();
    options.onProgress?.(file, 0, total);
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      chunks.push(value);
      done += value.byteLength;
      options.onProgress?.(file, done, total);
    }
    if (total !== null && done !== total) throw new FileReadError(file, `was cut short: ${done} of ${total} bytes arrived`, { field: 'file' });
    const bytes = new Uint8Array(done);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.byteLength;
    }
    return bytesSource(bytes);
  };

  const open = async (file: string): Promise<ByteSource> => {
    checkFileName(options.name, file);
    if (!names.includes(file)) throw new MissingFileError(file, `is not one of the files of ${quoteName(options.name)}`, { field: 'file' });
    let pending = fetched.get(file);
    if (pending === undefined) {
      pending = download(file);
      fetched.set(file, pending);
      pending.catch(() => fetched.delete(file)); // a failed fetch may be retried
    }
    return pending;
  };

  return {
    name: options.name,
    async list() {
      return [...names].sort();
    },
    open,
    async text(file) {
      return readText(await open(file), file);
    },
  };
}
