// Generate from the loaded model: a prompt, sampling settings, and the output streaming in token by token.
// Ctrl+Enter (⌘+Enter) in the prompt generates. With an adapter attached, "Compare with the adapter off" runs the
// prompt twice, with the adapter and without, into two labelled columns side by side (stacked when narrow).
// A second panel runs an exported .onnx file with ONNX Runtime Web on WebGPU, with the same prompt and settings.
// Output boxes keep their size, so nothing jumps while they fill.

import { useEffect, useId, useState } from 'react';
import { compareWithAdapterOff, generate, refreshKeptOnnx, runOnnx, stopGenerating, stopOnnx } from '../store/playgroundActions.ts';
import { useApp } from '../store/index.ts';
import type { GenerateResult, SamplingSettings, StopReason } from '../worker/protocol.ts';
import { formatBytes } from './format.ts';
import './Playground.css';

const STOP_REASONS: Record<StopReason, string> = {
  eos: 'the model ended the text',
  maxNewTokens: 'reached the token limit',
  context: "reached the end of the model's context",
  aborted: 'stopped',
};

interface NumberSetting {
  key: keyof SamplingSettings;
  label: string;
  min: number;
  max: number;
  step: number;
  integer: boolean;
  hint: string;
}

const SETTINGS: NumberSetting[] = [
  { key: 'maxNewTokens', label: 'Max new tokens', min: 1, max: 1024, step: 1, integer: true, hint: 'at most' },
  { key: 'temperature', label: 'Temperature', min: 0, max: 2, step: 0.05, integer: false, hint: '0 is greedy' },
  { key: 'topK', label: 'Top-k', min: 0, max: 1000, step: 1, integer: true, hint: '0 is off' },
  { key: 'topP', label: 'Top-p', min: 0.01, max: 1, step: 0.01, integer: false, hint: '1 is off' },
  { key: 'repetitionPenalty', label: 'Repetition penalty', min: 1, max: 2, step: 0.05, integer: false, hint: '1 is off' },
  { key: 'seed', label: 'Seed', min: 0, max: 2 ** 31 - 1, step: 1, integer: true, hint: 'for sampling' },
];

/** Tokens per second after the first token (the first includes the prompt's forward pass), or null. */
function decodeRate(result: GenerateResult): number | null {
  return result.decodeMs > 0 && result.tokenIds.length > 1 ? ((result.tokenIds.length - 1) / result.decodeMs) * 1000 : null;
}

/** "8 tokens after a 5-token prompt; reached the token limit; 12.3 tokens/s" */
function describeRun(result: GenerateResult): string {
  const rate = decodeRate(result);
  return `${result.tokenIds.length} tokens after a ${result.promptTokens}-token prompt; ${STOP_REASONS[result.stopReason]}${rate !== null ? `; ${rate.toFixed(1)} tokens/s` : ''}`;
}

export function Playground() {
  return (
    <>
      <GeneratePanel />
      <OnnxPanel />
    </>
  );
}

