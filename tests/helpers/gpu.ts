// Test access to a real WebGPU device. Every GPU test goes through here, and it fails loudly when no
// adapter exists: a GPU test that skips or passes without a device would prove nothing.

import { Engine } from '../../src/engine/engine.ts';
import { acquireNodeGpu } from '../../src/gpu/node.ts';
import type { Gpu } from '../../src/gpu/runtime.ts';

let shared: Promise<Gpu> | null = null;

/** One device per test file (Vitest runs files in separate workers). */
export function testGpu(): Promise<Gpu> {
  shared ??= acquireNodeGpu().then((gpu) => {
    if (!gpu.device) throw new Error('no WebGPU device');
    return gpu;
  });
  return shared;
}

export async function testEngine(): Promise<Engine> {
  return new Engine(await testGpu());
}
