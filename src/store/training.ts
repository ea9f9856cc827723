// The training slice: the method's settings and the adapter attached with them, the pasted dataset and what the
// worker found in it, and the run in progress (its latest step, throttled) with the loss history for the chart.

import type { StateCreator } from 'zustand';
import type { AttachedMethod, DatasetSummary, EngineFailure, MethodSettings } from '../worker/protocol.ts';
import type { AppState } from './index.ts';

export interface TrainProgress {
  step: number;
  steps: number;
  loss: number;
  tokensPerSecond: number;
  etaMs: number;
}

export interface TrainingState {
  settings: MethodSettings;
  /** The adapter on the model now (null: none, or the settings changed since). */
  attached: AttachedMethod | null;
  attaching: boolean;
  dataset: string;
  datasetSummary: DatasetSummary | null;
  steps: number;
  seqLen: number;
  lr: number;
  running: boolean;
  progress: TrainProgress | null;
  /** Training loss per reported step (skipped steps left out). */
  lossHistory: number[];
  /** How the last run ended, in words. */
  outcome: string | null;
  exporting: boolean;
  error: EngineFailure | null;
  callId: number | null;
}

export interface TrainingSlice {
  training: TrainingState;
  patchTraining(patch: Partial<TrainingState>): void;
  setMethodSettings(patch: Partial<MethodSettings>): void;
}

export const DEFAULT_METHOD: MethodSettings = {
  method: 'lora',
  r: 8,
  alpha: 16,
  dropout: 0,
  useRslora: false,
  targetModules: null,
  reductionFactor: 16,
  placement: 'pfeiffer',
};

export const initialTrainingState: TrainingState = {
  settings: DEFAULT_METHOD,
  attached: null,
  attaching: false,
  dataset: '',
  datasetSummary: null,
  steps: 20,
  seqLen: 32,
  lr: 1e-3,
  running: false,
  progress: null,
  lossHistory: [],
  outcome: null,
  exporting: false,
  error: null,
  callId: null,
};

export const createTrainingSlice: StateCreator<AppState, [], [], TrainingSlice> = (set) => ({
  training: initialTrainingState,
  patchTraining: (patch) => set((state) => ({ training: { ...state.training, ...patch } })),
  // New settings make the attached adapter stale: the next attach or run replaces it.
  setMethodSettings: (patch) => set((state) => ({ training: { ...state.training, settings: { ...state.training.settings, ...patch }, attached: null } })),
});
