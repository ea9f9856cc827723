// Device acquisition, shared by the browser and Node hosts: ask the adapter for its highest
// limits and for the optional features it has, and report what was obtained.

import { GpuUnavailableError } from './errors.ts';
import { Gpu, type GpuInfo } from './runtime.ts';

const OPTIONAL_FEATURES: GPUFeatureName[] = ['timestamp-query', 'subgroups', 'shader-f16'];

const REQUESTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
  'maxBindingsPerBindGroup',
] as const;

export async function acquireGpuFromAdapter(adapter: GPUAdapter | null, where: string): Promise<Gpu> {
  if (!adapter) throw new GpuUnavailableError(`no WebGPU adapter found ${where}`);
  const requiredFeatures = OPTIONAL_FEATURES.filter((feature) => adapter.features.has(feature));
  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'tabtune' });
  const limits = device.limits;
  const adapterInfo = adapter.info;
  const info: GpuInfo = {
    vendor: adapterInfo?.vendor ?? '',
    architecture: adapterInfo?.architecture ?? '',
    description: adapterInfo?.description ?? '',
    software: /swiftshader|llvmpipe|lavapipe/i.test(`${adapterInfo?.architecture} ${adapterInfo?.description}`),
    features: {
      timestampQuery: device.features.has('timestamp-query'),
      subgroups: device.features.has('subgroups'),
      shaderF16: device.features.has('shader-f16'),
    },
    limits: {
      maxBufferSize: limits.maxBufferSize,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: limits.maxStorageBuffersPerShaderStage,
    },
  };
  return new Gpu(device, info);
}
