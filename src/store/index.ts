// The app's one zustand store, assembled from its slices. State is plain serialisable data; actions.ts talks
// to the engine worker and writes the results here.

import { create } from 'zustand';
import { createExportSlice, type ExportSlice } from './export.ts';
import { createGpuSlice, type GpuSlice } from './gpu.ts';
import { createModelSlice, type ModelSlice } from './model.ts';
import { createPlaygroundSlice, type PlaygroundSlice } from './playground.ts';
import { createShareSlice, type ShareSlice } from './share.ts';
import { createTrainingSlice, type TrainingSlice } from './training.ts';
import { createUiSlice, type UiSlice } from './ui.ts';

export type AppState = ExportSlice & GpuSlice & ModelSlice & PlaygroundSlice & ShareSlice & TrainingSlice & UiSlice;

export const useApp = create<AppState>()((...args) => ({
  ...createExportSlice(...args),
  ...createGpuSlice(...args),
  ...createModelSlice(...args),
  ...createPlaygroundSlice(...args),
  ...createShareSlice(...args),
  ...createTrainingSlice(...args),
  ...createUiSlice(...args),
}));
