// Node host of the GPU layer: Dawn through the `webgpu` package, and shaders read from disk.
// On a machine without a GPU driver it falls back to SwiftShader, the software Vulkan driver
// that Debian's chromium package ships, so tests need no environment variables.

import { existsSync, readFileSync } from 'node:fs';
import { create, globals } from 'webgpu';
import { acquireGpuFromAdapter } from './acquire.ts';
import type { Gpu } from './runtime.ts';
import { setShaderLoader } from './shaderSource.ts';

const SHADER_DIR = new URL('../../shaders/', import.meta.url);
const SWIFTSHADER_ICDS = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib64/chromium/vk_swiftshader_icd.json'];

Object.assign(globalThis, globals);

// Dawn's instance must outlive every device made from it: if the GPU object returned by create()
// is garbage collected while work is in flight, Dawn's event processing reads freed memory and
// the process crashes. Every instance this module creates is kept here for the process lifetime.
const instances: GPU[] = [];

function requestAdapter(options?: GPURequestAdapterOptions): Promise<GPUAdapter | null> {
  const instance = create([]);
  instances.push(instance);
  return instance.requestAdapter(options);
}
setShaderLoader((name) => readFileSync(new URL(`${name}.wgsl`, SHADER_DIR), 'utf8'));

export interface NodeGpuOptions {
  /** Use SwiftShader even when another adapter exists (TABTUNE_GPU=swiftshader does the same). */
  forceSoftware?: boolean;
}

export async function acquireNodeGpu(options: NodeGpuOptions = {}): Promise<Gpu> {
  const forceSoftware = options.forceSoftware ?? process.env.TABTUNE_GPU === 'swiftshader';
  let adapter = forceSoftware ? null : await requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter && !process.env.VK_ICD_FILENAMES) {
    const icd = SWIFTSHADER_ICDS.find((path) => existsSync(path));
    if (icd) {
      // The Vulkan loader reads this when Dawn creates its next instance.
      process.env.VK_ICD_FILENAMES = icd;
      adapter = await requestAdapter();
    }
  }
  return acquireGpuFromAdapter(
    adapter,
    'in Node: install a Vulkan driver, or Debian\'s chromium and libvulkan1 packages for the SwiftShader software driver',
  );
}
