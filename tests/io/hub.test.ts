// Hub downloads against a local server with the hub layout (tests/helpers/hubServer.ts): nothing here reaches
// the internet. The server can drop a connection mid-file, stall, answer 404/401/403/5xx, and send slowly, and
// it records every request so the tests can check ranges and that nothing was fetched.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadChatTemplate } from '../../src/io/chatTemplate.ts';
import { ShardIndexError } from '../../src/io/errors.ts';
import { cacheStorageCache, CacheSizeError, folderCache, memoryCache, type CacheStorageLike, type FileCache } from '../../src/io/sources/cache.ts';
import {
  HubAccessError,
  hubFileUrl,
  hubFiles,
  HubNetworkError,
  HubNotFoundError,
  HubSpecError,
  parseHubSpec,
  resolveHubEndpoint,
  type DownloadProgress,
  type HubOptions,
} from '../../src/io/sources/hub.ts';
import { MissingFileError, textIfPresent } from '../../src/io/sources/types.ts';
import { loadTokenizer } from '../../src/io/tokenizer.ts';
import { TestHub } from '../helpers/hubServer.ts';

// ---------------------------------------------------------------------------------------------------------------
// Fixtures

const FIXTURES = new URL('../fixtures/tokenizers/llama/', import.meta.url);
const fixture = (file: string) => readFileSync(new URL(file, FIXTURES));
const pattern = (n: number, salt = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + salt + (i >> 8)) & 0xff);

const BIG = pattern(300_000);
const SHARD_1 = pattern(70_000, 1);
const SHARD_2 = pattern(50_000, 2);

function modelFiles(): Record<string, string | Uint8Array> {
  return {
    'config.json': '{"model_type": "llama", "bos_token_id": 1, "eos_token_id": 2}',
    'tokenizer.json': fixture('tokenizer.json'),
    'tokenizer_config.json': fixture('tokenizer_config.json'),
    'generation_config.json': fixture('generation_config.json'),
    'chat_template.jinja': fixture('chat_template.jinja'),
    'model.safetensors.index.json': JSON.stringify({
      metadata: { total_size: 120_000 },
      weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' },
    }),
    'model-00001-of-00002.safetensors': SHARD_1,
    'model-00002-of-00002.safetensors': SHARD_2,
    'big.bin': BIG,
    'sub/dir/notes.txt': 'nested',
    'README.md': '# tiny',
  };
}

let hub: TestHub;
let cacheDir: string;
let cache: FileCache;
const scratch: string[] = [];

beforeEach(async () => {
  hub = new TestHub();
  hub.add('tiny/llama', modelFiles());
  hub.add('tiny/llama', { 'config.json': '{"pr": 1}' }, 'refs/pr/1');
  await hub.start();
  cacheDir = await mkdtemp(join(tmpdir(), 'tabtune-hub-'));
  scratch.push(cacheDir);
  cache = await folderCache(cacheDir);
});

afterEach(async () => {
  await hub.stop();
});

