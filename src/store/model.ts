// The model slice: the curated catalog, the load in progress (phase, progress, memory estimate), the loaded
// model's summary, and the last failure. Serialisable state only: picked File objects stay in the component
// that picked them.

import type { StateCreator } from 'zustand';
import type { CatalogEntry, EngineFailure, LoadPhase, MemoryEstimate, ModelSummary, WeightStorage } from '../worker/protocol.ts';
import type { AppState } from './index.ts';

export interface LoadProgress {
  phase: LoadPhase;
  item: string;
  done: number;
  total: number | null;
  unit: 'bytes' | 'tensors';
}

/** none: no model on the GPU; loading: a load is running (any earlier model may still be loaded until it is replaced). */
export type ModelStatus = 'none' | 'loading' | 'ready';

/** A source that can be loaded again without asking the user (picked files cannot: the page holds them). */
export type ReloadableSource = { kind: 'demo' } | { kind: 'hub'; spec: string; endpoint?: string };

export interface ModelState {
  catalog: CatalogEntry[] | null;
  status: ModelStatus;
  /** What is being (or was last) loaded, in words. */
  sourceLabel: string | null;
  progress: LoadProgress | null;
  /** The estimate of the load in progress or of the last load. */
  estimate: MemoryEstimate | null;
  /** The model on the GPU, when there is one. */
  summary: ModelSummary | null;
  /** The last load's failure (the earlier model, if any, stays loaded when a load fails before replacing it). */
  error: EngineFailure | null;
  /** The last successful load's source, when it can be repeated (after a device loss). */
  reloadable: ReloadableSource | null;
  /** The worker call id of the load in progress (to cancel it). */
  callId: number | null;
  /** How the next load holds the weights: f32, or the block linears in NF4 (QLoRA's base). */
  weights: WeightStorage;
}

export interface ModelSlice {
  model: ModelState;
  patchModel(patch: Partial<ModelState>): void;
}

export const initialModelState: ModelState = {
  catalog: null,
  status: 'none',
  sourceLabel: null,
  progress: null,
  estimate: null,
  summary: null,
  error: null,
  reloadable: null,
  callId: null,
  weights: 'f32',
};

export const createModelSlice: StateCreator<AppState, [], [], ModelSlice> = (set) => ({
  model: initialModelState,
  patchModel: (patch) => set((state) => ({ model: { ...state.model, ...patch } })),
});
