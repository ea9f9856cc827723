import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [react()],
  // Relative asset paths: the built app works from any folder of a static host.
  base: './',
  build: { target: 'es2022' },
  // ES-module workers (the engine worker is started with type: 'module') can split code: ONNX Runtime Web stays
  // in its own chunk, loaded only when the playground runs an ONNX file.
  worker: { format: 'es' },
  test: {
    include: ['tests/**/*.test.ts'],
    // Two cores, and SwiftShader runs every kernel on the CPU: a couple of workers at most.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
