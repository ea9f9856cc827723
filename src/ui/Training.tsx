// Fine-tuning: the method (LoRA, QLoRA or a bottleneck adapter) and its settings, the pasted dataset as the
// worker reads it, and the run: start/stop, step, loss, progress with ETA and tokens per second, a loss chart,
// and the adapter download. Every number comes from the engine worker.

import { useEffect, useId, useRef } from 'react';
import { attachMethod, exportAdapter, inspectDataset, startTraining, stopTraining } from '../store/actions.ts';
import { useApp } from '../store/index.ts';
import type { MethodKind } from '../worker/protocol.ts';
import { formatCount } from './format.ts';

function numberOr(text: string, fallback: number): number {
  const value = Number(text);
  return text.trim() !== '' && Number.isFinite(value) ? value : fallback;
}

export function MethodPanel() {
  const settings = useApp((s) => s.training.settings);
  const attached = useApp((s) => s.training.attached);
  const attaching = useApp((s) => s.training.attaching);
  const running = useApp((s) => s.training.running);
  const modelReady = useApp((s) => s.model.status === 'ready');
  const set = useApp((s) => s.setMethodSettings);
  const id = useId();
  const lora = settings.method !== 'adapter';
  const busy = attaching || running;
  return (
    <section className="panel" aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Method</h2>
      <div className="stack">
        <div className="field">
          <label htmlFor={`${id}-m`}>Fine-tuning method</label>
          <select id={`${id}-m`} data-testid="method-select" value={settings.method} disabled={busy} onChange={(e) => set({ method: e.target.value as MethodKind })}>
            <option value="lora">LoRA</option>
            <option value="qlora">QLoRA (NF4 base weights)</option>
            <option value="adapter">Bottleneck adapter</option>
          </select>
        </div>
        {lora ? (
          <fieldset className="settings">
            <legend>LoRA</legend>
            <div className="field small">
              <label htmlFor={`${id}-r`}>Rank</label>
              <input id={`${id}-r`} type="number" min={1} step={1} value={settings.r} disabled={busy} onChange={(e) => set({ r: Math.max(1, Math.round(numberOr(e.target.value, settings.r))) })} />
            </div>
            <div className="field small">
              <label htmlFor={`${id}-a`}>Alpha</label>
              <input id={`${id}-a`} type="number" step={1} value={settings.alpha} disabled={busy} onChange={(e) => set({ alpha: numberOr(e.target.value, settings.alpha) || settings.alpha })} />
            </div>
            <div className="field small">
              <label htmlFor={`${id}-d`}>Dropout</label>
              <input id={`${id}-d`} type="number" min={0} max={0.9} step={0.05} value={settings.dropout} disabled={busy} onChange={(e) => set({ dropout: Math.min(0.9, Math.max(0, numberOr(e.target.value, settings.dropout))) })} />
            </div>
            <label className="check">
              <input type="checkbox" checked={settings.useRslora} disabled={busy} onChange={(e) => set({ useRslora: e.target.checked })} />
              rsLoRA (scale alpha/√r)
            </label>
            <div className="field">
              <label htmlFor={`${id}-t`}>Target modules</label>
              <input
                id={`${id}-t`}
                type="text"
                placeholder={attached ? attached.defaultTargets.join(', ') : "the architecture's default"}
                value={settings.targetModules?.join(', ') ?? ''}
                disabled={busy}
                onChange={(e) => {
                  const names = e.target.value.split(',').map((t) => t.trim()).filter((t) => t !== '');
                  set({ targetModules: names.length ? names : null });
                }}
              />
              <span className="hint">Comma-separated module names; empty: the architecture's default.</span>
            </div>
          </fieldset>
        ) : (
          <fieldset className="settings">
            <legend>Adapter</legend>
            <div className="field small">
              <label htmlFor={`${id}-rf`}>Reduction factor</label>
              <input id={`${id}-rf`} type="number" min={1} step={1} value={settings.reductionFactor} disabled={busy} onChange={(e) => set({ reductionFactor: Math.max(1, Math.round(numberOr(e.target.value, settings.reductionFactor))) })} />
            </div>
            <div className="field small">
              <label htmlFor={`${id}-p`}>Placement</label>
              <select id={`${id}-p`} value={settings.placement} disabled={busy} onChange={(e) => set({ placement: e.target.value as 'pfeiffer' | 'houlsby' })}>
                <option value="pfeiffer">Pfeiffer (after the feed-forward)</option>
                <option value="houlsby">Houlsby (after attention and feed-forward)</option>
              </select>
            </div>
            <div className="field small">
              <label htmlFor={`${id}-ad`}>Dropout</label>
              <input id={`${id}-ad`} type="number" min={0} max={0.9} step={0.05} value={settings.dropout} disabled={busy} onChange={(e) => set({ dropout: Math.min(0.9, Math.max(0, numberOr(e.target.value, settings.dropout))) })} />
            </div>
          </fieldset>
        )}
        <div className="actions">
          <button type="button" data-testid="method-attach" disabled={!modelReady || busy} onClick={() => void attachMethod()}>
            {attaching ? 'Attaching…' : 'Attach'}
          </button>
        </div>
        <p className="status" role="status" data-testid="method-status">
          {attached
            ? `${formatCount(attached.trainableParameters)} trainable parameters (${((100 * attached.trainableParameters) / attached.totalParameters).toFixed(3)}% of ${formatCount(attached.totalParameters)}) in ${attached.targets.length} ${lora ? 'modules' : 'adapter sites'}.`
            : modelReady
              ? 'Not attached yet: Attach, or start training, attaches it.'
              : 'Load a model first.'}
        </p>
      </div>
    </section>
  );
}

