// The gpu slice: what the app knows about the WebGPU device. Serialisable state only (the device itself lives
// in the engine worker).

import type { StateCreator } from 'zustand';
import type { DeviceSummary } from '../worker/protocol.ts';
import type { AppState } from './index.ts';

export type GpuStatus =
  | { state: 'checking' }
  | { state: 'ready'; device: DeviceSummary }
  /** No WebGPU here: `reason` says why (no navigator.gpu, no adapter). */
  | { state: 'unavailable'; reason: string }
  /** The device was lost after it worked; `restarting` while a new one is being acquired. */
  | { state: 'lost'; reason: string; message: string; restarting: boolean }
  /**
   * Another tab of this app runs the engine (store/tabLock.ts): this one has none and waits, either since it
   * opened (`waiting`) or since it handed the engine over (`moved`); `asking` while it asks for the engine back.
   */
  | { state: 'elsewhere'; reason: 'waiting' | 'moved'; asking: boolean };

export interface GpuSlice {
  gpu: GpuStatus;
  setGpu(status: GpuStatus): void;
}

export const createGpuSlice: StateCreator<AppState, [], [], GpuSlice> = (set) => ({
  gpu: { state: 'checking' },
  setGpu: (gpu) => set({ gpu }),
});
