// The GPU runtime: one device, its pipeline cache and buffer pool, and a recorder that puts many
// dispatches into one command encoder and one compute pass, submitted together. Readback is
// asynchronous and only happens when a caller asks for data. Device loss and WebGPU error scopes
// become typed errors (gpu/errors.ts) raised at the next flush or readback.

import { BindGroupCache, type BindingEntry } from './bindGroupCache.ts';
import { BufferPool } from './bufferPool.ts';
import {
  DeviceLostError,
  GpuError,
  GpuInternalError,
  GpuLimitError,
  GpuOutOfMemoryError,
  GpuValidationError,
} from './errors.ts';
import { KernelProfiler, PROFILE_CAPACITY, type KernelProfile } from './kernelProfile.ts';
import { PipelineCache, type KernelSpec } from './pipelineCache.ts';

export type { KernelSpec } from './pipelineCache.ts';

/** What the device offers, as acquired. */
export interface GpuInfo {
  vendor: string;
  architecture: string;
  description: string;
  /** A CPU emulation (SwiftShader, llvmpipe): kernels with barriers are slow there. */
  software: boolean;
  features: { timestampQuery: boolean; subgroups: boolean; shaderF16: boolean };
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
    maxStorageBuffersPerShaderStage: number;
  };
}

/** A scalar field of a kernel's uniform `params` struct (binding 0); every field takes 4 bytes. */
export type Param = { u32: number } | { i32: number } | { f32: number };
export const u32 = (value: number): Param => ({ u32: value });
export const i32 = (value: number): Param => ({ i32: value });
export const f32 = (value: number): Param => ({ f32: value });

/** A storage binding: a whole buffer, or `size` bytes of it from `offset`. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; size: number; offset?: number };

export interface Dispatch {
  params?: Param[];
  /** Storage buffers bound at 1, 2, ... in order; `undefined` skips a binding number the entry point does not use. */
  bindings: (Binding | undefined)[];
  workgroups: [number, number?, number?];
}

/** Counters for benchmarks and for tests that prove a step does not over-submit or re-allocate. */
export interface GpuCounters {
  submits: number;
  passes: number;
  dispatches: number;
  readbacks: number;
}

// GPUBufferUsage / GPUMapMode values from the WebGPU spec, spelled out because Node only defines
// those globals once gpu/node.ts has loaded Dawn.
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80, QUERY_RESOLVE: 0x200 } as const;
const MAP_MODE_READ = 0x1;
export const STORAGE_USAGE = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST;
const READBACK_USAGE = USAGE.MAP_READ | USAGE.COPY_DST;
const PARAM_SLOT = 256; // minUniformBufferOffsetAlignment on every WebGPU device is at most 256
const PARAM_RING_BYTES = 1 << 20; // 4096 dispatches per submit before an automatic flush
const ERROR_FILTERS: GPUErrorFilter[] = ['validation', 'out-of-memory', 'internal'];

