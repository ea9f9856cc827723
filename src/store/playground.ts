// The playground slice: the prompt, the sampling settings, and the streaming output of the generation in
// progress or of the last one; with an adapter attached, a comparison also fills a second column with the base
// model's output (the adapter switched off, same settings and seed). The ONNX part holds the run of an exported
// .onnx file through ONNX Runtime Web: its output, which execution provider ran it, and whether the worker keeps
// an ONNX export to run.

import type { StateCreator } from 'zustand';
import type { EngineFailure, GenerateResult, OnnxGenerateResult, OnnxSessionInfo, SamplingSettings } from '../worker/protocol.ts';
import type { AppState } from './index.ts';

/** Which model a running generation uses: the loaded one as it is (with its adapter), or with the adapter off. */
export type GenerationSide = 'adapter' | 'base';

export interface OnnxRunState {
  running: boolean;
  /** Generated text so far (the prompt is not repeated). */
  output: string;
  tokens: number;
  /** The session running now or last (file, execution provider, GPU); null before the first run. */
  session: OnnxSessionInfo | null;
  result: OnnxGenerateResult | null;
  error: EngineFailure | null;
  callId: number | null;
  /** The ONNX export the worker keeps (as it last said), or null. */
  kept: { fileName: string; bytes: number } | null;
}

export interface PlaygroundState {
  prompt: string;
  sampling: SamplingSettings;
  useChatTemplate: boolean;
  /** Generated text so far (the prompt is not repeated): the loaded model as it is, adapter included. */
  output: string;
  tokens: number;
  running: boolean;
  /** The side generating now (a plain run is 'adapter': the model as it is), or null. */
  side: GenerationSide | null;
  result: GenerateResult | null;
  /** The last run compared with the adapter off: the base model's column below is shown. */
  compared: boolean;
  baseOutput: string;
  baseTokens: number;
  baseResult: GenerateResult | null;
  error: EngineFailure | null;
  callId: number | null;
  onnx: OnnxRunState;
}

export interface PlaygroundSlice {
  playground: PlaygroundState;
  patchPlayground(patch: Partial<PlaygroundState>): void;
  patchOnnx(patch: Partial<OnnxRunState>): void;
  setSampling(patch: Partial<SamplingSettings>): void;
}

export const DEFAULT_SAMPLING: SamplingSettings = { maxNewTokens: 48, temperature: 0, topK: 40, topP: 0.95, repetitionPenalty: 1, seed: 0 };

export const initialOnnxRunState: OnnxRunState = {
  running: false,
  output: '',
  tokens: 0,
  session: null,
  result: null,
  error: null,
  callId: null,
  kept: null,
};

export const initialPlaygroundState: PlaygroundState = {
  prompt: 'In the beginning God created',
  sampling: DEFAULT_SAMPLING,
  useChatTemplate: false,
  output: '',
  tokens: 0,
  running: false,
  side: null,
  result: null,
  compared: false,
  baseOutput: '',
  baseTokens: 0,
  baseResult: null,
  error: null,
  callId: null,
  onnx: initialOnnxRunState,
};

export const createPlaygroundSlice: StateCreator<AppState, [], [], PlaygroundSlice> = (set) => ({
  playground: initialPlaygroundState,
  patchPlayground: (patch) => set((state) => ({ playground: { ...state.playground, ...patch } })),
  patchOnnx: (patch) => set((state) => ({ playground: { ...state.playground, onnx: { ...state.playground.onnx, ...patch } } })),
  setSampling: (patch) => set((state) => ({ playground: { ...state.playground, sampling: { ...state.playground.sampling, ...patch } } })),
});
