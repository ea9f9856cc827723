// Browser host of the GPU layer: navigator.gpu, and shaders bundled by Vite as raw strings.

import { acquireGpuFromAdapter } from './acquire.ts';
import { GpuUnavailableError } from './errors.ts';
import type { Gpu } from './runtime.ts';
import { setShaderLoader } from './shaderSource.ts';

const bundledShaders = import.meta.glob('../../shaders/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<
  string,
  string
>;

setShaderLoader((name) => {
  const source = bundledShaders[`../../shaders/${name}.wgsl`];
  if (source === undefined) throw new Error(`shader ${name}.wgsl is not bundled`);
  return source;
});

export async function acquireBrowserGpu(powerPreference: GPUPowerPreference = 'high-performance'): Promise<Gpu> {
  if (typeof navigator === 'undefined' || !navigator.gpu) {
    throw new GpuUnavailableError('this browser has no WebGPU (navigator.gpu is missing); use a recent Chrome or Edge');
  }
  return acquireGpuFromAdapter(await navigator.gpu.requestAdapter({ powerPreference }), 'in this browser');
}
