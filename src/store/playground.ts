// The playground slice: the prompt, the sampling settings, and the streaming output of the generation in
// progress or of the last one.

import type { StateCreator } from 'zustand';
import type { EngineFailure, GenerateResult, SamplingSettings } from '../worker/protocol.ts';
import type { AppState } from './index.ts';

export interface PlaygroundState {
  prompt: string;
  sampling: SamplingSettings;
  useChatTemplate: boolean;
  /** Generated text so far (the prompt is not repeated). */
  output: string;
  tokens: number;
  running: boolean;
  result: GenerateResult | null;
  error: EngineFailure | null;
  callId: number | null;
}

export interface PlaygroundSlice {
  playground: PlaygroundState;
  patchPlayground(patch: Partial<PlaygroundState>): void;
  setSampling(patch: Partial<SamplingSettings>): void;
}

export const DEFAULT_SAMPLING: SamplingSettings = { maxNewTokens: 48, temperature: 0, topK: 40, topP: 0.95, repetitionPenalty: 1, seed: 0 };

export const initialPlaygroundState: PlaygroundState = {
  prompt: 'In the beginning God created',
  sampling: DEFAULT_SAMPLING,
  useChatTemplate: false,
  output: '',
  tokens: 0,
  running: false,
  result: null,
  error: null,
  callId: null,
};

export const createPlaygroundSlice: StateCreator<AppState, [], [], PlaygroundSlice> = (set) => ({
  playground: initialPlaygroundState,
  patchPlayground: (patch) => set((state) => ({ playground: { ...state.playground, ...patch } })),
  setSampling: (patch) => set((state) => ({ playground: { ...state.playground, sampling: { ...state.playground.sampling, ...patch } } })),
});