export function DataPanel() {
  const dataset = useApp((s) => s.training.dataset);
  const summary = useApp((s) => s.training.datasetSummary);
  const running = useApp((s) => s.training.running);
  const modelReady = useApp((s) => s.model.status === 'ready');
  const patch = useApp((s) => s.patchTraining);
  const id = useId();
  // Ask the worker what it finds, once typing pauses.
  useEffect(() => {
    const timer = setTimeout(() => void inspectDataset(), 400);
    return () => clearTimeout(timer);
  }, [dataset, modelReady]);
  return (
    <section className="panel" aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Data</h2>
      <div className="field">
        <label htmlFor={`${id}-d`}>Dataset: plain text (paragraphs) or JSON lines (text, prompt/completion, chat messages)</label>
        <textarea id={`${id}-d`} data-testid="dataset-input" rows={8} value={dataset} disabled={running} onChange={(e) => patch({ dataset: e.target.value })} />
      </div>
      <div role="status" data-testid="dataset-summary">
        {summary ? (
          <>
            <p className="status">
              {summary.format}: {summary.examples} examples, {formatCount(summary.tokens)} tokens ({formatCount(summary.targetTokens)} trained).
            </p>
            {summary.problem && <p className="error">{summary.problem}</p>}
            {summary.issues.length > 0 && (
              <ul className="issues">
                {summary.issues.map((issue) => (
                  <li key={`${issue.line}:${issue.message}`}>
                    line {issue.line}: {issue.message}
                  </li>
                ))}
                {summary.issueCount > summary.issues.length && <li>… {summary.issueCount - summary.issues.length} more bad lines</li>}
              </ul>
            )}
          </>
        ) : (
          <p className="status">{modelReady ? 'Paste a dataset.' : 'Load a model to read the dataset with its tokenizer.'}</p>
        )}
      </div>
    </section>
  );
}

