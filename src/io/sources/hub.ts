// Model files from a Hugging Face hub (or any server with its layout), downloaded into a FileCache.
//
// Where: a repo id `org/name` or `org/name@revision` (default revision `main`), or a URL on the hub endpoint
// (`{endpoint}/org/name`, `.../tree/{rev}`, `.../resolve/{rev}/{file}`, `.../blob/{rev}/{file}`). Ids and URLs
// are checked before anything is fetched: no `..`, no other scheme (`javascript:`, `data:`, `file:`) and no other
// host than the endpoint, no credentials in URLs. The endpoint is a setting, defaulting to HF_ENDPOINT in Node
// and https://huggingface.co, so tests serve the layout from a local server.
//   file:    {endpoint}/{repo}/resolve/{revision}/{file}        (revision URL-encoded: refs%2Fpr%2F1)
//   listing: {endpoint}/api/models/{repo}/revision/{revision}  (siblings[].rfilename, optional size)
//
// Downloads: cache first (a complete cached file is used without any request, so the second load is offline);
// otherwise the bytes stream into the cache's partial entry with progress events, and a failed attempt (network
// error, dropped connection, stall past `idleTimeoutMs`, 5xx, 429, a body shorter than Content-Length) is retried
// after a backoff with `Range: bytes={held}-` (a 206 whose ETag differs from the partial's restarts from 0).
// At most `retries` failures in a row, each attempt that made progress resetting the count. 404, 401 and 403 are
// not retried. Every failure leaves the cache without a complete entry for the file. Branch revisions are cached as
// first downloaded: pin a commit hash for reproducible loads, or delete the cache entry to refresh.

import { FileReadError, FormatError, quoteName } from '../errors.ts';
import type { ByteSource } from '../byteSource.ts';
import { parseShardIndex, SHARD_INDEX_FILE } from '../shardIndex.ts';
import { defaultCache, type FileCache, type PartialFile } from './cache.ts';
import { checkFileName, fileNameProblem, MissingFileError, readText, sortNames, type ModelFiles } from './types.ts';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';

/** A repo id, revision, URL or endpoint that is malformed or not allowed. Nothing was fetched. */
export class HubSpecError extends FormatError {}

/** What every download failure carries. `retryable`: trying again later may succeed (network, 5xx, 429). */
export interface HubFailure {
  readonly url: string;
  readonly status: number | null;
  readonly retryable: boolean;
}

type FailureInit = { url: string; status: number | null; retryable: boolean; field?: string; cause?: unknown };

type FileErrorClass<E extends FileReadError = FileReadError> = new (file: string, detail: string, where: { field?: string }, options: { cause?: unknown }) => E;

/** `Base` with HubFailure's fields, set from a FailureInit: a 404 stays a MissingFileError, the rest FileReadErrors. */
function hubFailureClass<E extends FileReadError>(Base: FileErrorClass<E>) {
  class Failure extends (Base as FileErrorClass) implements HubFailure {
    readonly url: string;
    readonly status: number | null;
    readonly retryable: boolean;
    constructor(file: string, detail: string, init: FailureInit) {
      super(file, detail, { field: init.field ?? 'file' }, { cause: init.cause });
      this.url = init.url;
      this.status = init.status;
      this.retryable = init.retryable;
    }
  }
  // TypeScript cannot type a class that extends a type parameter's constructor: the casts say what it is.
  return Failure as unknown as new (file: string, detail: string, init: FailureInit) => E & HubFailure;
}

/** 404: no such repository, revision or file (or a private repository seen without a token). */
export class HubNotFoundError extends hubFailureClass(MissingFileError) {}

/** Other download failures: HubAccessError (401/403: gated or private), HubNetworkError, HubHttpError. */
export class HubDownloadError extends hubFailureClass(FileReadError) {}

/** 401/403: a gated repository whose license was not accepted, or a private one; needs a token. */
export class HubAccessError extends HubDownloadError {}
/** No answer, a dropped or stalled connection, or a truncated body, after all retries. */
export class HubNetworkError extends HubDownloadError {}
/** Any other HTTP status. */
export class HubHttpError extends HubDownloadError {}

export interface HubLocation {
  /** Without a trailing slash, e.g. https://huggingface.co. */
  readonly endpoint: string;
  /** `org/name` (or a legacy single-segment `name`). */
  readonly repo: string;
  readonly revision: string;
}

