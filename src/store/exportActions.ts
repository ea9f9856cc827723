// Export and import through the worker: the merged model (a Hugging Face folder zip, or an ONNX file the worker
// also keeps for the playground) and the import of an adapter file in place of the attached adapter, which then
// becomes the training slice's settings and attached adapter (so that training continues it).
//
// The adapter download itself is trainingActions.exportAdapter (the train panel's button); only its format
// choice is set here.

import type { AdapterDownloadFormat, MergedDownloadFormat } from '../worker/protocol.ts';
import type { ExportState } from './export.ts';
import { download, engine, failureOf, state } from './engineClient.ts';
import { refreshKeptOnnx } from './playgroundActions.ts';

const patch = (partial: Partial<ExportState>) => state().patchExport(partial);

export function setAdapterFormat(format: AdapterDownloadFormat): void {
  patch({ adapterFormat: format });
}

const MIME: Record<MergedDownloadFormat, string> = { zip: 'application/zip', onnx: 'application/octet-stream' };

/** Download the model with the attached adapter merged in, as a zip of a Hugging Face folder or an .onnx file. */
export async function exportMerged(format: MergedDownloadFormat): Promise<void> {
  if (state().export.busy !== null) return;
  patch({ busy: format, progress: null, lastExport: null, exportError: null });
  try {
    const { fileName, bytes } = await engine().call('exportMerged', { format }, (event) => {
      if (event.type === 'exportProgress') patch({ progress: { phase: event.phase, item: event.item, done: event.done, total: event.total } });
    });
    download(bytes, fileName, MIME[format]);
    patch({ busy: null, progress: null, lastExport: { fileName, size: bytes.byteLength, format } });
    if (format === 'onnx') void refreshKeptOnnx(); // the playground can run it now
  } catch (error) {
    patch({ busy: null, progress: null, exportError: failureOf(error) });
  }
}

/**
 * Import picked adapter files in place of the attached adapter. The training slice takes the imported
 * adapter's settings and summary, so that the next run continues it and the method panel shows it.
 */
export async function importAdapter(files: File[]): Promise<void> {
  if (state().export.busy !== null || state().training.running) return;
  patch({ busy: 'import', imported: null, importError: null });
  try {
    const imported = await engine().call('importAdapter', { files, settings: state().training.settings });
    state().patchTraining({ settings: imported.attached.settings, attached: imported.attached, error: null });
    patch({ busy: null, imported });
  } catch (error) {
    patch({ busy: null, importError: failureOf(error) });
  }
}
