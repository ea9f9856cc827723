// The production build works from any folder of a static host: the same files served under a deep path by a
// plain file server (no Vite) open the app, load the demo model from the build's own demo/ folder, start the
// engine worker and generate.

import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openWithDemo, startApp, type App } from './browser.ts';

const PREFIX = '/tools/ml/tabtune/';
const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
};

let app: App;
let server: Server;
let url: string;
const requested: string[] = [];

beforeAll(async () => {
  app = await startApp();
  server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://host').pathname);
    requested.push(path);
    if (!path.startsWith(PREFIX)) {
      response.writeHead(404).end();
      return;
    }
    const relative = normalize(path.slice(PREFIX.length) || 'index.html');
    const file = join(app.outDir, relative.endsWith('/') ? `${relative}index.html` : relative);
    if (relative.startsWith('..') || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  url = `http://127.0.0.1:${address.port}${PREFIX}`;
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await app?.close();
});

it('runs from a deep path of a plain static server: the demo model loads and generates', { timeout: 300_000 }, async () => {
  const { page, errors } = await openWithDemo(app.browser, url);
  await page.getByTestId('generate-prompt').fill('In the beginning');
  await page.getByLabel('Max new tokens').fill('4');
  await page.getByTestId('generate-run').click();
  await expect.poll(async () => (await page.getByTestId('generate-run').isEnabled()) && ((await page.getByTestId('generate-output').textContent()) ?? ''), { timeout: 120_000, interval: 100 }).toMatch(/\S/);
  // Everything the page asked for lay under the prefix: no root-relative URL in the build.
  expect(requested.filter((path) => !path.startsWith(PREFIX))).toEqual([]);
  expect(requested).toContain(`${PREFIX}demo/model.safetensors`);
  expect(errors).toEqual([]);
  await page.close();
});