export interface DownloadProgress {
  readonly file: string;
  readonly fileBytes: number;
  /** Null until the server has said. */
  readonly fileTotal: number | null;
  /** Over every file of this download (cached files count as done). */
  readonly doneBytes: number;
  /** Null while some file's size is unknown. */
  readonly totalBytes: number | null;
  readonly fileIndex: number;
  readonly fileCount: number;
}

export interface HubOptions {
  /** The hub address; default HF_ENDPOINT (Node) or https://huggingface.co. */
  endpoint?: string;
  /** Default: a folder in Node, Cache Storage in the browser (see cache.ts). */
  cache?: FileCache;
  /** An access token for gated or private repositories (sent as a Bearer token to the endpoint). */
  token?: string;
  /** Use only the cache: a missing file is an error, nothing is fetched. */
  offline?: boolean;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Failures in a row before giving up (default 5). */
  retries?: number;
  /** First backoff, doubled per failure up to maxRetryDelayMs (defaults 500 and 8000 ms). */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** A connection that delivers nothing for this long is dropped and resumed (default 60 000 ms). */
  idleTimeoutMs?: number;
  fetch?: typeof fetch;
}

export interface HubFiles extends ModelFiles {
  readonly location: HubLocation;
  /** Download several files (cached ones are skipped) with progress over all of them. */
  prefetch(names: readonly string[], onProgress?: (progress: DownloadProgress) => void): Promise<void>;
  /**
   * Download what a model needs: config.json, the tokenizer files present, and the weights. A sharded checkpoint's
   * index is fetched first and its shard names are checked before any shard is requested. Returns the names.
   * Needs the listing endpoint (a plain file mirror without it can still be read file by file with open/text).
   */
  downloadModel(onProgress?: (progress: DownloadProgress) => void): Promise<string[]>;
}

// ---------------------------------------------------------------------------------------------------------------
// Ids, revisions, URLs

const REPO_PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

function specError(input: string, field: string, detail: string): never {
  throw new HubSpecError(input, detail, { field });
}

function checkRepo(input: string, repo: string): string {
  if (repo.includes('..')) specError(input, 'repo id', `repo id ${quoteName(repo)} contains ".."`);
  const parts = repo.split('/');
  if (parts.length > 2) specError(input, 'repo id', `repo id ${quoteName(repo)} has more than one "/" (expected org/name)`);
  for (const part of parts) {
    if (!REPO_PART.test(part)) specError(input, 'repo id', `repo id part ${quoteName(part)} must be letters, digits, ".", "_" or "-", not starting or ending with "." or "-"`);
    if (part.includes('..') || part.includes('--')) specError(input, 'repo id', `repo id part ${quoteName(part)} contains ".." or "--"`);
  }
  if (repo.length > 96) specError(input, 'repo id', `repo id is longer than 96 characters`);
  return repo;
}

function checkRevision(input: string, revision: string): string {
  const bad =
    revision.length === 0 || revision.length > 255
      ? 'must be 1 to 255 characters'
      : !/^[A-Za-z0-9._+\/-]+$/.test(revision)
        ? 'may only hold letters, digits, ".", "_", "+", "-" and "/"'
        : revision.split('/').some((s) => s.length === 0 || s.startsWith('.')) || revision.includes('..')
          ? 'has an empty segment, a segment starting with ".", or ".."'
          : revision.endsWith('.lock')
            ? 'ends with ".lock"'
            : null;
  if (bad !== null) specError(input, 'revision', `revision ${quoteName(revision)} ${bad}`);
  return revision;
}

