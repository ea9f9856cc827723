// Share links: a versioned configuration (model, method, run settings, a small inline dataset or a dataset URL,
// and whether it is a demo link that starts training with one click) carried in the URL fragment as `#share=` +
// base64url(deflate-raw(JSON)). Pure data, never code: decoding parses JSON (nothing is evaluated), checks every
// key, enum and number, and caps both the link and the decompressed payload (a decompression bomb is stopped
// while it is read). No DOM: runs in Node 20 and browsers.

import { parseHubSpec, resolveHubEndpoint } from '../io/sources/hub.ts';
import { MAX_SEED } from '../train/packing.ts';
import { SCHEDULE_KINDS, type ScheduleKind } from '../train/schedule.ts';
import { MAX_BATCH_SIZE } from '../worker/protocol.ts';

export const SHARE_VERSION = 1;
export const SHARE_PREFIX = '#share=';
/** Longest accepted link payload (the base64url text after `#share=`), characters. */
export const MAX_LINK_CHARS = 32 * 1024;
/** Largest accepted JSON after decompression, bytes. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
/** Longest accepted dataset URL and target-module list. */
const MAX_URL_CHARS = 2048;
const MAX_TARGET_MODULES = 64;

export type ShareModel = { kind: 'demo' } | { kind: 'hub'; id: string; endpoint?: string };

export type ShareMethod =
  | { kind: 'lora' | 'qlora'; r: number; alpha: number; dropout: number; useRslora: boolean; targetModules: string[] | null }
  | { kind: 'adapter'; reductionFactor: number; dropout: number; placement: 'pfeiffer' | 'houlsby' };

export interface ShareTrain {
  steps: number;
  seqLength: number;
  lr: number;
  /** Rows per step; absent means 1 (links made before it existed). */
  batchSize?: number;
  /**
   * The learning-rate schedule, warm-up steps (fewer than steps) and seed; each absent when at its default
   * ('constant', 0, 0), so links made before they existed, and links that keep the defaults, read the same.
   */
  schedule?: ScheduleKind;
  warmupSteps?: number;
  seed?: number;
}

export type ShareData = { inline: string } | { url: string };

export interface ShareConfig {
  v: 1;
  model: ShareModel;
  method: ShareMethod;
  train: ShareTrain;
  data?: ShareData;
  /**
   * A demo link: one click loads the model, sets up method and data, and starts training. Optional (links made
   * before it existed have no such key and are plain links); a demo link needs `data`.
   */
  demo?: boolean;
}

/** A link that cannot be used; `field` names the part at fault (e.g. "method.r", "link"). */
export class ShareLinkError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`Share link: ${field}: ${message}`);
    this.name = 'ShareLinkError';
    this.field = field;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation

type Plain = Record<string, unknown>;

function object(value: unknown, field: string, required: readonly string[], optional: readonly string[] = []): Plain {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ShareLinkError(field, 'must be an object');
  const record = value as Plain;
  for (const key of Object.keys(record)) {
    if (!required.includes(key) && !optional.includes(key)) throw new ShareLinkError(field ? `${field}.${key}` : key, 'unknown key');
  }
  for (const key of required) {
    if (!Object.hasOwn(record, key)) throw new ShareLinkError(field ? `${field}.${key}` : key, 'missing');
  }
  return record;
}

function oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new ShareLinkError(field, `must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

function number(value: unknown, field: string, min: number, max: number, options: { integer?: boolean; exclusiveMin?: boolean } = {}): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ShareLinkError(field, 'must be a finite number');
  if (options.integer && !Number.isInteger(value)) throw new ShareLinkError(field, 'must be a whole number');
  if (options.exclusiveMin ? value <= min : value < min) throw new ShareLinkError(field, `must be ${options.exclusiveMin ? 'above' : 'at least'} ${min}`);
  if (value > max) throw new ShareLinkError(field, `must be at most ${max}`);
  return value;
}

function boolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw new ShareLinkError(field, 'must be true or false');
  return value;
}

function text(value: unknown, field: string, maxChars: number): string {
  if (typeof value !== 'string') throw new ShareLinkError(field, 'must be a string');
  if (value.length > maxChars) throw new ShareLinkError(field, `is longer than ${maxChars} characters`);
  return value;
}

function checkModel(value: unknown): ShareModel {
  const kind = oneOf(object(value, 'model', ['kind'], ['id', 'endpoint']).kind, 'model.kind', ['demo', 'hub'] as const);
  if (kind === 'demo') {
    object(value, 'model', ['kind']);
    return { kind };
  }
  const record = object(value, 'model', ['kind', 'id'], ['endpoint']);
  const id = text(record.id, 'model.id', 256);
  // A shared id is `org/name` or `org/name@revision`, never a URL: the host comes only from `endpoint`.
  if (/^[a-z][a-z0-9+.-]*:/i.test(id) || id.startsWith('//')) throw new ShareLinkError('model.id', 'must be org/name or org/name@revision, not a URL');
  let endpoint: string | undefined;
  if (record.endpoint !== undefined) {
    const raw = text(record.endpoint, 'model.endpoint', MAX_URL_CHARS);
    if (raw === '') throw new ShareLinkError('model.endpoint', 'is empty');
    try {
      endpoint = resolveHubEndpoint(raw);
    } catch (error) {
      throw new ShareLinkError('model.endpoint', error instanceof Error ? error.message : String(error));
    }
  }
  try {
    parseHubSpec(id, endpoint ?? resolveHubEndpoint('https://huggingface.co'));
  } catch (error) {
    throw new ShareLinkError('model.id', error instanceof Error ? error.message : String(error));
  }
  return endpoint === undefined ? { kind, id } : { kind, id, endpoint };
}

function checkMethod(value: unknown): ShareMethod {
  const kind = oneOf(object(value, 'method', ['kind'], ['r', 'alpha', 'dropout', 'useRslora', 'targetModules', 'reductionFactor', 'placement']).kind, 'method.kind', [
    'lora',
    'qlora',
    'adapter',
  ] as const);
  if (kind === 'adapter') {
    const record = object(value, 'method', ['kind', 'reductionFactor', 'dropout', 'placement']);
    return {
      kind,
      reductionFactor: number(record.reductionFactor, 'method.reductionFactor', 1, 1024, { integer: true }),
      dropout: number(record.dropout, 'method.dropout', 0, 0.9),
      placement: oneOf(record.placement, 'method.placement', ['pfeiffer', 'houlsby'] as const),
    };
  }
  const record = object(value, 'method', ['kind', 'r', 'alpha', 'dropout', 'useRslora', 'targetModules']);
  let targetModules: string[] | null = null;
  if (record.targetModules !== null) {
    if (!Array.isArray(record.targetModules)) throw new ShareLinkError('method.targetModules', 'must be a list of module names or null');
    if (record.targetModules.length === 0 || record.targetModules.length > MAX_TARGET_MODULES) {
      throw new ShareLinkError('method.targetModules', `must hold 1 to ${MAX_TARGET_MODULES} names`);
    }
    targetModules = record.targetModules.map((name, i) => {
      const checked = text(name, `method.targetModules[${i}]`, 128);
      if (!/^[A-Za-z0-9_.]+$/.test(checked)) throw new ShareLinkError(`method.targetModules[${i}]`, 'may only hold letters, digits, "_" and "."');
      return checked;
    });
  }
  return {
    kind,
    r: number(record.r, 'method.r', 1, 1024, { integer: true }),
    alpha: number(record.alpha, 'method.alpha', 0, 1e4, { exclusiveMin: true }),
    dropout: number(record.dropout, 'method.dropout', 0, 0.9),
    useRslora: boolean(record.useRslora, 'method.useRslora'),
    targetModules,
  };
}

function checkTrain(value: unknown): ShareTrain {
  const record = object(value, 'train', ['steps', 'seqLength', 'lr'], ['batchSize', 'schedule', 'warmupSteps', 'seed']);
  const train: ShareTrain = {
    steps: number(record.steps, 'train.steps', 1, 100_000, { integer: true }),
    seqLength: number(record.seqLength, 'train.seqLength', 2, 4096, { integer: true }),
    lr: number(record.lr, 'train.lr', 0, 1, { exclusiveMin: true }),
  };
  if (Object.hasOwn(record, 'batchSize')) train.batchSize = number(record.batchSize, 'train.batchSize', 1, MAX_BATCH_SIZE, { integer: true });
  if (Object.hasOwn(record, 'schedule')) train.schedule = oneOf(record.schedule, 'train.schedule', SCHEDULE_KINDS);
  if (Object.hasOwn(record, 'warmupSteps')) {
    train.warmupSteps = number(record.warmupSteps, 'train.warmupSteps', 0, 100_000, { integer: true });
    if (train.warmupSteps >= train.steps) throw new ShareLinkError('train.warmupSteps', `must be fewer than the ${train.steps} steps`);
  }
  if (Object.hasOwn(record, 'seed')) train.seed = number(record.seed, 'train.seed', 0, MAX_SEED, { integer: true });
  return train;
}

function checkData(value: unknown): ShareData {
  const record = object(value, 'data', [], ['inline', 'url']);
  const keys = Object.keys(record);
  if (keys.length !== 1) throw new ShareLinkError('data', 'must hold exactly one of inline or url');
  if (keys[0] === 'inline') return { inline: text(record.inline, 'data.inline', MAX_PAYLOAD_BYTES) };
  const raw = text(record.url, 'data.url', MAX_URL_CHARS);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ShareLinkError('data.url', 'is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ShareLinkError('data.url', `scheme ${url.protocol} is not http: or https:`);
  if (url.username || url.password) throw new ShareLinkError('data.url', 'must not hold a user name or password');
  return { url: url.href };
}

/** Check a parsed value as a ShareConfig; returns a fresh, normalised copy (no key the schema does not name). */
export function checkShareConfig(value: unknown): ShareConfig {
  const record = object(value, '', ['v', 'model', 'method', 'train'], ['data', 'demo']);
  if (record.v !== SHARE_VERSION) throw new ShareLinkError('v', `version ${JSON.stringify(record.v)} is not supported (expected ${SHARE_VERSION})`);
  const config: ShareConfig = { v: 1, model: checkModel(record.model), method: checkMethod(record.method), train: checkTrain(record.train) };
  if (record.data !== undefined) config.data = checkData(record.data);
  if (record.demo !== undefined) {
    config.demo = boolean(record.demo, 'demo');
    if (config.demo && !config.data) throw new ShareLinkError('demo', 'a demo link starts training, so it needs a dataset (data)');
  }
  return config;
}

// ---------------------------------------------------------------------------------------------------------------
// Bytes

function toBase64Url(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(encoded: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(encoded)) throw new ShareLinkError('link', 'holds characters outside base64url (double-encoded or altered?)');
  if (encoded.length % 4 === 1) throw new ShareLinkError('link', 'is truncated (not a whole base64url text)');
  const binary = atob(encoded.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (encoded.length % 4)) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function readCapped(stream: ReadableStream<Uint8Array>, cap: number): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    let next: ReadableStreamReadResult<Uint8Array>;
    try {
      next = await reader.read();
    } catch {
      throw new ShareLinkError('link', 'is not valid compressed data (truncated or altered?)');
    }
    if (next.done) break;
    total += next.value.length;
    if (total > cap) {
      await reader.cancel().catch(() => undefined);
      throw new ShareLinkError('payload', `expands to more than ${cap} bytes`);
    }
    chunks.push(next.value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Compress with deflate-raw; no cap (the caller decides what it feeds). Exported for tests that craft links. */
export async function deflateRaw(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream('deflate-raw'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The link payload for raw JSON text, without any checks (for tests that craft hostile links). */
export async function encodeRawPayload(json: string): Promise<string> {
  return toBase64Url(await deflateRaw(new TextEncoder().encode(json)));
}

// ---------------------------------------------------------------------------------------------------------------
// Public API

/** The fragment (`#share=...`) for a configuration; checks it first and refuses one over the link cap. */
export async function encodeShareConfig(config: ShareConfig): Promise<string> {
  const checked = checkShareConfig(config);
  const json = new TextEncoder().encode(JSON.stringify(checked));
  if (json.length > MAX_PAYLOAD_BYTES) throw new ShareLinkError('payload', `is ${json.length} bytes, over the ${MAX_PAYLOAD_BYTES}-byte cap (share the dataset by URL)`);
  const encoded = toBase64Url(await deflateRaw(json));
  if (encoded.length > MAX_LINK_CHARS) throw new ShareLinkError('link', `would be ${encoded.length} characters, over the ${MAX_LINK_CHARS}-character cap (share the dataset by URL)`);
  return SHARE_PREFIX + encoded;
}

/** Decode `#share=...` (or the bare payload after it); ShareLinkError for anything that is not a valid configuration. */
export async function decodeShareConfig(fragment: string): Promise<ShareConfig> {
  if (typeof fragment !== 'string') throw new ShareLinkError('link', 'is not text');
  const encoded = fragment.startsWith(SHARE_PREFIX) ? fragment.slice(SHARE_PREFIX.length) : fragment.startsWith('share=') ? fragment.slice(6) : fragment;
  if (encoded.length === 0) throw new ShareLinkError('link', 'is empty');
  if (encoded.length > MAX_LINK_CHARS) throw new ShareLinkError('link', `is ${encoded.length} characters, over the ${MAX_LINK_CHARS}-character cap`);
  const compressed = fromBase64Url(encoded);
  const stream = new Blob([compressed as BlobPart]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  const bytes = await readCapped(stream, MAX_PAYLOAD_BYTES);
  let json: string;
  try {
    json = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ShareLinkError('payload', 'is not UTF-8 text');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new ShareLinkError('payload', 'is not JSON (truncated or altered?)');
  }
  return checkShareConfig(parsed);
}
