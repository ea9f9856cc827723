// The "Export and import" panel: the model with the adapter merged in (a Hugging Face folder as a zip, or an ONNX
// file the playground can then run), and the import of an adapter file in place of the attached adapter (to
// continue training it or to try it in the playground). Also the adapter download's format choice with its
// button, which the train panel shows.

import { useId, type ChangeEvent } from 'react';
import { exportMerged, importAdapter, setAdapterFormat } from '../store/exportActions.ts';
import { useApp } from '../store/index.ts';
import { exportAdapter } from '../store/trainingActions.ts';
import type { AdapterDownloadFormat, ImportedAdapterSummary, MethodSettings } from '../worker/protocol.ts';
import { formatBytes, formatCount } from './format.ts';
import './ExportPanel.css';

/** The adapter download (train panel): the format choice and the button, disabled when the train panel says. */
export function AdapterDownload({ disabled }: { disabled: boolean }) {
  const format = useApp((s) => s.export.adapterFormat);
  return (
    <span className="adapter-download">
      <select aria-label="Adapter download format" data-testid="export-adapter-format" value={format} onChange={(e) => setAdapterFormat(e.target.value as AdapterDownloadFormat)}>
        <option value="safetensors">One .safetensors file</option>
        <option value="zip">.zip of the library's files</option>
      </select>
      <button type="button" className="secondary" data-testid="export-adapter" disabled={disabled} onClick={() => void exportAdapter(format)}>
        Download adapter
      </button>
    </span>
  );
}

function describeMethod(settings: MethodSettings): string {
  if (settings.method === 'adapter') return `bottleneck adapter (${settings.placement}, reduction factor ${settings.reductionFactor})`;
  return `${settings.method === 'qlora' ? 'QLoRA' : 'LoRA'} r = ${settings.r}, alpha = ${settings.alpha}`;
}

function importedText(imported: ImportedAdapterSummary): string {
  const { attached } = imported;
  return `Imported ${imported.source}: ${describeMethod(attached.settings)}, ${formatCount(attached.trainableParameters)} trainable parameters. Training continues it; the playground uses it.`;
}

const PHASES = { read: 'Merging and reading back', write: 'Writing' } as const;

export function ExportPanel() {
  const id = useId();
  const modelReady = useApp((s) => s.model.status === 'ready');
  // A run owns the adapter from its start to its end: exports may read it while it is paused, an import may not replace it.
  const running = useApp((s) => s.training.running);
  const phase = useApp((s) => s.training.phase);
  const attachedMethod = useApp((s) => s.training.attached?.settings.method ?? null);
  const { busy, progress, lastExport, exportError, imported, importError } = useApp((s) => s.export);
  const bottleneck = attachedMethod === 'adapter';
  const canExport = modelReady && (phase === 'idle' || phase === 'paused') && busy === null && !bottleneck;
  const canImport = modelReady && !running && busy === null;

  const onPick = (event: ChangeEvent<HTMLInputElement>) => {
    const files = [...(event.target.files ?? [])];
    event.target.value = ''; // the same file can be picked again
    if (files.length > 0) void importAdapter(files);
  };

  let exportText: string;
  if (busy === 'zip' || busy === 'onnx') {
    exportText = progress ? `${PHASES[progress.phase]}: ${progress.item}` : 'Starting the export…';
  } else if (lastExport) {
    exportText = `Downloaded ${lastExport.fileName} (${formatBytes(lastExport.size)}).${lastExport.format === 'onnx' ? ' The playground can run it.' : ''}`;
  } else {
    exportText = modelReady ? 'Ready to export.' : 'Load a model to export it.';
  }

  return (
    <section className="panel export-panel" aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Export and import</h2>
      <div className="stack">
        <p className="hint">
          The model with the attached LoRA or QLoRA adapter folded into its weights (f32; QLoRA into the dequantized weights): a zip of a Hugging Face
          folder (config.json, model.safetensors, the tokenizer files) for transformers, or one .onnx file for ONNX Runtime. The attached adapter stays as it
          is.
        </p>
        {bottleneck && (
          <p className="hint export-note">
            A bottleneck adapter cannot be merged: its non-linearity sits between two projections, so no linear weight can absorb it. Download the adapter
            (AdapterHub files) and use it with the base model.
          </p>
        )}
        <div className="actions">
          <button type="button" data-testid="export-merged" disabled={!canExport} onClick={() => void exportMerged('zip')}>
            Download merged model (.zip)
          </button>
          <button type="button" className="secondary" data-testid="export-onnx" disabled={!canExport} onClick={() => void exportMerged('onnx')}>
            Download ONNX
          </button>
        </div>
        <div className="export-progress">
          <progress
            max={progress?.total ?? 1}
            value={progress?.done ?? 0}
            aria-label="Export progress"
            className={busy === 'zip' || busy === 'onnx' ? undefined : 'export-idle'}
          />
          <p className="status" role="status" data-testid="export-status">
            {exportText}
          </p>
        </div>
        {exportError && (
          <p className="error" role="alert">
            {exportError.message}
          </p>
        )}

        <div className="field">
          <label htmlFor={`${id}-i`}>Import an adapter</label>
          <input id={`${id}-i`} type="file" data-testid="import-adapter" accept=".safetensors,.zip,.json" multiple disabled={!canImport} onChange={onPick} aria-describedby={`${id}-ih`} />
          <p className="hint" id={`${id}-ih`}>
            A tabtune adapter .safetensors, an adapter .zip (PEFT or AdapterHub files), or adapter_config.json and adapter_model.safetensors picked together. It
            replaces the attached adapter. LoRA files go onto the f32 weights, or onto NF4 weights when the method is QLoRA.
          </p>
        </div>
        <p className="status import-status" role="status" data-testid="import-status">
          {busy === 'import' ? 'Checking and importing…' : imported ? importedText(imported) : ''}
        </p>
        {imported && imported.warnings.length > 0 && (
          <ul className="hint export-warnings">
            {imported.warnings.map((warning) => (
              <li key={warning}>{warning}</li>
            ))}
          </ul>
        )}
        {importError && (
          <p className="error" role="alert" data-testid="import-error">
            {importError.message}
          </p>
        )}
      </div>
    </section>
  );
}