/** The endpoint to use: the setting, else HF_ENDPOINT (Node), else https://huggingface.co; checked, without a trailing slash. */
export function resolveHubEndpoint(setting?: string | null): string {
  const fromEnv = typeof process !== 'undefined' ? process.env?.HF_ENDPOINT : undefined;
  const value = setting || fromEnv || DEFAULT_HUB_ENDPOINT;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    specError(value, 'endpoint', 'hub endpoint is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') specError(value, 'endpoint', `hub endpoint scheme ${quoteName(url.protocol)} is not http or https`);
  if (url.username || url.password) specError(value, 'endpoint', 'hub endpoint must not hold credentials');
  if (url.search || url.hash) specError(value, 'endpoint', 'hub endpoint must not have a query or fragment');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Parse `org/name`, `org/name@revision` or a hub URL on `endpoint`. HubSpecError for anything else. */
export function parseHubSpec(input: string, endpoint: string = resolveHubEndpoint()): HubLocation {
  if (typeof input !== 'string' || input.length === 0) specError(String(input), 'repo id', 'model id is empty');
  if (input.length > 2048) specError(input.slice(0, 64), 'repo id', 'model id is longer than 2048 characters');
  if (/[\s\u0000-\u001f\u007f]/.test(input)) specError(input, 'repo id', 'model id contains spaces or control characters');
  if (/^[a-z][a-z0-9+.-]*:/i.test(input)) return parseHubUrl(input, endpoint);
  const at = input.indexOf('@');
  if (at !== input.lastIndexOf('@')) specError(input, 'revision', 'model id has more than one "@"');
  const repo = at === -1 ? input : input.slice(0, at);
  const revision = at === -1 ? DEFAULT_REVISION : input.slice(at + 1);
  return { endpoint, repo: checkRepo(input, repo), revision: checkRevision(input, revision) };
}

function parseHubUrl(input: string, endpoint: string): HubLocation {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    specError(input, 'url', 'is not a valid URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') specError(input, 'url', `scheme ${quoteName(url.protocol)} is not allowed (only the hub's http(s) URLs)`);
  if (url.username || url.password) specError(input, 'url', 'URLs with credentials are refused');
  const hub = new URL(endpoint);
  const prefix = hub.pathname.replace(/\/+$/, '');
  if (url.origin !== hub.origin || !(url.pathname === prefix || url.pathname.startsWith(`${prefix}/`))) {
    specError(input, 'url', `host ${quoteName(url.host)} is not the hub endpoint ${quoteName(endpoint)}`);
  }
  let segments: string[];
  try {
    segments = url.pathname.slice(prefix.length).split('/').filter((s) => s.length > 0).map(decodeURIComponent);
  } catch {
    specError(input, 'url', 'has a malformed %-escape');
  }
  if (segments.length < 2) specError(input, 'url', 'does not name a repository (expected /org/name)');
  const repo = checkRepo(input, `${segments[0]}/${segments[1]}`);
  if (segments.length === 2) return { endpoint, repo, revision: DEFAULT_REVISION };
  if (!['tree', 'resolve', 'blob'].includes(segments[2]) || segments.length < 4) {
    specError(input, 'url', `path ${quoteName(url.pathname)} is not a repository, tree, blob or resolve URL`);
  }
  return { endpoint, repo, revision: checkRevision(input, segments[3]) };
}

/** `{endpoint}/{repo}/resolve/{revision}/{file}`. */
export function hubFileUrl(location: HubLocation, file: string): string {
  checkFileName(`${location.repo}@${location.revision}`, file);
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${location.endpoint}/${location.repo}/resolve/${encodeURIComponent(location.revision)}/${path}`;
}

function listingUrl(location: HubLocation): string {
  return `${location.endpoint}/api/models/${location.repo}/revision/${encodeURIComponent(location.revision)}`;
}

/** Cache keys: one tree per endpoint, then repo, revision (encoded: it may hold "/"), file. */
function cacheKeys(location: HubLocation): { file: (name: string) => string; listing: string } {
  const endpoint = new URL(location.endpoint);
  const base = [encodeURIComponent(`${endpoint.host}${endpoint.pathname.replace(/\/+$/, '')}`), location.repo, encodeURIComponent(location.revision)].join('/');
  return { file: (name) => `hub/${base}/${name}`, listing: `listing/${base}` };
}

// ---------------------------------------------------------------------------------------------------------------
// Downloading

class Transient extends Error {
  constructor(
    message: string,
    readonly status: number | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

function parseContentRange(value: string | null): { start: number; total: number | null } | null {
  const match = value === null ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (match === null) return null;
  return { start: Number(match[1]), total: match[3] === '*' ? null : Number(match[3]) };
}

function lengthHeader(response: Response): number | null {
  const value = response.headers.get('content-length');
  if (value === null || !/^\d+$/.test(value)) return null;
  const encoding = response.headers.get('content-encoding');
  return encoding && encoding !== 'identity' ? null : Number(value);
}

interface Tracker {
  /** Called with the bytes held of the current file and its total when known. */
  update(fileBytes: number, fileTotal: number | null): void;
}

/** Everything one hub source shares: location, options, the cache, and the downloads in flight. */
class Downloader {
  private readonly fetchFn: typeof fetch;
  private readonly inflight = new Map<string, Promise<ByteSource>>();

  constructor(
    readonly location: HubLocation,
    readonly cache: FileCache,
    readonly options: HubOptions,
  ) {
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  display(name: string): string {
    const source = `${this.location.repo}@${this.location.revision}`;
    return name === '' ? source : `${source}/${name}`;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { ...extra };
    // Byte ranges must count the file's own bytes: ask for no transfer compression (browsers drop this header).
    headers['accept-encoding'] = 'identity';
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    return headers;
  }

  /** Map a non-success status to the typed error; null for statuses to retry. */
  private statusError(name: string, url: string, status: number, what: string): Error {
    const file = this.display(name);
    if (status === 404) {
      return new HubNotFoundError(file, `${what} not found (HTTP 404): check the repo id, revision and file name; a private repository also answers 404 without a token`, {
        url,
        status,
        retryable: false,
      });
    }
    if (status === 401 || status === 403) {
      return new HubAccessError(
        file,
        `access refused (HTTP ${status}): ${this.location.repo} is gated or private; accept its license on the hub and give an access token`,
        { url, status, retryable: false, field: 'access' },
      );
    }
    if (status === 429 || status >= 500) return new Transient(`HTTP ${status}`, status);
    return new HubHttpError(file, `${what} could not be downloaded (HTTP ${status})`, { url, status, retryable: false });
  }

  /** Run `attempt` until it succeeds, retrying Transient failures with backoff; the final failure is typed. */
  private async withRetries<T>(name: string, url: string, attempt: (progressed: () => void) => Promise<T>): Promise<T> {
    const retries = this.options.retries ?? 5;
    const firstDelay = this.options.retryDelayMs ?? 500;
    const maxDelay = this.options.maxRetryDelayMs ?? 8_000;
    let failures = 0;
    for (;;) {
      let progressed = false;
      try {
        return await attempt(() => {
          progressed = true;
        });
      } catch (error) {
        if (this.options.signal?.aborted) throw this.options.signal.reason;
        if (!(error instanceof Transient)) throw error;
        failures = progressed ? 1 : failures + 1;
        if (failures > retries) {
          const detail = `download failed after ${failures} attempts in a row (${error.message}); try again later`;
          throw new HubNetworkError(this.display(name), detail, { url, status: error.status, retryable: true, cause: error.cause ?? error });
        }
        await sleep(Math.min(maxDelay, firstDelay * 2 ** (failures - 1)), this.options.signal);
      }
    }
  }

  /** fetch with the user's signal and an idle timer; `touch()` restarts the timer. Network failures are Transient. */
  private async request(
    url: string,
    headers: Record<string, string>,
  ): Promise<{ response: Response; signal: AbortSignal; touch: () => void; done: () => void }> {
    const controller = new AbortController();
    const idleMs = this.options.idleTimeoutMs ?? 60_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const touch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new Transient(`no data for ${idleMs} ms`)), idleMs);
    };
    const user = this.options.signal;
    const onAbort = () => controller.abort(user?.reason);
    user?.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      user?.removeEventListener('abort', onAbort);
    };
    touch();
    try {
      const response = await this.fetchFn(url, { headers, signal: controller.signal, redirect: 'follow' });
      return { response, signal: controller.signal, touch, done };
    } catch (error) {
      done();
      throw this.networkFailure(error, controller.signal);
    }
  }

  private networkFailure(error: unknown, signal: AbortSignal): unknown {
    if (this.options.signal?.aborted) return this.options.signal.reason;
    if (signal.aborted && signal.reason instanceof Transient) return signal.reason;
    if (error instanceof Transient) return error;
    const message = error instanceof Error ? `${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ''}` : String(error);
    return new Transient(`network error: ${message}`, null, { cause: error });
  }

  /** A small whole file (the listing), not resumed; retried like a download. */
  async fetchSmall(name: string, url: string, what: string, maxBytes: number): Promise<Uint8Array> {
    return this.withRetries(name, url, async () => {
      const { response, signal, touch, done } = await this.request(url, this.headers());
      try {
        if (!response.ok) throw this.statusError(name, url, response.status, what);
        const chunks: Uint8Array[] = [];
        let size = 0;
        const reader = response.body!.getReader();
        for (;;) {
          const { done: end, value } = await reader.read().catch((error: unknown) => {
            throw this.networkFailure(error, signal);
          });
          if (end) break;
          touch();
          size += value.byteLength;
          if (size > maxBytes) {
            await reader.cancel().catch(() => undefined);
            throw new HubHttpError(this.display(name), `${what} is over ${maxBytes} bytes`, { url, status: response.status, retryable: false });
          }
          chunks.push(value);
        }
        const out = new Uint8Array(size);
        let at = 0;
        for (const chunk of chunks) {
          out.set(chunk, at);
          at += chunk.byteLength;
        }
        return out;
      } finally {
        done();
      }
    });
  }

  /** The cached file, or a download into the cache. Concurrent calls for one file share one download. */
  file(name: string, tracker: Tracker): Promise<ByteSource> {
    const key = cacheKeys(this.location).file(name);
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      pending = this.fileUncached(name, key, tracker).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  private async fileUncached(name: string, key: string, tracker: Tracker): Promise<ByteSource> {
    const cached = await this.cache.get(key);
    if (cached !== null) {
      tracker.update(cached.size, cached.size);
      return cached;
    }
    const url = hubFileUrl(this.location, name);
    if (this.options.offline) {
      throw new HubNotFoundError(this.display(name), `is not in the cache (${this.cache.description}) and downloads are off`, { url, status: null, retryable: false });
    }
    const partial = await this.cache.partial(key);
    try {
      return await this.withRetries(name, url, (progressed) => this.attempt(name, url, partial, tracker, progressed));
    } catch (error) {
      await partial.suspend().catch(() => undefined);
      throw error;
    }
  }

  /** One request: continue the partial from its size, stream into it, commit when complete. */
  private async attempt(name: string, url: string, partial: PartialFile, tracker: Tracker, progressed: () => void): Promise<ByteSource> {
    const resumeFrom = partial.size;
    // `Range: bytes=N-` is a CORS-safelisted header; If-Range is not (it would need a preflight), so a changed
    // file is detected by comparing the 206 response's ETag with the one stored with the partial instead.
    const extra: Record<string, string> = resumeFrom > 0 ? { range: `bytes=${resumeFrom}-` } : {};
    const { response, signal, touch, done } = await this.request(url, this.headers(extra));
    try {
      let total: number | null;
      if (response.status === 206 && resumeFrom > 0) {
        const range = parseContentRange(response.headers.get('content-range'));
        if (range === null || range.start !== resumeFrom) {
          await response.body?.cancel().catch(() => undefined);
          await partial.restart(null);
          throw new Transient(`the server answered a range request with ${quoteName(response.headers.get('content-range') ?? 'no Content-Range')}`, 206);
        }
        const etag = response.headers.get('etag');
        if (etag !== null && partial.validator !== null && etag !== partial.validator) {
          await response.body?.cancel().catch(() => undefined);
          await partial.restart(null);
          throw new Transient('the file changed since the held part was downloaded; starting over', 206);
        }
        total = range.total;
      } else if (response.status === 200) {
        // A fresh download, or a server that ignored the range: start over.
        await partial.restart(response.headers.get('etag'));
        total = lengthHeader(response);
      } else if (response.status === 416) {
        await response.body?.cancel().catch(() => undefined);
        await partial.restart(null);
        throw new Transient('the held part of the file does not fit it any more (HTTP 416)', 416);
      } else {
        await response.body?.cancel().catch(() => undefined);
        throw this.statusError(name, url, response.status, 'file');
      }

      tracker.update(partial.size, total);
      if (response.body === null) throw new Transient('the response has no body', response.status);
      const reader = response.body.getReader();
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          throw this.networkFailure(error, signal);
        }
        if (chunk.done) break;
        touch();
        if (total !== null && partial.size + chunk.value.byteLength > total) {
          await reader.cancel().catch(() => undefined);
          await partial.restart(null);
          throw new Transient(`the server sent more than the ${total} bytes it announced`, response.status);
        }
        await partial.append(chunk.value);
        progressed();
        tracker.update(partial.size, total);
      }
      if (total !== null && partial.size !== total) {
        throw new Transient(`the connection closed after ${partial.size} of ${total} bytes`, response.status);
      }
      return await partial.commit(total);
    } finally {
      done();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The source

const LISTING_MAX_BYTES = 16 * 1024 * 1024;
const OPTIONAL_MODEL_FILES = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'special_tokens_map.json'];

function parseListing(bytes: Uint8Array, file: string): Map<string, number | null> {
  let root: unknown;
  try {
    root = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new FormatError(file, `the repository listing is not JSON (${(error as Error).message})`, { field: 'siblings' });
  }
  const siblings = (root as { siblings?: unknown } | null)?.siblings;
  if (!Array.isArray(siblings)) throw new FormatError(file, 'the repository listing has no siblings array', { field: 'siblings' });
  const files = new Map<string, number | null>();
  for (const entry of siblings) {
    const name = (entry as { rfilename?: unknown } | null)?.rfilename;
    if (typeof name !== 'string' || fileNameProblem(name) !== null) continue; // unusable names cannot be opened anyway
    const size = (entry as { size?: unknown }).size;
    files.set(name, typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? size : null);
  }
  return files;
}

/** A hub repository as ModelFiles. Parsing the spec is the only work done here; nothing is fetched yet. */
export async function hubFiles(spec: string, options: HubOptions = {}): Promise<HubFiles> {
  const location = parseHubSpec(spec, resolveHubEndpoint(options.endpoint));
  const cache = options.cache ?? (await defaultCache());
  const downloader = new Downloader(location, cache, options);
  const name = `${location.repo}@${location.revision}`;
  let listing: Promise<Map<string, number | null>> | null = null;

  const getListing = (): Promise<Map<string, number | null>> => {
    listing ??= (async () => {
      const key = cacheKeys(location).listing;
      const cached = await cache.get(key);
      let bytes: Uint8Array;
      if (cached !== null) bytes = await cached.read(0, cached.size);
      else {
        const url = listingUrl(location);
        if (options.offline) throw new HubNotFoundError(name, `the file listing is not in the cache and downloads are off`, { url, status: null, retryable: false, field: 'listing' });
        bytes = await downloader.fetchSmall('', url, 'repository or revision', LISTING_MAX_BYTES);
        const parsed = parseListing(bytes, name);
        await cache.put(key, bytes);
        return parsed;
      }
      return parseListing(bytes, name);
    })();
    listing.catch(() => (listing = null)); // a failed listing may be retried
    return listing;
  };

  /** Download `names` in order, reporting progress over all of them. */
  const prefetch = async (names: readonly string[], onProgress = options.onProgress): Promise<void> => {
    for (const file of names) checkFileName(name, file);
    const known = new Map<string, number | null>();
    const sizes = await getListing().catch(() => null);
    for (const file of names) known.set(file, sizes?.get(file) ?? null);
    let finished = 0;
    for (let index = 0; index < names.length; index++) {
      const file = names[index];
      const tracker: Tracker = {
        update(fileBytes, fileTotal) {
          if (fileTotal !== null) known.set(file, fileTotal);
          const all = [...known.values()];
          onProgress?.({
            file,
            fileBytes,
            fileTotal,
            doneBytes: finished + fileBytes,
            totalBytes: all.every((n) => n !== null) ? (all as number[]).reduce((a, b) => a + b, 0) : null,
            fileIndex: index,
            fileCount: names.length,
          });
        },
      };
      const source = await downloader.file(file, tracker);
      finished += source.size;
    }
  };

  const open = (file: string): Promise<ByteSource> => {
    checkFileName(name, file);
    return downloader.file(file, {
      update(fileBytes, fileTotal) {
        options.onProgress?.({ file, fileBytes, fileTotal, doneBytes: fileBytes, totalBytes: fileTotal, fileIndex: 0, fileCount: 1 });
      },
    });
  };

  return {
    name,
    location,
    async list() {
      return sortNames((await getListing()).keys());
    },
    open,
    async text(file) {
      return readText(await open(file), downloader.display(file));
    },
    prefetch,
    async downloadModel(onProgress) {
      const available = await getListing();
      const names = ['config.json', ...OPTIONAL_MODEL_FILES.filter((f) => available.has(f))];
      if (available.has(SHARD_INDEX_FILE)) {
        await prefetch([SHARD_INDEX_FILE], onProgress);
        const index = parseShardIndex(await readText(await open(SHARD_INDEX_FILE), SHARD_INDEX_FILE), SHARD_INDEX_FILE);
        for (const shard of index.shards) {
          if (!available.has(shard)) {
            throw new MissingFileError(downloader.display(shard), `is named in ${SHARD_INDEX_FILE} but the repository has no such file`, { field: 'weight_map' });
          }
        }
        names.push(SHARD_INDEX_FILE, ...index.shards);
      } else if (available.has('model.safetensors')) {
        names.push('model.safetensors');
      } else {
        const other = [...available.keys()].filter((f) => /\.(bin|pt|pth|ckpt|gguf)$/.test(f));
        throw new MissingFileError(name, `has no safetensors weights${other.length ? ` (only ${other.slice(0, 3).join(', ')}, which tabtune does not read)` : ''}`, {
          field: 'weights',
        });
      }
      await prefetch(names, onProgress);
      return names;
    },
  };
}
