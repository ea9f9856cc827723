// zustand slice for what the app knows about the GPU: serialisable state only, no GPU objects.

import { create } from 'zustand';

export type GpuStatus =
  | { state: 'checking' }
  | { state: 'ready'; description: string; features: string[]; maxBindingBytes: number; matmulCheck: string }
  | { state: 'unavailable'; reason: string };

export const useGpuStatus = create<{ status: GpuStatus; set: (status: GpuStatus) => void }>((set) => ({
  status: { state: 'checking' },
  set: (status) => set({ status }),
}));