function GeneratePanel() {
  const playground = useApp((s) => s.playground);
  const modelReady = useApp((s) => s.model.status === 'ready' && s.model.summary !== null);
  const hasChatTemplate = useApp((s) => s.model.summary?.hasChatTemplate ?? false);
  const adapterAttached = useApp((s) => s.training.attached !== null);
  const patch = useApp((s) => s.patchPlayground);
  const promptId = useId();
  const outputId = useId();
  const baseOutputId = useId();
  const compareHintId = useId();
  const busy = playground.running || playground.onnx.running;
  const canRun = modelReady && !busy && playground.prompt.length > 0;
  const canCompare = canRun && adapterAttached;
  const { result, baseResult } = playground;

  let status: string;
  if (playground.running && playground.side === 'base') status = `Generating with the adapter off… ${playground.baseTokens} tokens`;
  else if (playground.running) status = `Generating${playground.compared ? ' with the adapter' : ''}… ${playground.tokens} tokens`;
  else if (playground.compared && result && baseResult) status = `Compared: ${result.tokenIds.length} tokens with the adapter, ${baseResult.tokenIds.length} with it off, after a ${result.promptTokens}-token prompt.`;
  else if (result) status = `${describeRun(result)}.`;
  else status = modelReady ? 'Ready to generate.' : 'Load a model to generate.';

  return (
    <section className="panel playground" aria-labelledby="playground-heading">
      <h2 id="playground-heading">Playground</h2>
      <form
        className="stack"
        onSubmit={(event) => {
          event.preventDefault();
          if (canRun) void generate();
        }}
      >
        <div className="field">
          <label htmlFor={promptId}>Prompt</label>
          <textarea
            id={promptId}
            data-testid="generate-prompt"
            rows={4}
            value={playground.prompt}
            onChange={(event) => patch({ prompt: event.target.value })}
            onKeyDown={(event) => {
              if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) && canRun) {
                event.preventDefault();
                void generate();
              }
            }}
            aria-describedby={`${promptId}-hint`}
          />
          <p className="hint" id={`${promptId}-hint`}>
            Ctrl+Enter generates. The model continues the text{hasChatTemplate ? ', or answers it as a chat message' : ''}.
          </p>
        </div>
        <fieldset className="settings">
          <legend>Sampling</legend>
          {SETTINGS.map((setting) => (
            <SettingInput key={setting.key} setting={setting} disabled={busy} />
          ))}
        </fieldset>
        <label className="check">
          <input
            type="checkbox"
            checked={playground.useChatTemplate && hasChatTemplate}
            disabled={!hasChatTemplate || busy}
            onChange={(event) => patch({ useChatTemplate: event.target.checked })}
          />
          Send as a chat message (the model’s chat template){hasChatTemplate ? '' : ' — this model has none'}
        </label>
        <div className="actions">
          <button type="submit" data-testid="generate-run" disabled={!canRun}>
            Generate
          </button>
          <button type="button" className="secondary" data-testid="generate-compare" disabled={!canCompare} aria-describedby={compareHintId} onClick={() => void compareWithAdapterOff()}>
            Compare with the adapter off
          </button>
          <button type="button" className="secondary" onClick={stopGenerating} disabled={!playground.running}>
            Stop
          </button>
        </div>
        <p className="hint" id={compareHintId}>
          {adapterAttached
            ? 'Compare generates with the adapter, then with it switched off (the base model), with the same settings and seed.'
            : 'Attach an adapter to compare its output with the base model’s.'}
        </p>
      </form>
      {playground.compared ? (
        <div className="playground-compare">
          <div className="playground-column">
            <h3 id={outputId}>With the adapter</h3>
            <pre className="output" data-testid="generate-output" aria-labelledby={outputId} aria-busy={playground.running && playground.side === 'adapter'} tabIndex={0}>
              {playground.output}
            </pre>
            <p className="hint playground-column-status">{result ? describeRun(result) : playground.running ? `${playground.tokens} tokens so far` : ''}</p>
          </div>
          <div className="playground-column">
            <h3 id={baseOutputId}>Adapter off (base model)</h3>
            <pre className="output" data-testid="generate-output-base" aria-labelledby={baseOutputId} aria-busy={playground.running && playground.side === 'base'} tabIndex={0}>
              {playground.baseOutput}
            </pre>
            <p className="hint playground-column-status">
              {baseResult ? describeRun(baseResult) : playground.side === 'base' ? `${playground.baseTokens} tokens so far` : playground.running ? 'Waits for the run with the adapter.' : 'Not run.'}
            </p>
          </div>
        </div>
      ) : (
        <>
          <h3 id={outputId}>Output</h3>
          <pre className="output" data-testid="generate-output" aria-labelledby={outputId} aria-busy={playground.running} tabIndex={0}>
            {playground.output}
          </pre>
        </>
      )}
      <p className="status" role="status">
        {status}
      </p>
      {playground.error && playground.error.kind !== 'cancelled' && (
        <p className="error" role="alert">
          {playground.error.message}
        </p>
      )}
    </section>
  );
}

