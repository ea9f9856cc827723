// The data panel: the dataset as pasted text or as a dropped or chosen .txt/.jsonl file, what the worker finds in
// it (format, examples, tokens, bad lines), and the first examples as the model sees them.
//
// Large texts: a controlled textarea holding megabytes makes every keystroke slow, so a dataset longer than
// EDITABLE_CHARS is not put in one. It is shown as its size, line count and a read-only head (the first
// HEAD_LINES lines, at most HEAD_CHARS characters), with a button to clear it; the whole text still goes to the
// worker. Smaller files land in the textarea, where they can be edited (an edit makes them pasted text).

import { useEffect, useId, useMemo, useRef, useState, type DragEvent } from 'react';
import { useApp } from '../store/index.ts';
import { inspectDataset } from '../store/trainingActions.ts';
import { DatasetPreview } from './DatasetPreview.tsx';
import { DATASET_FILE_ACCEPT, readDatasetFile } from './datasetFile.ts';
import { EXAMPLE_DATASET } from './exampleDataset.ts';
import { formatBytes, formatCount } from './format.ts';
import './DataPanel.css';

/** Longer texts are shown read-only (see the file header). */
const EDITABLE_CHARS = 256 * 1024;
const HEAD_LINES = 40;
const HEAD_CHARS = 8 * 1024;

