// Compute pipelines compiled once per (shader file, entry point, override constants).

import { shaderSource } from './shaderSource.ts';

export interface KernelSpec {
  /** File name in shaders/ without the .wgsl extension. */
  shader: string;
  entryPoint: string;
  /** WGSL `override` constants, such as the workgroup size. */
  constants?: Record<string, number>;
}

export class PipelineCache {
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();

  constructor(private readonly device: GPUDevice) {}

  get(spec: KernelSpec): GPUComputePipeline {
    const constants = spec.constants ?? {};
    const key = `${spec.shader}:${spec.entryPoint}:${Object.keys(constants)
      .sort()
      .map((name) => `${name}=${constants[name]}`)
      .join(',')}`;
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      pipeline = this.device.createComputePipeline({
        label: key,
        layout: 'auto',
        compute: { module: this.module(spec.shader), entryPoint: spec.entryPoint, constants },
      });
      this.pipelines.set(key, pipeline);
    }
    return pipeline;
  }

  private module(name: string): GPUShaderModule {
    let module = this.modules.get(name);
    if (!module) {
      module = this.device.createShaderModule({ label: name, code: shaderSource(name) });
      this.modules.set(name, module);
    }
    return module;
  }
}