/** Run an .onnx file (picked, or the worker's last export) with ONNX Runtime Web on WebGPU, the playground's prompt and settings. */
function OnnxPanel() {
  const onnx = useApp((s) => s.playground.onnx);
  const modelReady = useApp((s) => s.model.status === 'ready' && s.model.summary !== null);
  const modelName = useApp((s) => s.model.summary?.name ?? null);
  const generating = useApp((s) => s.playground.running);
  const promptEmpty = useApp((s) => s.playground.prompt.length === 0);
  const [file, setFile] = useState<File | null>(null);
  const fileId = useId();
  const outputId = useId();
  const canRun = modelReady && !generating && !onnx.running && !promptEmpty;

  // The worker may have kept a new export since: ask when a model is ready and whenever the panel comes into use.
  useEffect(() => {
    if (modelReady) void refreshKeptOnnx();
  }, [modelReady, modelName]);

  const { result, session } = onnx;
  const rate = result ? decodeRate(result) : null;
  let status: string;
  if (onnx.running && session) status = `Running ${session.fileName} on ${session.executionProvider} (${session.adapter})… ${onnx.tokens} tokens`;
  else if (onnx.running) status = 'Loading ONNX Runtime Web and the model…';
  else if (result)
    status = `${result.executionProvider} (${result.adapter}) ran ${result.fileName}: ${result.tokenIds.length} tokens after a ${result.promptTokens}-token prompt; ${STOP_REASONS[result.stopReason]}${rate !== null ? `; ${rate.toFixed(1)} tokens/s` : ''}${result.sessionMs > 0 ? `; session ready in ${(result.sessionMs / 1000).toFixed(1)} s` : ''}.`;
  else status = modelReady ? 'Pick an .onnx file, or run the last export.' : 'Load the model the file was exported from: its tokenizer is used.';

  return (
    <section className="panel onnx-runner" aria-labelledby="onnx-heading" onPointerEnter={() => modelReady && void refreshKeptOnnx()} onFocus={() => modelReady && void refreshKeptOnnx()}>
      <h2 id="onnx-heading">Run the exported ONNX model</h2>
      <p className="hint">
        Runs an ONNX export (token ids in, logits out, as tabtune exports) with ONNX Runtime Web on WebGPU, using the loaded model’s tokenizer and the
        playground’s prompt and sampling settings. Each token runs the whole sequence again: the export has no KV cache.
      </p>
      <div className="stack">
        <div className="field">
          <label htmlFor={fileId}>ONNX file</label>
          <input
            id={fileId}
            type="file"
            accept=".onnx"
            data-testid="onnx-file"
            disabled={onnx.running}
            onChange={(event) => setFile(event.target.files?.[0] ?? null)}
          />
        </div>
        <div className="actions">
          <button type="button" data-testid="onnx-run" disabled={!canRun || file === null} onClick={() => file && void runOnnx({ kind: 'file', file })}>
            Run the picked file
          </button>
          <button type="button" className="secondary" data-testid="onnx-run-last" disabled={!canRun || onnx.kept === null} onClick={() => void runOnnx({ kind: 'lastExport' })}>
            {onnx.kept ? `Run the last export (${onnx.kept.fileName}, ${formatBytes(onnx.kept.bytes)})` : 'Run the last export (none yet)'}
          </button>
          <button type="button" className="secondary" disabled={!onnx.running} onClick={stopOnnx}>
            End the ONNX run
          </button>
        </div>
      </div>
      <h3 id={outputId}>ONNX output</h3>
      <pre className="output" data-testid="onnx-output" aria-labelledby={outputId} aria-busy={onnx.running} tabIndex={0}>
        {onnx.output}
      </pre>
      <p className="status" role="status" data-testid="onnx-status">
        {status}
      </p>
      {onnx.error && onnx.error.kind !== 'cancelled' && (
        <p className="error" role="alert" data-testid="onnx-error">
          {onnx.error.message}
        </p>
      )}
    </section>
  );
}

/** A number field that accepts what is typed and clamps it into range when it is committed (blur). */
function SettingInput({ setting, disabled }: { setting: NumberSetting; disabled: boolean }) {
  const value = useApp((s) => s.playground.sampling[setting.key]);
  const setSampling = useApp((s) => s.setSampling);
  const [draft, setDraft] = useState<string | null>(null);
  const id = useId();
  const commit = (text: string) => {
    const parsed = Number(text);
    if (text.trim() !== '' && Number.isFinite(parsed)) {
      const clamped = Math.min(setting.max, Math.max(setting.min, setting.integer ? Math.round(parsed) : parsed));
      setSampling({ [setting.key]: clamped });
    }
    setDraft(null);
  };
  return (
    <div className="field small">
      <label htmlFor={id}>{setting.label}</label>
      <input
        id={id}
        type="number"
        min={setting.min}
        max={setting.max}
        step={setting.step}
        value={draft ?? String(value)}
        disabled={disabled}
        aria-describedby={`${id}-hint`}
        onChange={(event) => {
          setDraft(event.target.value);
          const parsed = Number(event.target.value);
          if (event.target.value.trim() !== '' && Number.isFinite(parsed) && parsed >= setting.min && parsed <= setting.max && (!setting.integer || Number.isInteger(parsed))) {
            setSampling({ [setting.key]: parsed });
          }
        }}
        onBlur={(event) => commit(event.target.value)}
      />
      <span className="hint" id={`${id}-hint`}>
        {setting.hint}
      </span>
    </div>
  );
}