function formatEta(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '—';
  const seconds = Math.round(ms / 1000);
  return seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`;
}

/** Chart size in SVG units; at most this many points are drawn (every k-th loss when there are more). */
const CHART_W = 300;
const CHART_H = 80;
const CHART_POINTS = 600;

function polylinePoints(losses: readonly number[]): string {
  if (losses.length === 0) return '';
  const stride = Math.ceil(losses.length / CHART_POINTS);
  const shown: number[] = [];
  for (let i = 0; i < losses.length; i += stride) shown.push(losses[i]);
  if ((losses.length - 1) % stride !== 0) shown.push(losses[losses.length - 1]);
  const lo = Math.min(...shown);
  const hi = Math.max(...shown);
  const span = hi - lo || 1;
  const dx = shown.length > 1 ? CHART_W / (shown.length - 1) : 0;
  return shown.map((loss, i) => `${(i * dx).toFixed(1)},${(CHART_H - 2 - ((loss - lo) / span) * (CHART_H - 4)).toFixed(1)}`).join(' ');
}

/** The loss history as a polyline, redrawn through a store subscription (no React render per update). */
function LossChart() {
  const line = useRef<SVGPolylineElement>(null);
  useEffect(() => {
    const draw = (losses: readonly number[]) => line.current?.setAttribute('points', polylinePoints(losses));
    draw(useApp.getState().training.lossHistory);
    return useApp.subscribe((state, previous) => {
      if (state.training.lossHistory !== previous.training.lossHistory) draw(state.training.lossHistory);
    });
  }, []);
  return (
    <svg className="loss-chart" data-testid="loss-chart" viewBox={`0 0 ${CHART_W} ${CHART_H}`} preserveAspectRatio="none" role="img" aria-label="Training loss by step">
      <polyline ref={line} fill="none" stroke="currentColor" strokeWidth={1.5} vectorEffect="non-scaling-stroke" />
    </svg>
  );
}

export function TrainPanel() {
  const training = useApp((s) => s.training);
  const modelReady = useApp((s) => s.model.status === 'ready');
  const patch = useApp((s) => s.patchTraining);
  const id = useId();
  const { progress, running } = training;
  const canStart = modelReady && !running && !training.attaching && training.dataset.trim() !== '';
  return (
    <section className="panel" aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Train</h2>
      <div className="stack">
        <fieldset className="settings">
          <legend>Run</legend>
          <div className="field small">
            <label htmlFor={`${id}-s`}>Steps</label>
            <input id={`${id}-s`} data-testid="steps-input" type="number" min={1} max={100000} step={1} value={training.steps} disabled={running} onChange={(e) => patch({ steps: Math.min(100000, Math.max(1, Math.round(numberOr(e.target.value, training.steps)))) })} />
          </div>
          <div className="field small">
            <label htmlFor={`${id}-q`}>Sequence length</label>
            <input id={`${id}-q`} type="number" min={2} max={4096} step={1} value={training.seqLen} disabled={running} onChange={(e) => patch({ seqLen: Math.max(2, Math.round(numberOr(e.target.value, training.seqLen))) })} />
          </div>
          <div className="field small">
            <label htmlFor={`${id}-l`}>Learning rate</label>
            <input id={`${id}-l`} type="number" min={0} max={1} step={0.0001} value={training.lr} disabled={running} onChange={(e) => patch({ lr: Math.min(1, Math.max(1e-7, numberOr(e.target.value, training.lr))) })} />
          </div>
        </fieldset>
        <div className="actions">
          <button type="button" data-testid="train-start" disabled={!canStart} onClick={() => void startTraining()}>
            Start training
          </button>
          <button type="button" className="secondary" data-testid="train-stop" disabled={!running} onClick={stopTraining}>
            End the run
          </button>
          <button type="button" className="secondary" data-testid="export-adapter" disabled={running || training.exporting || training.attached === null} onClick={() => void exportAdapter()}>
            Download adapter
          </button>
        </div>
        <progress className="train-progress" max={progress?.steps ?? training.steps} value={progress?.step ?? 0} aria-label="Training progress" />
        <dl className="train-numbers">
          <dt>Step</dt>
          <dd>
            <span data-testid="train-step">{progress?.step ?? 0}</span> / {progress?.steps ?? training.steps}
          </dd>
          <dt>Loss</dt>
          <dd data-testid="train-loss">{progress && Number.isFinite(progress.loss) ? progress.loss.toPrecision(5) : ''}</dd>
          <dt>ETA</dt>
          <dd>{running && progress ? formatEta(progress.etaMs) : '—'}</dd>
          <dt>Tokens/s</dt>
          <dd>{progress ? progress.tokensPerSecond.toFixed(1) : '—'}</dd>
        </dl>
        <LossChart />
        <p className="status" role="status">
          {running ? (progress ? 'Training…' : 'Preparing the run (the first step compiles the kernels)…') : (training.outcome ?? (modelReady ? 'Ready to train.' : 'Load a model to train.'))}
        </p>
        {training.error && training.error.kind !== 'cancelled' && (
          <p className="error" role="alert">
            {training.error.message}
          </p>
        )}
      </div>
    </section>
  );
}
