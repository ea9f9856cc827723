// The engine in a real browser tab: the page acquires WebGPU through src/gpu/browser.ts (shaders
// bundled by Vite) and multiplies two matrices with the matmul kernel.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { startApp, type App } from './browser.ts';

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => app?.close());

it('runs the engine on WebGPU in Chromium and shows a correct matmul', async () => {
  const page = await app.browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(app.url);
  const check = page.getByTestId('gpu-matmul-check');
  await check.waitFor({ timeout: 60_000 });
  // [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]]
  expect(await check.textContent()).toBe('19, 22, 43, 50');
  expect(await page.getByTestId('gpu-status').textContent()).toMatch(/swiftshader|google/i);
  expect(errors).toEqual([]);
});
