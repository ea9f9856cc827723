// The training slice: the method's settings and the adapter attached with them, the pasted dataset and what the
// worker found in it, the run's settings, and the run in progress: its phase, its latest step (throttled) with
// the GPU memory, the training and validation loss histories for the chart, its last checkpoint, and a run saved
// in browser storage that a reloaded page offers to continue.

import type { StateCreator } from 'zustand';
import type { AttachedMethod, DatasetSummary, EngineFailure, LossPoint, MethodSettings, RunSettings, SavedRun, TrainMemory } from '../worker/protocol.ts';
import type { AppState } from './index.ts';

export interface TrainProgress {
  step: number;
  steps: number;
  loss: number;
  tokensPerSecond: number;
  etaMs: number;
  /** The engine's GPU bytes after the step, by category, and the run's peak. */
  memory: TrainMemory | null;
}

/**
 * Where the run stands. running: steps are being trained; pausing / ending: asked to stop at the next step boundary;
 * paused: the worker keeps the run (Resume continues it exactly); interrupted: the GPU device was lost during the
 * run, which can continue from its last checkpoint in browser storage.
 */
export type TrainPhase = 'idle' | 'running' | 'pausing' | 'paused' | 'ending' | 'interrupted';

/** A run found in browser storage when the page opened: offered to continue, being continued, or unreadable. */
export type SavedRunOffer =
  | { state: 'none' }
  | { state: 'checking' }
  | { state: 'offer'; run: SavedRun; problem: string | null }
  | { state: 'resuming'; run: SavedRun }
  | { state: 'unreadable'; message: string };

/** The run settings (all but the method, which is `settings`) are RunSettings' fields, documented there. */
export interface TrainingState extends Omit<RunSettings, 'method'> {
  settings: MethodSettings;
  /** The adapter on the model now (null: none, or the settings changed since). */
  attached: AttachedMethod | null;
  attaching: boolean;
  dataset: string;
  /** The file the dataset was read from (dropped or chosen), or null when pasted; whoever sets `dataset` sets this. */
  datasetFileName: string | null;
  datasetSummary: DatasetSummary | null;
  /** A run owns the settings: from its start until it ends (also while paused or interrupted). */
  running: boolean;
  phase: TrainPhase;
  progress: TrainProgress | null;
  /** Training loss per reported step (skipped steps left out). */
  lossHistory: LossPoint[];
  /** Validation loss per evaluation. */
  validationHistory: LossPoint[];
  /** Steps done at the run's last checkpoint in browser storage (null: none yet). */
  checkpointStep: number | null;
  savedRun: SavedRunOffer;
  /** How the last run ended, in words. */
  outcome: string | null;
  exporting: boolean;
  /** Why the last attach failed (shown in the method panel). */
  attachError: EngineFailure | null;
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
  datasetFileName: null,
  datasetSummary: null,
  steps: 20,
  seqLen: 32,
  batchSize: 1,
  lr: 1e-3,
  schedule: 'constant',
  warmupSteps: 0,
  seed: 0,
  checkpointEvery: 10,
  validationShare: 0.1,
  evalEvery: 10,
  running: false,
  phase: 'idle',
  progress: null,
  lossHistory: [],
  validationHistory: [],
  checkpointStep: null,
  savedRun: { state: 'none' },
  outcome: null,
  exporting: false,
  attachError: null,
  error: null,
  callId: null,
};

export const createTrainingSlice: StateCreator<AppState, [], [], TrainingSlice> = (set) => ({
  training: initialTrainingState,
  patchTraining: (patch) => set((state) => ({ training: { ...state.training, ...patch } })),
  // New settings make the attached adapter stale: the next attach or run replaces it.
  setMethodSettings: (patch) => set((state) => ({ training: { ...state.training, settings: { ...state.training.settings, ...patch }, attached: null, attachError: null } })),
});
