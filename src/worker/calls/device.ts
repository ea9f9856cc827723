// The GPU device: acquired (again, after a loss) with a self-check, its limits reported to the page, and its
// loss turned into a 'deviceLost' event whether or not a call was running.

/// <reference lib="webworker" />

import { Engine } from '../../engine/engine.ts';
import { matmul } from '../../engine/ops/matmul.ts';
import { acquireBrowserGpu } from '../../gpu/browser.ts';
import { disposeLoaded, engineState, type Device } from '../engineState.ts';
import type { DeviceCapacity } from '../memoryEstimate.ts';
import { emitter } from '../messages.ts';
import type { DeviceSummary } from '../protocol.ts';

function memoryBudget(): number | null {
  const gib = (self.navigator as Navigator & { deviceMemory?: number }).deviceMemory;
  return typeof gib === 'number' && Number.isFinite(gib) && gib > 0 ? gib * 2 ** 30 : null;
}

export function capacity(): DeviceCapacity | null {
  if (!engineState.device) return null;
  const { maxBindingBytes, maxBufferBytes, memoryBudgetBytes } = engineState.device.summary;
  return { maxBindingBytes, maxBufferBytes, memoryBudgetBytes };
}

export async function init(): Promise<DeviceSummary> {
  const existing = engineState.device;
  if (existing && !existing.gpu.isLost) return existing.summary;
  dropDevice();
  const gpu = await acquireBrowserGpu();
  const engine = new Engine(gpu);
  const selfCheck = await engine.scope(async () => {
    const a = engine.tensor([1, 2, 3, 4], [2, 2]);
    const b = engine.tensor([5, 6, 7, 8], [2, 2]);
    return Array.from(await matmul(a, b).read());
  });
  const { info } = gpu;
  const summary: DeviceSummary = {
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description,
    features: Object.entries(info.features)
      .filter(([, has]) => has)
      .map(([name]) => name),
    maxBindingBytes: info.limits.maxStorageBufferBindingSize,
    maxBufferBytes: info.limits.maxBufferSize,
    memoryBudgetBytes: memoryBudget(),
    selfCheck,
  };
  const current: Device = { gpu, engine, summary };
  engineState.device = current;
  void gpu.device.lost.then((info) => {
    if (engineState.device !== current) return; // replaced on purpose
    engineState.device = null;
    engineState.loaded = null; // its buffers went with the device
    engineState.adapted = null;
    engineState.training = null; // its trainer's buffers too; the run continues from its checkpoint
    emitter(null)({ type: 'deviceLost', reason: info.reason ?? 'unknown', message: info.message });
  });
  return summary;
}

function dropDevice(): void {
  const old = engineState.device;
  engineState.device = null;
  disposeLoaded();
  if (old && !old.gpu.isLost) old.gpu.destroy();
}

/** Fault injection for tests: destroy the device as a driver reset would. */
export function loseDevice(): { lost: boolean } {
  if (!engineState.device) return { lost: false };
  engineState.device.gpu.device.destroy();
  return { lost: true };
}
