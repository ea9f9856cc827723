// Every fixture architecture loaded from a local server in the hub layout (tests/helpers/hubServer.ts) through
// hubFiles + loadModel, with a temporary cache folder: the logits match the golden values of the PyTorch
// reference within 1e-4, the tokenizer comes along, and a second, offline load finds everything in the cache.

import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { folderCache, type FileCache } from '../../src/io/sources/cache.ts';
import { hubFiles, type DownloadProgress } from '../../src/io/sources/hub.ts';
import { loadTokenizer } from '../../src/io/tokenizer.ts';
import { inspectModel, loadModel } from '../../src/models/load.ts';
import { tokenTensor } from '../../src/models/model.ts';
import { testEngine } from '../helpers/gpu.ts';
import { TestHub } from '../helpers/hubServer.ts';
import { expectClose } from '../helpers/numeric.ts';
import { FIXTURES, MODEL_FIXTURES, readGolden } from '../models/helpers.ts';

const TOLERANCE = 1e-4;
const REPO = (fixture: string) => `tiny/${fixture}`;
const folder = (fixture: string) => fileURLToPath(new URL(`${fixture}/`, FIXTURES));

let hub: TestHub;
let cacheDir: string;
let cache: FileCache;

beforeAll(async () => {
  hub = new TestHub();
  // golden.safetensors is the test's answer, not part of the repository.
  for (const fixture of MODEL_FIXTURES) hub.addFolder(REPO(fixture), folder(fixture), { skip: (file) => file === 'golden.safetensors' });
  await hub.start();
  cacheDir = await mkdtemp(join(tmpdir(), 'tabtune-hub-arch-'));
  cache = await folderCache(cacheDir);
});

afterAll(async () => {
  await hub?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

describe.each(MODEL_FIXTURES)('%s from a hub-layout server', (fixture) => {
  it('downloads, loads and matches the golden logits', async () => {
    const files = await hubFiles(REPO(fixture), { endpoint: hub.url, cache, retryDelayMs: 1 });
    const progress: DownloadProgress[] = [];
    const downloaded = await files.downloadModel((p) => progress.push(p));
    const served = readdirSync(folder(fixture)).filter((file) => file !== 'golden.safetensors');
    expect(new Set(downloaded)).toEqual(new Set(served));
    expect(progress.at(-1)!.doneBytes).toBe(progress.at(-1)!.totalBytes);
    for (const file of downloaded) expect(hub.paths).toContain(`/${REPO(fixture)}/resolve/main/${file}`);

    const tokenizer = await loadTokenizer(files);
    const golden = await readGolden(fixture);
    const engine = await testEngine();
    const { model, config } = await loadModel(engine, files);
    try {
      expect(tokenizer.vocabSize).toBeLessThanOrEqual(config.vocabSize);
      await engine.scope(async () => {
        const logits = model.forward(tokenTensor(engine, golden.ids, config.vocabSize));
        expect(logits.shape).toEqual(golden.shape);
        expectClose(await logits.read(), golden.logits, TOLERANCE, `${fixture} logits from the hub`);
      });
    } finally {
      model.dispose();
    }
  });

  it('loads again offline from the cache without a request', async () => {
    const requests = hub.log.length;
    const files = await hubFiles(REPO(fixture), { endpoint: hub.url, cache, offline: true });
    const { config, plan } = await inspectModel(files);
    expect(config.vocabSize).toBe((await readGolden(fixture)).shape[2]);
    expect(plan.tensors.length).toBeGreaterThan(0);
    expect((await loadTokenizer(files)).vocabSize).toBeLessThanOrEqual(config.vocabSize);
    expect(hub.log.length).toBe(requests);
  });
});