afterAll(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

const options = (extra: HubOptions = {}): HubOptions => ({ endpoint: hub.url, cache, retryDelayMs: 1, idleTimeoutMs: 1_000, ...extra });

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

async function readAll(source: { size: number; read(o: number, l: number): Promise<Uint8Array> }): Promise<Uint8Array> {
  return source.read(0, source.size);
}

/** Compare bytes by length and digest (vitest's element-wise toEqual on 300 kB arrays takes seconds). */
const digest = (bytes: Uint8Array) => `${bytes.byteLength} bytes, sha256 ${createHash('sha256').update(bytes).digest('hex')}`;
async function expectContent(source: Promise<{ size: number; read(o: number, l: number): Promise<Uint8Array> }>, expected: Uint8Array): Promise<void> {
  expect(digest(await readAll(await source))).toBe(digest(expected));
}

// ---------------------------------------------------------------------------------------------------------------

describe('repo ids, revisions and URLs', () => {
  const endpoint = 'https://huggingface.co';

  it('parses ids, revisions and hub URLs', () => {
    expect(parseHubSpec('HuggingFaceTB/SmolLM2-135M', endpoint)).toEqual({ endpoint, repo: 'HuggingFaceTB/SmolLM2-135M', revision: 'main' });
    expect(parseHubSpec('gpt2', endpoint).repo).toBe('gpt2');
    expect(parseHubSpec('Qwen/Qwen2.5-0.5B@v1.0', endpoint).revision).toBe('v1.0');
    expect(parseHubSpec('org/name@refs/pr/12', endpoint).revision).toBe('refs/pr/12');
    expect(parseHubSpec('org/name@0123456789abcdef0123456789abcdef01234567', endpoint).revision).toHaveLength(40);
    expect(parseHubSpec('https://huggingface.co/org/name', endpoint)).toEqual({ endpoint, repo: 'org/name', revision: 'main' });
    expect(parseHubSpec('https://huggingface.co/org/name/tree/dev', endpoint).revision).toBe('dev');
    expect(parseHubSpec('https://huggingface.co/org/name/resolve/refs%2Fpr%2F3/config.json', endpoint).revision).toBe('refs/pr/3');
    expect(parseHubSpec('https://huggingface.co/org/name/blob/main/README.md', endpoint).repo).toBe('org/name');
    expect(parseHubSpec('http://127.0.0.1:8080/mirror/org/name', 'http://127.0.0.1:8080/mirror').repo).toBe('org/name');
  });

  it('builds the resolve URL layout', () => {
    expect(hubFileUrl({ endpoint, repo: 'org/name', revision: 'refs/pr/1' }, 'sub dir/file.json')).toBe('https://huggingface.co/org/name/resolve/refs%2Fpr%2F1/sub%20dir/file.json');
    expect(() => hubFileUrl({ endpoint, repo: 'org/name', revision: 'main' }, '../x')).toThrow(/refused/);
  });

  it('refuses traversal, other schemes, other hosts and credentials, before any request', async () => {
    const bad: [string, RegExp][] = [
      ['org/../name', /contains "\.\."/],
      ['../name', /contains "\.\."/],
      ['org/name/extra', /more than one "\/"/],
      ['org/na..me', /contains "\.\."/],
      ['org/na--me', /contains "\.\." or "--"/],
      ['-org/name', /repo id part/],
      ['org/name@', /revision ""/],
      ['org/name@a@b', /more than one "@"/],
      ['org/name@refs/../main', /revision/],
      ['org/name@.hidden', /revision/],
      ['org name', /spaces/],
      ['javascript:alert(1)', /scheme "javascript:"/],
      ['data:text/plain,hi', /scheme "data:"/],
      ['file:///etc/passwd', /scheme "file:"/],
      ['https://evil.example/org/name', /host "evil.example" is not the hub endpoint/],
      ['https://huggingface.co.evil.example/org/name', /is not the hub endpoint/],
      ['https://user:pw@huggingface.co/org/name', /credentials/],
      ['https://huggingface.co/org', /does not name a repository/],
      ['https://huggingface.co/org/name/settings/x', /not a repository, tree, blob or resolve URL/],
      ['', /empty/],
    ];
    const fetchSpy = async (): Promise<Response> => {
      throw new Error('fetch must not be called');
    };
    for (const [input, says] of bad) {
      const error = await rejection(hubFiles(input, { endpoint, cache: memoryCache(), fetch: fetchSpy }));
      expect(error, input).toBeInstanceOf(HubSpecError);
      expect(error.message, input).toMatch(says);
    }
  });

  it('takes the endpoint from the setting, else HF_ENDPOINT, else huggingface.co', () => {
    const saved = process.env.HF_ENDPOINT;
    try {
      delete process.env.HF_ENDPOINT;
      expect(resolveHubEndpoint()).toBe('https://huggingface.co');
      process.env.HF_ENDPOINT = 'http://127.0.0.1:9/hf/';
      expect(resolveHubEndpoint()).toBe('http://127.0.0.1:9/hf');
      expect(resolveHubEndpoint('https://mirror.example')).toBe('https://mirror.example');
      for (const bad of ['ftp://x', 'javascript:alert(1)', 'https://u:p@x', 'https://x/?q=1', 'not a url']) {
        expect(() => resolveHubEndpoint(bad), bad).toThrow(HubSpecError);
      }
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
  });
});

describe('downloads', () => {
  it('downloads into the cache with progress events, then serves from the cache with the server stopped', async () => {
    hub.fault('big.bin', { kind: 'slow', chunk: 32_768, delayMs: 5 });
    const events: DownloadProgress[] = [];
    const files = await hubFiles('tiny/llama', options({ onProgress: (p) => events.push(p) }));
    await expectContent(files.open('big.bin'), BIG);

    expect(events.length).toBeGreaterThanOrEqual(Math.ceil(BIG.length / 65_536));
    expect(events.every((e) => e.file === 'big.bin' && e.fileTotal === BIG.length && e.totalBytes === BIG.length)).toBe(true);
    for (let i = 1; i < events.length; i++) expect(events[i].fileBytes).toBeGreaterThanOrEqual(events[i - 1].fileBytes);
    expect(events.at(-1)!.fileBytes).toBe(BIG.length);
    expect(events.some((e) => e.fileBytes > 0 && e.fileBytes < BIG.length)).toBe(true);

    await hub.stop();
    const offline = await hubFiles('tiny/llama', options({ fetch: () => Promise.reject(new Error('offline')) }));
    await expectContent(offline.open('big.bin'), BIG);
    expect(hub.requestsFor('big.bin')).toHaveLength(1);
  });

  it('resumes with a Range request after the connection drops mid-file', async () => {
    hub.fault('big.bin', { kind: 'drop', after: 100_000 });
    const events: DownloadProgress[] = [];
    const files = await hubFiles('tiny/llama', options({ onProgress: (p) => events.push(p) }));
    await expectContent(files.open('big.bin'), BIG);
    const [first, second] = hub.requestsFor('big.bin');
    expect(hub.requestsFor('big.bin')).toHaveLength(2);
    expect(first.range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(second.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(100_000);
    expect(second.status).toBe(206);
    // Progress never went back to 0.
    for (let i = 1; i < events.length; i++) expect(events[i].fileBytes).toBeGreaterThanOrEqual(events[i - 1].fileBytes);
  });

  it('a failed download leaves no complete cache entry, and the next load resumes from the partial', async () => {
    hub.fault('big.bin', { kind: 'drop', after: 120_000 });
    const first = await hubFiles('tiny/llama', options({ retries: 0 }));
    const error = await rejection(first.open('big.bin'));
    expect(error).toBeInstanceOf(HubNetworkError);
    expect((error as HubNetworkError).retryable).toBe(true);
    expect(error.message).toMatch(/^"tiny\/llama@main\/big.bin": download failed after 1 attempts in a row/);
    expect(await readdir(join(cacheDir, 'partial'), { recursive: true })).toContain(join('hub', encodeURIComponent(new URL(hub.url).host), 'tiny', 'llama', 'main', 'big.bin', 'data'));
    const fresh = await folderCache(cacheDir);
    expect(await fresh.get(`hub/${encodeURIComponent(new URL(hub.url).host)}/tiny/llama/main/big.bin`)).toBeNull();

    const second = await hubFiles('tiny/llama', options({ cache: fresh }));
    await expectContent(second.open('big.bin'), BIG);
    const resumed = hub.requestsFor('big.bin').at(-1)!;
    expect(Number(/^bytes=(\d+)-$/.exec(resumed.range ?? '')?.[1])).toBeGreaterThan(0);
  });

  it('restarts from zero when the file changed since the partial was written (ETag of the 206 differs)', async () => {
    hub.fault('big.bin', { kind: 'drop', after: 100_000 });
    expect(await rejection((await hubFiles('tiny/llama', options({ retries: 0 }))).open('big.bin'))).toBeInstanceOf(HubNetworkError);
    const changed = pattern(200_000, 9);
    hub.repos.get('tiny/llama@main')!.set('big.bin', changed);
    const files = await hubFiles('tiny/llama', options());
    await expectContent(files.open('big.bin'), changed);
    const [, resumed, restarted] = hub.requestsFor('big.bin');
    expect(resumed).toMatchObject({ status: 206, range: expect.stringMatching(/^bytes=[1-9]\d*-$/) });
    expect(restarted).toMatchObject({ status: 200, range: undefined });
    expect(hub.requestsFor('big.bin')).toHaveLength(3);
  });

  it('a stalled connection is dropped after the idle timeout and resumed', async () => {
    hub.fault('big.bin', { kind: 'stall', after: 50_000 });
    const files = await hubFiles('tiny/llama', options({ idleTimeoutMs: 200 }));
    await expectContent(files.open('big.bin'), BIG);
    expect(hub.requestsFor('big.bin')).toHaveLength(2);
    expect(hub.requestsFor('big.bin')[1].range).toMatch(/^bytes=[1-9]\d*-$/);
  });

  it('retries 5xx and 429 with backoff, then gives a retryable error', async () => {
    hub.fault('config.json', { kind: 'status', status: 500 }, { kind: 'status', status: 503 }, { kind: 'status', status: 429 });
    const files = await hubFiles('tiny/llama', options());
    expect(await files.text('config.json')).toContain('llama');
    expect(hub.requestsFor('config.json').map((r) => r.status)).toEqual([500, 503, 429, 200]);

    hub.fault('README.md', ...Array.from({ length: 10 }, () => ({ kind: 'status', status: 502 }) as const));
    const error = await rejection((await hubFiles('tiny/llama', options({ retries: 2 }))).text('README.md'));
    expect(error).toBeInstanceOf(HubNetworkError);
    expect(error).toMatchObject({ retryable: true, status: 502 });
    expect(hub.requestsFor('README.md')).toHaveLength(3);
  });

  it('404 is a MissingFileError, not retried; optional files read as absent', async () => {
    const files = await hubFiles('tiny/llama', options());
    const error = await rejection(files.open('nope.json'));
    expect(error).toBeInstanceOf(HubNotFoundError);
    expect(error).toBeInstanceOf(MissingFileError);
    expect(error).toMatchObject({ status: 404, retryable: false, file: 'tiny/llama@main/nope.json' });
    expect(error.message).toMatch(/not found \(HTTP 404\)/);
    expect(hub.requestsFor('nope.json')).toHaveLength(1);
    expect(await textIfPresent(files, 'special_tokens_map.json')).toBeNull();
    const noRepo = await rejection((await hubFiles('tiny/missing', options())).list());
    expect(noRepo).toBeInstanceOf(HubNotFoundError);
    expect((noRepo as HubNotFoundError).file).toBe('tiny/missing@main');
  });

  it('403 and 401 say gated or private, are not retried, and a token is sent', async () => {
    hub.add('meta/gated', { 'config.json': '{}' });
    hub.gated.add('meta/gated');
    const gated = await rejection((await hubFiles('meta/gated', options())).text('config.json'));
    expect(gated).toBeInstanceOf(HubAccessError);
    expect(gated).toMatchObject({ status: 403, retryable: false, field: 'access' });
    expect(gated.message).toMatch(/meta\/gated is gated or private; accept its license on the hub and give an access token/);
    expect(hub.requestsFor('config.json').filter((r) => r.path.startsWith('/meta/'))).toHaveLength(1);

    hub.add('me/private', { 'config.json': '{"secret": true}' });
    hub.privateRepos.set('me/private', 'hf_test_token');
    expect(await rejection((await hubFiles('me/private', options())).text('config.json'))).toMatchObject({ status: 401 });
    expect(await (await hubFiles('me/private', options({ token: 'hf_test_token' }))).text('config.json')).toBe('{"secret": true}');
  });

  it('a server that is not there: retryable network error after the retries', async () => {
    const endpoint = hub.url;
    await hub.stop();
    const error = await rejection((await hubFiles('tiny/llama', options({ endpoint, retries: 1 }))).text('config.json'));
    expect(error).toBeInstanceOf(HubNetworkError);
    expect(error).toMatchObject({ retryable: true, status: null });
    expect(error.message).toMatch(/network error/);
  });

  it('cancellation stops the download and keeps the partial', async () => {
    hub.fault('big.bin', { kind: 'slow', chunk: 16_384, delayMs: 20 });
    const controller = new AbortController();
    const files = await hubFiles('tiny/llama', options({ signal: controller.signal, onProgress: (p) => p.fileBytes > 40_000 && controller.abort() }));
    const error = await rejection(files.open('big.bin'));
    expect(error.name).toBe('AbortError');
    expect(await cache.get(`hub/${encodeURIComponent(new URL(hub.url).host)}/tiny/llama/main/big.bin`)).toBeNull();
  });

  it('concurrent opens of one file share one download', async () => {
    hub.fault('big.bin', { kind: 'slow', chunk: 65_536, delayMs: 5 });
    const files = await hubFiles('tiny/llama', options());
    const [a, b] = await Promise.all([files.open('big.bin'), files.open('big.bin')]);
    await expectContent(Promise.resolve(a), BIG);
    await expectContent(Promise.resolve(b), BIG);
    expect(hub.requestsFor('big.bin')).toHaveLength(1);
  });

  it('revisions with "/" and nested file names travel URL-encoded', async () => {
    const pr = await hubFiles('tiny/llama@refs/pr/1', options());
    expect(await pr.text('config.json')).toBe('{"pr": 1}');
    expect(hub.requestsFor('config.json').at(-1)!.path).toBe('/tiny/llama/resolve/refs%2Fpr%2F1/config.json');
    expect(await pr.list()).toEqual(['config.json']);
    expect(hub.log.some((r) => r.path === '/api/models/tiny/llama/revision/refs%2Fpr%2F1')).toBe(true);
    const main = await hubFiles(`${hub.url}/tiny/llama/tree/main`, options());
    expect(await main.text('sub/dir/notes.txt')).toBe('nested');
  });

  it('HF_ENDPOINT points the hub at the local server', async () => {
    const saved = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = hub.url;
    try {
      const files = await hubFiles('tiny/llama', { cache, retryDelayMs: 1 });
      expect(files.location.endpoint).toBe(hub.url);
      expect(await files.text('config.json')).toContain('llama');
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
  });
});

describe('whole models', () => {
  it('downloadModel: index first, then everything with overall progress; the second load is offline', async () => {
    const events: DownloadProgress[] = [];
    const files = await hubFiles('tiny/llama', options());
    const names = await files.downloadModel((p) => events.push(p));
    expect(names).toEqual([
      'config.json',
      'generation_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'chat_template.jinja',
      'model.safetensors.index.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    const downloadedPaths = hub.log.filter((r) => r.path.includes('/resolve/')).map((r) => r.path.split('/').at(-1));
    expect(downloadedPaths.indexOf('model.safetensors.index.json')).toBeLessThan(downloadedPaths.indexOf('model-00001-of-00002.safetensors'));
    expect(downloadedPaths).not.toContain('big.bin');
    const total = names.reduce((n, name) => n + hub.repos.get('tiny/llama@main')!.get(name)!.byteLength, 0);
    const overall = events.filter((e) => e.fileCount === names.length);
    expect(overall.every((e) => e.totalBytes === total)).toBe(true);
    expect(overall.at(-1)!.doneBytes).toBe(total);
    for (let i = 1; i < overall.length; i++) expect(overall[i].doneBytes).toBeGreaterThanOrEqual(overall[i - 1].doneBytes);

    await hub.stop();
    for (const extra of [{}, { offline: true }]) {
      const again = await hubFiles('tiny/llama', options({ ...extra, fetch: () => Promise.reject(new Error('offline')) }));
      expect(await again.list()).toContain('model-00002-of-00002.safetensors');
      await expectContent(again.open('model-00002-of-00002.safetensors'), SHARD_2);
      const tokenizer = await loadTokenizer(again);
      expect(tokenizer.special.eosIds).toEqual([2, 308]);
      const chat = await loadChatTemplate(again, tokenizer);
      expect(chat!.render([{ role: 'user', content: 'hello' }])).toBe('<s>[INST] hello [/INST]');
    }
    const notCached = await rejection((await hubFiles('tiny/llama', options({ offline: true }))).open('big.bin'));
    expect(notCached).toBeInstanceOf(HubNotFoundError);
    expect(notCached.message).toMatch(/not in the cache/);
  });

  it('refuses bad shard names in the index before requesting any shard', async () => {
    hub.add('tiny/evil', {
      'config.json': '{}',
      'model.safetensors.index.json': JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: '../../secret.safetensors' } }),
      'model-00001-of-00002.safetensors': SHARD_1,
    });
    const error = await rejection((await hubFiles('tiny/evil', options())).downloadModel());
    expect(error).toBeInstanceOf(ShardIndexError);
    expect(error.message).toMatch(/"\.\.\/\.\.\/secret\.safetensors", which has a path separator; refused/);
    const requested = hub.log.map((r) => r.path);
    expect(requested.some((p) => p.includes('secret'))).toBe(false);
    expect(requested.some((p) => p.endsWith('.safetensors'))).toBe(false);
  });

  it('a shard the index names but the repository lacks; pickle-only repositories', async () => {
    hub.add('tiny/partial', {
      'config.json': '{}',
      'model.safetensors.index.json': JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }),
      'model-00001-of-00002.safetensors': SHARD_1,
    });
    const missing = await rejection((await hubFiles('tiny/partial', options())).downloadModel());
    expect(missing).toBeInstanceOf(MissingFileError);
    expect(missing.message).toMatch(/model-00002-of-00002.safetensors": is named in model.safetensors.index.json but the repository has no such file/);
    hub.add('old/pickle', { 'config.json': '{}', 'pytorch_model.bin': 'PK' });
    const pickle = await rejection((await hubFiles('old/pickle', options())).downloadModel());
    expect(pickle.message).toMatch(/has no safetensors weights \(only pytorch_model.bin, which tabtune does not read\)/);
  });
});

describe('caches', () => {
  /** A Map-backed CacheStorage following the Cache API contract (Node has no `caches`). */
  function fakeCacheStorage(): CacheStorageLike & { entries: Map<string, { body: ArrayBuffer; headers: [string, string][] }> } {
    const entries = new Map<string, { body: ArrayBuffer; headers: [string, string][] }>();
    return {
      entries,
      async open() {
        return {
          async match(request: string) {
            const entry = entries.get(request);
            return entry && new Response(entry.body.slice(0), { headers: entry.headers });
          },
          async put(request: string, response: Response) {
            entries.set(request, { body: await response.arrayBuffer(), headers: [...response.headers] });
          },
          async delete(request: string) {
            return entries.delete(request);
          },
        };
      },
    };
  }

  it('Cache Storage: downloads, resumes after a reload from the stored partial, and serves offline', async () => {
    const storage = fakeCacheStorage();
    hub.fault('big.bin', { kind: 'drop', after: 90_000 });
    const first = await hubFiles('tiny/llama', options({ cache: await cacheStorageCache(storage), retries: 0 }));
    expect(await rejection(first.open('big.bin'))).toBeInstanceOf(HubNetworkError);
    const partialKey = [...storage.entries.keys()].find((k) => k.includes('/partial/'));
    expect(partialKey).toMatch(/big\.bin$/);
    expect([...storage.entries.keys()].some((k) => k.includes('/files/') && k.endsWith('big.bin'))).toBe(false);

    const reloaded = await hubFiles('tiny/llama', options({ cache: await cacheStorageCache(storage) }));
    await expectContent(reloaded.open('big.bin'), BIG);
    expect(Number(/^bytes=(\d+)-$/.exec(hub.requestsFor('big.bin')[1].range ?? '')?.[1])).toBeGreaterThan(0);
    expect([...storage.entries.keys()].some((k) => k.includes('/partial/'))).toBe(false);

    await hub.stop();
    const offline = await hubFiles('tiny/llama', options({ cache: await cacheStorageCache(storage), offline: true }));
    await expectContent(offline.open('big.bin'), BIG);
  });

  it('Cache Storage entries whose size does not match are ignored', async () => {
    const storage = fakeCacheStorage();
    const browserCache = await cacheStorageCache(storage);
    await browserCache.put('k/file', new Uint8Array([1, 2, 3]));
    const [key, entry] = [...storage.entries][0];
    storage.entries.set(key, { ...entry, body: new Uint8Array([1, 2]).buffer });
    expect(await browserCache.get('k/file')).toBeNull();
  });

  it('a file becomes visible only when complete and of the announced size', async () => {
    for (const store of [cache, memoryCache(), await cacheStorageCache(fakeCacheStorage())]) {
      const partial = await store.partial('a/b.bin');
      await partial.append(new Uint8Array([1, 2, 3]));
      expect(await store.get('a/b.bin')).toBeNull();
      const error = await rejection(partial.commit(5));
      expect(error).toBeInstanceOf(CacheSizeError);
      expect(await store.get('a/b.bin')).toBeNull();
      await partial.append(new Uint8Array([4, 5]));
      const source = await partial.commit(5);
      expect(await readAll(source)).toEqual(new Uint8Array([1, 2, 3, 4, 5]));
      expect(await readAll((await store.get('a/b.bin'))!)).toEqual(new Uint8Array([1, 2, 3, 4, 5]));
      await store.delete('a/b.bin');
      expect(await store.get('a/b.bin')).toBeNull();
    }
    await expect(cache.get('../escape')).rejects.toThrow(RangeError);
  });
});