export function DataPanel() {
  const dataset = useApp((s) => s.training.dataset);
  const fileName = useApp((s) => s.training.datasetFileName);
  const summary = useApp((s) => s.training.datasetSummary);
  const running = useApp((s) => s.training.running);
  const modelReady = useApp((s) => s.model.status === 'ready');
  const seqLen = useApp((s) => s.training.seqLen);
  const patch = useApp((s) => s.patchTraining);
  const id = useId();
  const [reading, setReading] = useState(false);
  // Ask the worker what it finds, once typing pauses (the context, seqLen + 1 tokens, decides splits and cuts).
  useEffect(() => {
    let current = true;
    const timer = setTimeout(() => {
      setReading(true);
      void inspectDataset().finally(() => current && setReading(false));
    }, 400);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [dataset, modelReady, seqLen]);
  const large = dataset.length > EDITABLE_CHARS;
  // A large text takes the worker a while: say so rather than show the previous text's summary meanwhile.
  const stale = reading && large;
  return (
    <section className="panel" aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Data</h2>
      <DatasetSource
        id={id}
        dataset={dataset}
        fileName={fileName}
        large={large}
        disabled={running}
        onText={(text, name) => patch({ dataset: text, datasetFileName: name })}
      />
      <div role="status" data-testid="dataset-summary" aria-busy={reading}>
        {stale ? (
          <p className="status">Reading {fileName ?? 'the dataset'} with the model's tokenizer…</p>
        ) : summary ? (
          <>
            <p className="status">
              {summary.format}: {summary.examples} examples, {formatCount(summary.tokens)} tokens ({formatCount(summary.targetTokens)} trained).
            </p>
            {summary.problem && <p className="error">{summary.problem}</p>}
            {summary.issues.length > 0 && (
              <ul className="issues" aria-label="Bad lines">
                {summary.issues.map((issue) => (
                  <li key={`${issue.line}:${issue.message}`}>{withLineNumber(issue)}</li>
                ))}
                {summary.issueCount > summary.issues.length && <li>… {summary.issueCount - summary.issues.length} more bad lines</li>}
              </ul>
            )}
          </>
        ) : (
          <p className="status">{modelReady ? 'Paste a dataset, or drop a file.' : 'Load a model to read the dataset with its tokenizer.'}</p>
        )}
      </div>
      {!stale && summary && summary.preview.length > 0 && <DatasetPreview preview={summary.preview} />}
    </section>
  );
}

/** An issue as a list item: its line number first, once (most messages already start with "line N"). */
function withLineNumber({ line, message }: { line: number; message: string }): string {
  return /^line \d+\b/.test(message) ? message : `line ${line}: ${message}`;
}

/** The text box (or, for a large text, its head) inside a drop zone, with a file picker and the file's name. */
function DatasetSource({
  id,
  dataset,
  fileName,
  large,
  disabled,
  onText,
}: {
  id: string;
  dataset: string;
  fileName: string | null;
  large: boolean;
  disabled: boolean;
  onText: (text: string, fileName: string | null) => void;
}) {
  const [dragging, setDragging] = useState(false);
  const [fileError, setFileError] = useState<string | null>(null);
  const [loading, setLoading] = useState<string | null>(null);
  const input = useRef<HTMLInputElement>(null);
  // dragenter/dragleave fire for every child crossed: count them so the highlight stays while over the zone.
  const depth = useRef(0);
  const carriesFiles = (event: DragEvent) => event.dataTransfer.types.includes('Files');

  const load = async (files: FileList | null) => {
    if (!files || files.length === 0 || disabled) return;
    setFileError(null);
    if (files.length > 1) {
      setFileError(`Drop one dataset file at a time (got ${files.length}).`);
      return;
    }
    const file = files[0];
    setLoading(file.name);
    try {
      onText(await readDatasetFile(file), file.name);
    } catch (error) {
      setFileError(error instanceof Error ? error.message : String(error));
    } finally {
      setLoading(null);
    }
  };

  return (
    <div
      className={`dropzone dataset-drop${dragging ? ' dragging' : ''}`}
      data-testid="dataset-drop"
      onDragEnter={(event) => {
        if (!carriesFiles(event) || disabled) return;
        event.preventDefault();
        depth.current++;
        setDragging(true);
      }}
      onDragOver={(event) => {
        if (!carriesFiles(event) || disabled) return;
        event.preventDefault(); // allows the drop (and keeps the browser from opening the file instead)
        event.dataTransfer.dropEffect = 'copy';
      }}
      onDragLeave={(event) => {
        if (!carriesFiles(event)) return;
        depth.current = Math.max(0, depth.current - 1);
        if (depth.current === 0) setDragging(false);
      }}
      onDrop={(event) => {
        if (!carriesFiles(event)) return; // dropped text goes into the textarea as usual
        event.preventDefault();
        depth.current = 0;
        setDragging(false);
        void load(event.dataTransfer.files);
      }}
    >
      {large ? (
        <LargeText id={id} dataset={dataset} fileName={fileName} />
      ) : (
        <div className="field">
          <label htmlFor={`${id}-d`}>Dataset: plain text (paragraphs) or JSON lines (text, prompt/completion, chat messages)</label>
          <textarea id={`${id}-d`} data-testid="dataset-input" rows={8} value={dataset} disabled={disabled} onChange={(e) => onText(e.target.value, null)} />
        </div>
      )}
      <div className="actions">
        <input
          ref={input}
          type="file"
          className="visually-hidden"
          tabIndex={-1}
          aria-label="Dataset file"
          data-testid="dataset-file"
          accept={DATASET_FILE_ACCEPT}
          disabled={disabled}
          onChange={(e) => {
            void load(e.target.files);
            e.target.value = ''; // choosing the same file again reads it again
          }}
        />
        <button type="button" className="secondary" onClick={() => input.current?.click()} disabled={disabled}>
          Choose a file…
        </button>
        <button type="button" className="secondary" data-testid="dataset-example" onClick={() => onText(EXAMPLE_DATASET, null)} disabled={disabled}>
          Use an example
        </button>
        {(fileName !== null || large) && (
          <button type="button" className="secondary" onClick={() => onText('', null)} disabled={disabled}>
            Clear
          </button>
        )}
      </div>
      <p className="hint" aria-live="polite" data-testid="dataset-file-name">
        {loading ? `Reading ${loading}…` : fileName ? <>From the file <strong>{fileName}</strong>.</> : 'Or drop a .txt or .jsonl file here (UTF-8 text, up to 32 MiB).'}
      </p>
      {fileError && (
        <p className="error" role="alert">
          {fileError}
        </p>
      )}
    </div>
  );
}

/** A text too long to edit: its size, line count and first lines, read-only. */
function LargeText({ id, dataset, fileName }: { id: string; dataset: string; fileName: string | null }) {
  const facts = useMemo(() => {
    let newlines = 0;
    let headEnd = -1; // where the first HEAD_LINES lines end
    for (let at = dataset.indexOf('\n'); at >= 0; at = dataset.indexOf('\n', at + 1)) {
      newlines++;
      if (newlines === HEAD_LINES) headEnd = at;
    }
    const lines = newlines + (dataset.endsWith('\n') ? 0 : 1);
    const cut = Math.min(headEnd < 0 ? dataset.length : headEnd, HEAD_CHARS);
    return { bytes: new TextEncoder().encode(dataset).byteLength, lines, head: dataset.slice(0, cut), shownAll: cut === dataset.length };
  }, [dataset]);
  return (
    <div className="field">
      <p id={`${id}-l`} className="dataset-large-label">
        {fileName ?? 'Pasted text'}: {formatBytes(facts.bytes)}, {formatCount(facts.lines)} lines. Too long to edit here; the first lines:
      </p>
      <pre className="dataset-head" tabIndex={0} aria-labelledby={`${id}-l`} data-testid="dataset-head">
        {facts.head}
        {!facts.shownAll && '\n…'}
      </pre>
    </div>
  );
}
