// Choosing and loading a model: the built-in demo (the default, offline), a curated hub model with its download
// size and memory needs, any hub id or URL, or files and folders from this computer (picked or dropped). Then
// the download/upload progress, the memory estimate against the device, and the architecture summary. Hub
// downloads go to the "Hub address" setting (a mirror or a local server; empty: huggingface.co), kept across reloads.

import { Fragment, useId, useRef, useState, type DragEvent } from 'react';
import { filesFromDataTransfer } from '../io/sources/browserFiles.ts';
import { cancelLoad, demoSource, loadModel, unloadModel } from '../store/modelActions.ts';
import { useApp } from '../store/index.ts';
import type { LoadProgress } from '../store/model.ts';
import { DEFAULT_HUB_ADDRESS } from '../store/ui.ts';
import type { CatalogEntry, MemoryEstimate, ModelSource, ModelSummary } from '../worker/protocol.ts';
import { formatBytes, formatCount } from './format.ts';

type Choice = 'demo' | 'custom' | 'files' | `hub:${string}`;

interface Picked {
  path: string;
  file: File;
}

export function ModelPanel() {
  const model = useApp((s) => s.model);
  const gpu = useApp((s) => s.gpu);
  const patchModel = useApp((s) => s.patchModel);
  const [choice, setChoice] = useState<Choice>('demo');
  const [spec, setSpec] = useState('');
  const [picked, setPicked] = useState<Picked[]>([]);
  const hubAddress = useApp((s) => s.hubAddress);
  const setHubAddress = useApp((s) => s.setHubAddress);
  const [addressDraft, setAddressDraft] = useState(hubAddress);
  const [addressProblem, setAddressProblem] = useState<string | null>(null);
  const ids = { select: useId(), spec: useId(), files: useId(), folder: useId(), address: useId(), nf4Hint: useId() };
  const busy = model.status === 'loading';
  const gpuReady = gpu.state === 'ready';
  const fromHub = choice === 'custom' || choice.startsWith('hub:');
  const entry = choice.startsWith('hub:') ? (model.catalog?.find((e) => `hub:${e.id}` === choice) ?? null) : null;

  const hubSource = (repo: string): ModelSource => ({ kind: 'hub', spec: repo, ...(hubAddress ? { endpoint: hubAddress } : {}) });
  const source = (): { source: ModelSource; label: string } | null => {
    if (choice === 'demo') return { source: demoSource(), label: 'Demo model' };
    if (fromHub && addressProblem !== null) return null;
    if (choice === 'custom') return spec.trim() ? { source: hubSource(spec.trim()), label: spec.trim() } : null;
    if (choice === 'files') return picked.length ? { source: { kind: 'files', files: picked }, label: `${picked.length} local files` } : null;
    return { source: hubSource(choice.slice(4)), label: choice.slice(4) };
  };
  const chosen = source();
  const load = (ignoreBudget = false) => {
    if (chosen) void loadModel(chosen.source, chosen.label, ignoreBudget);
  };

  return (
    <section className="panel" aria-labelledby="model-heading">
      <h2 id="model-heading">Model</h2>
      <form
        className="stack"
        onSubmit={(event) => {
          event.preventDefault();
          load();
        }}
      >
        <div className="field">
          <label htmlFor={ids.select}>Model to load</label>
          <select id={ids.select} data-testid="model-select" value={choice} onChange={(event) => setChoice(event.target.value as Choice)} disabled={busy}>
            <option value="demo">Built-in demo model (offline)</option>
            <optgroup label="From the Hugging Face hub">
              {(model.catalog ?? []).map((e) => (
                <option key={e.id} value={`hub:${e.id}`}>
                  {e.label} — {formatBytes(e.downloadBytes)} download
                </option>
              ))}
            </optgroup>
            <option value="custom">Another hub model or URL…</option>
            <option value="files">Files on this computer…</option>
          </select>
        </div>

        <div className="choice-details">
          {choice === 'demo' && (
            <p className="hint">
              A small Llama-architecture model trained on the King James Bible, shipped with the app: it loads in seconds and works offline.
            </p>
          )}
          {entry && <CatalogFacts entry={entry} />}
          {choice === 'custom' && (
            <div className="field">
              <label htmlFor={ids.spec}>Hub repository id or URL</label>
              <input
                id={ids.spec}
                type="text"
                inputMode="url"
                autoComplete="off"
                spellCheck={false}
                placeholder="org/name, org/name@revision, or https://huggingface.co/org/name"
                value={spec}
                onChange={(event) => setSpec(event.target.value)}
                disabled={busy}
              />
              <p className="hint">Needs config.json, a tokenizer.json and safetensors weights (GPT-2, Llama, Mistral or Qwen2). Files are cached in this browser.</p>
            </div>
          )}
          {choice === 'files' && <FilePicker ids={ids} picked={picked} onPick={setPicked} disabled={busy} />}
          {fromHub && (
            <div className="field">
              <label htmlFor={ids.address}>Hub address</label>
              <input
                id={ids.address}
                data-testid="hub-address"
                type="url"
                inputMode="url"
                autoComplete="off"
                spellCheck={false}
                placeholder={DEFAULT_HUB_ADDRESS}
                value={addressDraft}
                aria-invalid={addressProblem !== null}
                onChange={(event) => {
                  setAddressDraft(event.target.value);
                  setAddressProblem(setHubAddress(event.target.value));
                }}
                disabled={busy}
              />
              {addressProblem !== null ? (
                <p className="hint" role="alert">
                  Hub address: {addressProblem}
                </p>
              ) : (
                <p className="hint">Where hub models are downloaded from: empty for {DEFAULT_HUB_ADDRESS}, or a mirror with the same layout. Kept in this browser.</p>
              )}
            </div>
          )}
        </div>

        <div className="field small">
          <label className="check">
            <input
              type="checkbox"
              data-testid="model-nf4"
              checked={model.weights === 'nf4'}
              disabled={busy}
              aria-describedby={ids.nf4Hint}
              onChange={(e) => patchModel({ weights: e.target.checked ? 'nf4' : 'f32' })}
            />
            Linear layers in NF4 (QLoRA's 4-bit base: about 7× less memory for them; LoRA and adapters need f32)
          </label>
          <p className="hint" id={ids.nf4Hint}>
            A checkpoint stored in 4-bit (bitsandbytes, such as a "-bnb-4bit" hub model) loads as it is stored, whichever you choose.
          </p>
        </div>
        <div className="actions">
          <button type="submit" data-testid="model-load" disabled={!gpuReady || busy || chosen === null}>
            Load
          </button>
          {busy && (
            <button type="button" onClick={cancelLoad}>
              Cancel
            </button>
          )}
          {model.status === 'ready' && !busy && (
            <button type="button" className="secondary" data-testid="model-unload" onClick={() => void unloadModel()}>
              Unload
            </button>
          )}
        </div>
      </form>

      <ProgressLine progress={busy ? model.progress : null} />
      <p className="status" role="status" data-testid="model-status">
        {statusText(model.status, model.sourceLabel, model.summary)}
      </p>
      {model.error && model.error.kind !== 'cancelled' && (
        <div className="error" role="alert">
          <p>{model.error.message}</p>
          {model.error.kind === 'doesNotFit' && model.error.estimate?.refusalOverridable && (
            <button type="button" className="secondary" onClick={() => load(true)} disabled={busy}>
              Load anyway
            </button>
          )}
          {model.error.retryable && (
            <button type="button" className="secondary" onClick={() => load()} disabled={busy}>
              Try again
            </button>
          )}
        </div>
      )}
      {model.estimate && <EstimateFacts estimate={model.estimate} label={model.sourceLabel} />}
      {model.summary && <SummaryFacts summary={model.summary} />}
    </section>
  );
}

function statusText(status: string, label: string | null, summary: ModelSummary | null): string {
  if (status === 'loading') return `Loading ${label ?? 'the model'}…`;
  if (status === 'ready' && summary) return `ready: ${summary.name} (${summary.modelType}, ${formatCount(summary.parameterCount)} parameters${summary.weights === 'f32' ? '' : `, linears in ${summary.weights.toUpperCase()}`})`;
  return 'No model loaded.';
}

const PHASES: Record<LoadProgress['phase'], string> = {
  check: 'Checking the configuration',
  fetch: 'Downloading',
  tokenizer: 'Reading the tokenizer',
  upload: 'Uploading weights to the GPU',
};

/** Always the same height, so the panel does not jump when a load starts or ends. */
function ProgressLine({ progress }: { progress: LoadProgress | null }) {
  const labelId = useId();
  const fraction = progress && progress.total ? Math.min(1, progress.done / progress.total) : null;
  const amount = !progress
    ? ''
    : progress.unit === 'bytes'
      ? `${formatBytes(progress.done)}${progress.total !== null ? ` of ${formatBytes(progress.total)}` : ''}`
      : `${progress.done} of ${progress.total ?? '?'} tensors`;
  return (
    <div className="progress" aria-hidden={progress === null}>
      <progress aria-labelledby={labelId} max={1} value={fraction ?? undefined} hidden={progress === null} />
      <span id={labelId} className="progress-label">
        {progress ? `${PHASES[progress.phase]}${progress.phase === 'fetch' ? ` ${progress.item}` : ''} ${amount}` : ''}
      </span>
    </div>
  );
}

function CatalogFacts({ entry }: { entry: CatalogEntry }) {
  return (
    <div>
      <p className="hint">{entry.note}</p>
      <dl className="facts">
        <dt>Parameters</dt>
        <dd>{formatCount(entry.parameterCount)}</dd>
        <dt>Download</dt>
        <dd>{formatBytes(entry.downloadBytes)}</dd>
        <dt>Memory, f32</dt>
        <dd>
          {formatBytes(entry.f32.totalBytes)} <Verdict estimate={entry.f32} />
        </dd>
        <dt>Memory, NF4</dt>
        <dd>
          {formatBytes(entry.nf4.totalBytes)} <Verdict estimate={entry.nf4} /> <span className="hint">(QLoRA's base: load with "Linear layers in NF4")</span>
        </dd>
      </dl>
    </div>
  );
}

function Verdict({ estimate }: { estimate: MemoryEstimate }) {
  if (estimate.refusal) return <span className="verdict bad">does not fit: {estimate.refusal}</span>;
  if (estimate.maxBindingBytes === 0) return null; // no device known yet
  return <span className="verdict good">fits</span>;
}

function EstimateFacts({ estimate, label }: { estimate: MemoryEstimate; label: string | null }) {
  return (
    <div className="estimate">
      <h3>Memory estimate{label ? `: ${label}` : ''}</h3>
      <p className="hint">For {estimate.purpose}.</p>
      <dl className="facts">
        {estimate.parts.map((part) => (
          <Fragment key={part.label}>
            <dt>{part.label}</dt>
            <dd>{formatBytes(part.bytes)}</dd>
          </Fragment>
        ))}
        <dt>Total</dt>
        <dd>
          <strong>{formatBytes(estimate.totalBytes)}</strong>
          {estimate.memoryBudgetBytes !== null && ` of about ${formatBytes(estimate.memoryBudgetBytes)} available`} <Verdict estimate={estimate} />
        </dd>
        <dt>Largest tensor</dt>
        <dd>
          {formatBytes(estimate.largestTensor.bytes)} ({estimate.largestTensor.name}); the device allows {formatBytes(estimate.maxBindingBytes)}
        </dd>
      </dl>
    </div>
  );
}

function SummaryFacts({ summary }: { summary: ModelSummary }) {
  return (
    <div className="summary">
      <h3>Architecture</h3>
      <dl className="facts" data-testid="model-summary">
        <dt>Model</dt>
        <dd>{summary.name}</dd>
        <dt>Type</dt>
        <dd>
          {summary.modelType} ({summary.family === 'gpt2' ? 'GPT-2: LayerNorm, learned positions, GELU' : 'Llama family: RMSNorm, rotary positions, SwiGLU'})
        </dd>
        <dt>Parameters</dt>
        <dd>
          {formatCount(summary.parameterCount)} ({formatBytes(summary.gpuWeightBytes)} on the GPU as {summary.weights === 'f32' ? 'f32' : `${summary.weights.toUpperCase()} linears${summary.prequantized ? ' as the checkpoint stores them' : ''}, the rest f32`}
          {summary.storedDtype ? `; stored as ${summary.storedDtype}` : ''})
        </dd>
        <dt>Layers</dt>
        <dd>{summary.layers}</dd>
        <dt>Hidden size</dt>
        <dd>
          {summary.hiddenSize} (MLP {summary.intermediateSize})
        </dd>
        <dt>Attention</dt>
        <dd>
          {summary.heads} heads of {summary.headDim}
          {summary.kvHeads !== summary.heads ? `, ${summary.kvHeads} key/value heads (grouped-query)` : ''}
        </dd>
        <dt>Vocabulary</dt>
        <dd>
          {summary.vocabSize} embeddings{summary.tiedEmbeddings ? ', tied to the output head' : ''}; tokenizer {summary.tokenizer.type} with{' '}
          {summary.tokenizer.vocabSize} tokens
        </dd>
        <dt>Context</dt>
        <dd>{summary.maxPositions} positions</dd>
        <dt>Chat template</dt>
        <dd>{summary.hasChatTemplate ? 'yes' : 'no'}</dd>
      </dl>
      {summary.warnings.length > 0 && (
        <ul className="warnings" aria-label="Warnings">
          {summary.warnings.slice(0, 5).map((warning) => (
            <li key={warning}>{warning}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

function FilePicker({
  ids,
  picked,
  onPick,
  disabled,
}: {
  ids: { files: string; folder: string };
  picked: Picked[];
  onPick: (files: Picked[]) => void;
  disabled: boolean;
}) {
  const [dragging, setDragging] = useState(false);
  const [dropError, setDropError] = useState<string | null>(null);
  const filesInput = useRef<HTMLInputElement>(null);
  const folderInput = useRef<HTMLInputElement>(null);
  const fromList = (list: FileList | null) => onPick(Array.from(list ?? [], (file) => ({ path: file.webkitRelativePath || file.name, file })));
  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    setDropError(null);
    filesFromDataTransfer(event.dataTransfer.items)
      .then((files) => onPick(files.map((f) => ('path' in f ? { path: f.path, file: f.file as File } : { path: f.name, file: f as File }))))
      .catch((error: unknown) => setDropError(error instanceof Error ? error.message : String(error)));
  };
  return (
    <div
      className={`dropzone${dragging ? ' dragging' : ''}`}
      onDragOver={(event) => {
        event.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={onDrop}
    >
      <p className="hint">Pick a model folder (config.json, tokenizer.json, *.safetensors) or its files, or drop them here. They are read in place, never uploaded.</p>
      <div className="actions">
        <input id={ids.folder} ref={folderInput} type="file" className="visually-hidden" multiple {...{ webkitdirectory: '' }} onChange={(e) => fromList(e.target.files)} disabled={disabled} />
        <button type="button" className="secondary" onClick={() => folderInput.current?.click()} disabled={disabled}>
          Choose a folder…
        </button>
        <input id={ids.files} ref={filesInput} type="file" data-testid="model-files" className="visually-hidden" multiple onChange={(e) => fromList(e.target.files)} disabled={disabled} />
        <button type="button" className="secondary" onClick={() => filesInput.current?.click()} disabled={disabled}>
          Choose files…
        </button>
      </div>
      <p className="hint" aria-live="polite">
        {dropError ?? (picked.length ? `${picked.length} files: ${picked.slice(0, 6).map((p) => p.path).join(', ')}${picked.length > 6 ? ', …' : ''}` : 'No files chosen.')}
      </p>
    </div>
  );
}
