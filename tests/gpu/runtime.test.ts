import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { DestroyedTensorError } from '../../src/engine/errors.ts';
import { matmul } from '../../src/engine/ops/matmul.ts';
import { bucketSize } from '../../src/gpu/bufferPool.ts';
import { DeviceLostError, GpuLimitError, GpuValidationError } from '../../src/gpu/errors.ts';
import { acquireNodeGpu } from '../../src/gpu/node.ts';
import { u32 } from '../../src/gpu/runtime.ts';
import { testGpu } from '../helpers/gpu.ts';

const gpu = await testGpu();

describe('device acquisition', () => {
  it('obtains a real adapter and reports its limits and optional features', () => {
    expect(gpu.device).toBeDefined();
    expect(gpu.info.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(gpu.info.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
    expect(gpu.info.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    // What was obtained is what the device has, not a guess.
    expect(gpu.info.features.timestampQuery).toBe(gpu.device.features.has('timestamp-query'));
    expect(gpu.info.features.subgroups).toBe(gpu.device.features.has('subgroups'));
    expect(gpu.info.features.shaderF16).toBe(gpu.device.features.has('shader-f16'));
  });
});

describe('buffer pool', () => {
  it('rounds sizes up to buckets', () => {
    expect(bucketSize(1)).toBe(16);
    expect(bucketSize(100)).toBe(128);
    expect(bucketSize(65536)).toBe(65536);
    expect(bucketSize(65537)).toBe(81920);
    expect(bucketSize(3 * 2 ** 20 + 1)).toBe(3.5 * 2 ** 20);
  });

  it('reuses buffers and bind groups: a repeated step allocates nothing new and submits once', async () => {
    const engine = new Engine(gpu);
    const w = engine.tensor(new Float32Array(24 * 16).fill(0.01), [24, 16], { requiresGrad: true });
    const x = engine.tensor(new Float32Array(8 * 16).fill(1), [8, 16]);
    const step = () =>
      engine.scope(() => {
        const y = matmul(x, w, { transposeB: true });
        const loss = matmul(matmul(engine.full([1, 8], 1), y), engine.full([24, 1], 1));
        engine.backward(loss);
        w.grad!.dispose();
        w.grad = null;
      });
    step();
    await gpu.sync();
    const allocations = gpu.pool.stats().allocations;
    const submits = gpu.counters.submits;
    const bindGroupsCreated = gpu.bindGroups.misses;
    const dispatches = gpu.counters.dispatches;
    for (let i = 0; i < 3; i++) {
      step();
      await gpu.sync(); // a training step ends with a readback, which submits
    }
    expect(gpu.pool.stats().allocations).toBe(allocations);
    // Every bind group of a repeated step comes from the cache.
    expect(gpu.counters.dispatches - dispatches).toBeGreaterThan(0);
    expect(gpu.bindGroups.misses).toBe(bindGroupsCreated);
    expect(gpu.counters.submits - submits).toBe(3); // one command buffer per step
    x.dispose();
    w.dispose();
  });
});

describe('recording and readback', () => {
  it('records many dispatches into one pass and one submit, read back once', async () => {
    const engine = new Engine(gpu);
    const before = { ...gpu.counters };
    const out = await engine.scope(async () => {
      let x = engine.full([4, 4], 0.5);
      const eye = engine.tensor([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], [4, 4]);
      for (let i = 0; i < 20; i++) x = matmul(x, eye);
      return Array.from(await x.read());
    });
    expect(out).toEqual(new Array(16).fill(0.5));
    // uploads flush; the 20 matmuls plus the fill share one command buffer and one pass.
    expect(gpu.counters.dispatches - before.dispatches).toBe(21);
    expect(gpu.counters.readbacks - before.readbacks).toBe(1);
    expect(gpu.counters.submits - before.submits).toBeLessThanOrEqual(3);
  });
});

describe('typed errors', () => {
  it('refuses a tensor above the binding limit, saying which limit, what was asked and what the device has', () => {
    const engine = new Engine(gpu);
    const limit = gpu.info.limits.maxStorageBufferBindingSize;
    const elements = limit / 4 + 1;
    expect(() => engine.empty([elements])).toThrow(GpuLimitError);
    expect(() => engine.empty([elements])).toThrow(`needs ${elements * 4} bytes but the device's maxStorageBufferBindingSize is ${limit} bytes`);
  });

  it('refuses use of a released tensor', () => {
    const engine = new Engine(gpu);
    const t = engine.zeros([3, 3]);
    t.dispose();
    expect(() => matmul(t, t)).toThrow(DestroyedTensorError);
    expect(() => t.buffer).toThrow(/used after it was released/);
  });

  it('turns a WebGPU validation error into GpuValidationError at the next readback', async () => {
    const buffer = gpu.allocate(16);
    // The elementwise `fill` entry point takes params and one storage buffer; binding a second one is invalid.
    gpu.dispatch({ shader: 'elementwise', entryPoint: 'fill' }, { params: [u32(4)], bindings: [buffer, buffer], workgroups: [1] });
    await expect(gpu.read(buffer, 16)).rejects.toThrow(GpuValidationError);
    gpu.release(buffer);
    // The runtime stays usable afterwards.
    const engine = new Engine(gpu);
    expect(Array.from(await engine.full([2], 3).read())).toEqual([3, 3]);
  });

  it('reports a lost device as DeviceLostError on the next use', async () => {
    const own = await acquireNodeGpu();
    const engine = new Engine(own);
    const t = engine.full([4], 1);
    own.device.destroy();
    await own.device.lost;
    expect(own.isLost).toBe(true);
    expect(() => engine.full([4], 2)).toThrow(DeviceLostError);
    await expect(t.read()).rejects.toThrow(DeviceLostError);
  });
});
