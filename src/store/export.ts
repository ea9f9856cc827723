// The export slice: the adapter download's format, the merged download or import in progress with its
// progress, and what the last of each produced or why it failed.

import type { StateCreator } from 'zustand';
import type { AdapterDownloadFormat, EngineFailure, ImportedAdapterSummary, MergedDownloadFormat } from '../worker/protocol.ts';
import type { AppState } from './index.ts';

export interface ExportProgress {
  phase: 'read' | 'write';
  item: string;
  done: number;
  total: number;
}

export interface ExportState {
  /** The adapter download's format (the train panel's choice). */
  adapterFormat: AdapterDownloadFormat;
  /** What runs now: a merged download, or an import. */
  busy: MergedDownloadFormat | 'import' | null;
  progress: ExportProgress | null;
  /** The last merged download. */
  lastExport: { fileName: string; size: number; format: MergedDownloadFormat } | null;
  exportError: EngineFailure | null;
  /** The last import: what was imported, and its warnings. */
  imported: ImportedAdapterSummary | null;
  importError: EngineFailure | null;
}

export interface ExportSlice {
  export: ExportState;
  patchExport(patch: Partial<ExportState>): void;
}

export const initialExportState: ExportState = {
  adapterFormat: 'safetensors',
  busy: null,
  progress: null,
  lastExport: null,
  exportError: null,
  imported: null,
  importError: null,
};

export const createExportSlice: StateCreator<AppState, [], [], ExportSlice> = (set) => ({
  export: initialExportState,
  patchExport: (patch) => set((state) => ({ export: { ...state.export, ...patch } })),
});
