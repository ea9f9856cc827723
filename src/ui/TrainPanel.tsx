// The train panel: run settings, start/stop, step, loss, progress with ETA and tokens per second, the loss
// chart, and the adapter download. Every number comes from the engine worker.

import { useId } from 'react';
import { useApp } from '../store/index.ts';
import { exportAdapter, startTraining, stopTraining } from '../store/trainingActions.ts';
import { LossChart } from './LossChart.tsx';
import { numberOr } from './numberInput.ts';

function formatEta(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '—';
  const seconds = Math.round(ms / 1000);
  return seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`;
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