export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly bindGroups: BindGroupCache;
  readonly counters: GpuCounters = { submits: 0, passes: 0, dispatches: 0, readbacks: 0 };

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly paramRing: GPUBuffer;
  private readonly paramMirror = new ArrayBuffer(PARAM_RING_BYTES);
  private paramBytes = 0;
  private passTimestamps: GPUComputePassTimestampWrites | null = null;
  private timingQueries: { set: GPUQuerySet; resolve: GPUBuffer } | null = null;
  private profiler: KernelProfiler | null = null;
  private lostError: DeviceLostError | null = null;
  private pendingError: GpuError | null = null;
  private readonly errorChecks: Promise<void>[] = [];

  constructor(
    readonly device: GPUDevice,
    readonly info: GpuInfo,
  ) {
    this.pool = new BufferPool(device);
    this.pipelines = new PipelineCache(device);
    this.bindGroups = new BindGroupCache(device);
    this.paramRing = device.createBuffer({ size: PARAM_RING_BYTES, usage: USAGE.UNIFORM | USAGE.COPY_DST });
    device.lost.then((info) => {
      this.lostError = new DeviceLostError(info.reason ?? 'unknown', info.message);
    });
    device.onuncapturederror = (event) => this.noteError(event.error);
    this.pushErrorScopes();
  }

  get isLost(): boolean {
    return this.lostError !== null;
  }

  /** Throws a DeviceLostError if the device is gone; any earlier asynchronous error is raised too. */
  checkHealthy(): void {
    if (this.lostError) throw this.lostError;
    if (this.pendingError) {
      const error = this.pendingError;
      this.pendingError = null;
      throw error;
    }
  }

  /** A storage buffer of at least `bytes`, from the pool; fails with GpuLimitError above the binding limit. */
  allocate(bytes: number, what = 'a tensor'): GPUBuffer {
    this.checkHealthy();
    const { maxStorageBufferBindingSize } = this.info.limits;
    if (bytes > maxStorageBufferBindingSize) {
      throw new GpuLimitError('maxStorageBufferBindingSize', bytes, maxStorageBufferBindingSize, what);
    }
    return this.pool.acquire(bytes, STORAGE_USAGE);
  }

  release(buffer: GPUBuffer): void {
    this.pool.release(buffer);
  }

  /** Record one compute dispatch into the open pass. Nothing runs until flush() or a readback. */
  dispatch(kernel: KernelSpec, call: Dispatch): void {
    this.checkHealthy();
    const pipeline = this.pipelines.get(kernel);
    if (this.paramBytes + PARAM_SLOT > PARAM_RING_BYTES) this.flush();
    const entries: BindingEntry[] = [];
    if (call.params) {
      const offset = this.paramBytes;
      writeParams(new DataView(this.paramMirror, offset, PARAM_SLOT), call.params);
      this.paramBytes += PARAM_SLOT;
      entries.push({ binding: 0, buffer: this.paramRing, offset, size: paramsSize(call.params) });
    }
    call.bindings.forEach((binding, index) => {
      if (!binding) return;
      if ('buffer' in binding) entries.push({ binding: index + 1, buffer: binding.buffer, offset: binding.offset ?? 0, size: binding.size });
      else entries.push({ binding: index + 1, buffer: binding, offset: 0, size: undefined });
    });
    const bindGroup = this.bindGroups.get(pipeline, entries);
    // Profiling: a pass of its own, bracketed by timestamps.
    const timestamps = this.profiler?.next(`${kernel.shader}:${kernel.entryPoint}`) ?? null;
    if (timestamps) this.endPass();
    const pass = this.computePass(timestamps);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    const [x, y = 1, z = 1] = call.workgroups;
    pass.dispatchWorkgroups(x, y, z);
    if (timestamps) this.endPass();
    this.counters.dispatches++;
  }

  /** Record a buffer-to-buffer copy (ends the open compute pass). */
  copy(source: GPUBuffer, sourceOffset: number, target: GPUBuffer, targetOffset: number, bytes: number): void {
    this.checkHealthy();
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(source, sourceOffset, target, targetOffset, bytes);
  }

  /**
   * Write host data into a buffer. Work already recorded is submitted first, because
   * queue.writeBuffer lands before any command buffer submitted after it.
   */
  upload(target: GPUBuffer, data: ArrayBufferView, targetOffset = 0): void {
    this.checkHealthy();
    this.flush();
    this.device.queue.writeBuffer(target, targetOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Submit everything recorded so far as one command buffer. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.paramBytes > 0) this.device.queue.writeBuffer(this.paramRing, 0, this.paramMirror, 0, this.paramBytes);
    this.device.queue.submit([this.encoder.finish()]);
    this.counters.submits++;
    this.encoder = null;
    this.paramBytes = 0;
    this.popErrorScopes();
    this.pushErrorScopes();
  }

  /** Copy `bytes` of a buffer back to the host. Submits pending work; resolves when the GPU is done. */
  async read(source: GPUBuffer, bytes: number, sourceOffset = 0): Promise<ArrayBuffer> {
    this.checkHealthy();
    const staging = this.pool.acquire(bytes, READBACK_USAGE);
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(source, sourceOffset, staging, 0, alignTo(bytes, 4));
    this.flush();
    this.counters.readbacks++;
    try {
      await Promise.race([staging.mapAsync(MAP_MODE_READ, 0, alignTo(bytes, 4)), this.lostPromise()]);
      const result = staging.getMappedRange(0, alignTo(bytes, 4)).slice(0, bytes);
      staging.unmap();
      await this.settleErrors();
      return result;
    } finally {
      if (staging.mapState === 'unmapped') this.pool.release(staging);
    }
  }

  /** Wait for all submitted work and raise any error it produced. */
  async sync(): Promise<void> {
    this.flush();
    await Promise.race([this.device.queue.onSubmittedWorkDone(), this.lostPromise()]);
    await this.settleErrors();
  }

  /**
   * Time the GPU work that `record` records (benchmarks). With timestamp-query the GPU's own clock
   * brackets one compute pass; otherwise gpuMs is null and only the wall time (submit to completion) is known.
   */
  async time(record: () => void): Promise<{ gpuMs: number | null; wallMs: number }> {
    await this.sync();
    const queries = this.timestampQueries();
    if (queries) this.passTimestamps = { querySet: queries.set, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 };
    const started = performance.now();
    record();
    this.passTimestamps = null;
    if (!queries) {
      await this.sync();
      return { gpuMs: null, wallMs: performance.now() - started };
    }
    this.endPass();
    this.commandEncoder().resolveQuerySet(queries.set, 0, 2, queries.resolve, 0);
    const bytes = await this.read(queries.resolve, 16);
    const wallMs = performance.now() - started;
    const [begin, end] = new BigUint64Array(bytes);
    return { gpuMs: Number(end - begin) / 1e6, wallMs };
  }

  /**
   * GPU time by kernel of the work `work` records (benchmarks; see kernelProfile.ts): up to `capacity` dispatches
   * are timed. Null without timestamp-query.
   */
  async profileKernels(work: () => Promise<void>, capacity = PROFILE_CAPACITY): Promise<KernelProfile | null> {
    if (!this.info.features.timestampQuery) return null;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > PROFILE_CAPACITY) throw new RangeError(`profile capacity must be an integer in [1, ${PROFILE_CAPACITY}], got ${capacity}`);
    await this.sync();
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 * capacity });
    const profiler = new KernelProfiler(querySet, capacity);
    this.profiler = profiler;
    try {
      await work();
    } finally {
      this.profiler = null;
    }
    const count = 2 * profiler.kernels.length;
    let timestamps = new BigUint64Array(0);
    if (count > 0) {
      const resolve = this.device.createBuffer({ size: count * 8, usage: USAGE.QUERY_RESOLVE | USAGE.COPY_SRC });
      this.endPass();
      this.commandEncoder().resolveQuerySet(querySet, 0, count, resolve, 0);
      timestamps = new BigUint64Array(await this.read(resolve, count * 8));
      resolve.destroy();
    }
    querySet.destroy();
    return profiler.summarize(timestamps);
  }

  /** Destroy idle pooled buffers (after unloading a model, or when memory ran out). */
  trimPool(): void {
    this.bindGroups.clear();
    this.pool.trim();
  }

  destroy(): void {
    this.trimPool();
    this.device.destroy();
  }

  private lostPromise(): Promise<never> {
    return this.device.lost.then((info) => {
      throw this.lostError ?? new DeviceLostError(info.reason ?? 'unknown', info.message);
    });
  }

  private async settleErrors(): Promise<void> {
    await Promise.all(this.errorChecks.splice(0));
    this.checkHealthy();
  }

  private commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  private timestampQueries(): { set: GPUQuerySet; resolve: GPUBuffer } | null {
    if (!this.info.features.timestampQuery) return null;
    this.timingQueries ??= {
      set: this.device.createQuerySet({ type: 'timestamp', count: 2 }),
      resolve: this.device.createBuffer({ size: 16, usage: USAGE.QUERY_RESOLVE | USAGE.COPY_SRC }),
    };
    return this.timingQueries;
  }

  /** The open compute pass, or a new one (writing `timestamps`, or time()'s, when given). */
  private computePass(timestamps: GPUComputePassTimestampWrites | null = null): GPUComputePassEncoder {
    if (!this.pass) {
      const timestampWrites = timestamps ?? this.passTimestamps ?? undefined;
      this.pass = this.commandEncoder().beginComputePass(timestampWrites ? { timestampWrites } : {});
      this.counters.passes++;
    }
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  private pushErrorScopes(): void {
    for (const filter of ERROR_FILTERS) this.device.pushErrorScope(filter);
  }

  private popErrorScopes(): void {
    for (let i = 0; i < ERROR_FILTERS.length; i++) {
      this.errorChecks.push(
        this.device.popErrorScope().then(
          (error) => {
            if (error) this.noteError(error);
          },
          () => {},
        ),
      );
    }
  }

  private noteError(error: GPUError): void {
    if (this.pendingError || this.lostError) return;
    // Classes are compared by name: Dawn's error classes are not always installed as globals.
    const kind = error.constructor.name;
    if (kind === 'GPUOutOfMemoryError') this.pendingError = new GpuOutOfMemoryError(`GPU out of memory: ${error.message}`);
    else if (kind === 'GPUValidationError') this.pendingError = new GpuValidationError(`WebGPU validation error: ${error.message}`);
    else this.pendingError = new GpuInternalError(`WebGPU internal error: ${error.message}`);
  }
}

function writeParams(view: DataView, params: Param[]): void {
  params.forEach((param, index) => {
    const offset = index * 4;
    if ('u32' in param) view.setUint32(offset, param.u32, true);
    else if ('i32' in param) view.setInt32(offset, param.i32, true);
    else view.setFloat32(offset, param.f32, true);
  });
}

/** Uniform structs of 4-byte scalars are padded to 16 bytes. */
function paramsSize(params: Param[]): number {
  if (params.length * 4 > PARAM_SLOT) throw new Error(`too many kernel params (${params.length})`);
  return alignTo(Math.max(params.length * 4, 16), 16);
}

export function alignTo(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}
