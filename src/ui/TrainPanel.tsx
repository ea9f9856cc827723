// The train panel: run settings (steps, sequence length, learning rate, checkpoint interval, validation share and
// interval; under "Advanced", closed by default: the learning-rate schedule, warm-up steps and seed), start / pause
// / resume / end, the progress (step, training and validation loss, ETA, tokens per
// second, GPU memory by category, last checkpoint), the loss chart, a run interrupted by a lost device, and the
// adapter download. Every number comes from the engine worker; the progress and status areas keep their size.

import { useId } from 'react';
import { useApp } from '../store/index.ts';
import { continueAfterDeviceLoss } from '../store/savedRunActions.ts';
import type { TrainingState } from '../store/training.ts';
import { MAX_SEED } from '../train/packing.ts';
import type { ScheduleKind } from '../train/schedule.ts';
import { endTraining, pauseTraining, resumeTraining, startTraining } from '../store/trainingActions.ts';
import { MAX_VALIDATION_SHARE, validationExampleCount } from '../worker/calls/trainingSplit.ts';
import { MAX_BATCH_SIZE, type TrainMemory } from '../worker/protocol.ts';
import { AdapterDownload } from './ExportPanel.tsx';
import { formatBytes } from './format.ts';
import { LossChart } from './LossChart.tsx';
import { numberOr } from './numberInput.ts';
import './TrainPanel.css';

function formatEta(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '—';
  const seconds = Math.round(ms / 1000);
  return seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`;
}

const CATEGORY_NAMES: Record<keyof TrainMemory['byCategory'], string> = {
  frozenWeights: 'frozen weights',
  quantState: 'NF4 quantization state',
  adapters: 'adapters',
  gradients: 'gradients',
  optimizerState: 'optimizer state',
  activations: 'activations',
};

function memoryBreakdown(memory: TrainMemory): string {
  const parts = (Object.keys(CATEGORY_NAMES) as (keyof TrainMemory['byCategory'])[]).map((key) => `${CATEGORY_NAMES[key]} ${formatBytes(memory.byCategory[key])}`);
  return `GPU memory after the step: ${parts.join(', ')}; peak during the run ${formatBytes(memory.peakTotal)}`;
}

function statusText(training: TrainingState, modelReady: boolean): string {
  switch (training.phase) {
    case 'running':
      return training.progress ? 'Training…' : 'Preparing the run (the first step compiles the kernels)…';
    case 'pausing':
      return 'Pausing at the next step boundary (saving a checkpoint)…';
    case 'ending':
      return 'Ending the run…';
    case 'interrupted':
      return 'The GPU device was lost during the run.';
    default:
      return training.outcome ?? (modelReady ? 'Ready to train.' : 'Load a model to train.');
  }
}

function validationHint(examples: number | null, share: number): string {
  if (examples === null) return 'Held out from the dataset once it is read.';
  const held = validationExampleCount(examples, share);
  return held > 0 ? `${held} of ${examples} examples held out for validation.` : share === 0 ? 'No validation.' : 'No validation under 10 examples: every example trains.';
}

const SCHEDULE_NAMES: Record<ScheduleKind, string> = {
  constant: 'Constant',
  linear: 'Linear decay',
  cosine: 'Cosine decay',
};

/** What the closed "Advanced" section holds, so its settings show without opening it. */
function advancedSummary(training: TrainingState): string {
  const warmup = training.warmupSteps === 0 ? 'no warm-up' : `${training.warmupSteps} warm-up step${training.warmupSteps === 1 ? '' : 's'}`;
  return `${training.schedule} schedule, ${warmup}, seed ${training.seed}`;
}

export function TrainPanel() {
  const training = useApp((s) => s.training);
  const modelReady = useApp((s) => s.model.status === 'ready');
  const restarting = useApp((s) => (s.gpu.state === 'lost' && s.gpu.restarting) || s.model.status === 'loading');
  const patch = useApp((s) => s.patchTraining);
  const id = useId();
  const { progress, running, phase } = training;
  const canStart = modelReady && phase === 'idle' && !training.attaching && training.dataset.trim() !== '';
  const latestValidation = training.validationHistory[training.validationHistory.length - 1];
  const examples = training.datasetSummary && !training.datasetSummary.problem ? training.datasetSummary.examples : null;
  const memory = progress?.memory ?? null;
  return (
    <section className="panel train-panel" aria-labelledby={`${id}-h`}>
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
            <label htmlFor={`${id}-b`}>Batch size</label>
            <input id={`${id}-b`} data-testid="batch-input" type="number" min={1} max={MAX_BATCH_SIZE} step={1} value={training.batchSize} disabled={running} onChange={(e) => patch({ batchSize: Math.min(MAX_BATCH_SIZE, Math.max(1, Math.round(numberOr(e.target.value, training.batchSize)))) })} />
          </div>
          <div className="field small">
            <label htmlFor={`${id}-l`}>Learning rate</label>
            <input id={`${id}-l`} type="number" min={0} max={1} step={0.0001} value={training.lr} disabled={running} onChange={(e) => patch({ lr: Math.min(1, Math.max(1e-7, numberOr(e.target.value, training.lr))) })} />
          </div>
          <div className="field small">
            <label htmlFor={`${id}-c`}>Checkpoint every (steps)</label>
            <input id={`${id}-c`} data-testid="checkpoint-every" type="number" min={1} max={100000} step={1} value={training.checkpointEvery} disabled={running} onChange={(e) => patch({ checkpointEvery: Math.min(100000, Math.max(1, Math.round(numberOr(e.target.value, training.checkpointEvery)))) })} />
          </div>
          <div className="field small">
            <label htmlFor={`${id}-v`}>Validation share (%)</label>
            <input
              id={`${id}-v`}
              type="number"
              min={0}
              max={MAX_VALIDATION_SHARE * 100}
              step={1}
              value={Math.round(training.validationShare * 100)}
              disabled={running}
              aria-describedby={`${id}-vh`}
              onChange={(e) => patch({ validationShare: Math.min(MAX_VALIDATION_SHARE * 100, Math.max(0, Math.round(numberOr(e.target.value, training.validationShare * 100)))) / 100 })}
            />
          </div>
          <div className="field small">
            <label htmlFor={`${id}-e`}>Evaluate every (steps)</label>
            <input id={`${id}-e`} type="number" min={1} max={100000} step={1} value={training.evalEvery} disabled={running} onChange={(e) => patch({ evalEvery: Math.min(100000, Math.max(1, Math.round(numberOr(e.target.value, training.evalEvery)))) })} />
          </div>
          <p className="hint train-hint" id={`${id}-vh`}>
            {validationHint(examples, training.validationShare)} Checkpoints are kept in this browser's storage: a reload can continue the run.
          </p>
        </fieldset>
        <details className="train-advanced">
          <summary>
            Advanced <span className="hint">({advancedSummary(training)})</span>
          </summary>
          <fieldset className="settings" aria-label="Advanced run settings">
            <div className="field small">
              <label htmlFor={`${id}-sch`}>Schedule</label>
              <select id={`${id}-sch`} data-testid="schedule-select" value={training.schedule} disabled={running} aria-describedby={`${id}-schh`} onChange={(e) => patch({ schedule: e.target.value as ScheduleKind })}>
                {(Object.keys(SCHEDULE_NAMES) as ScheduleKind[]).map((kind) => (
                  <option key={kind} value={kind}>
                    {SCHEDULE_NAMES[kind]}
                  </option>
                ))}
              </select>
              <span className="hint" id={`${id}-schh`}>
                The learning rate after the warm-up: kept, or lowered to 0 by the last step.
              </span>
            </div>
            <div className="field small">
              <label htmlFor={`${id}-w`}>Warm-up steps</label>
              <input
                id={`${id}-w`}
                data-testid="warmup-input"
                type="number"
                min={0}
                max={Math.max(0, training.steps - 1)}
                step={1}
                value={training.warmupSteps}
                disabled={running}
                aria-describedby={`${id}-wh`}
                onChange={(e) => patch({ warmupSteps: Math.min(Math.max(0, training.steps - 1), Math.max(0, Math.round(numberOr(e.target.value, training.warmupSteps)))) })}
              />
              <span className="hint" id={`${id}-wh`}>
                First steps that raise the learning rate gradually; fewer than the steps.
              </span>
            </div>
            <div className="field small">
              <label htmlFor={`${id}-seed`}>Seed</label>
              <input
                id={`${id}-seed`}
                data-testid="seed-input"
                type="number"
                min={0}
                max={MAX_SEED}
                step={1}
                value={training.seed}
                disabled={running}
                aria-describedby={`${id}-seedh`}
                onChange={(e) => patch({ seed: Math.min(MAX_SEED, Math.max(0, Math.round(numberOr(e.target.value, training.seed)))) })}
              />
              <span className="hint" id={`${id}-seedh`}>
                Orders the examples and seeds dropout: the same seed repeats a run.
              </span>
            </div>
          </fieldset>
        </details>
        <div className="actions">
          <button type="button" data-testid="train-start" disabled={!canStart} onClick={() => void startTraining()}>
            Start training
          </button>
          <button type="button" className="secondary" data-testid="train-pause" disabled={phase !== 'running'} onClick={pauseTraining}>
            Pause
          </button>
          <button type="button" className="secondary" data-testid="train-resume" disabled={phase !== 'paused'} onClick={() => void resumeTraining()}>
            Resume
          </button>
          <button type="button" className="secondary" data-testid="train-stop" disabled={!running || phase === 'ending'} onClick={() => void endTraining()}>
            End the run
          </button>
          <AdapterDownload disabled={(phase !== 'idle' && phase !== 'paused') || training.exporting || training.attached === null} />
        </div>
        <progress className="train-progress" max={progress?.steps ?? training.steps} value={progress?.step ?? 0} aria-label="Training progress" />
        <dl className="train-numbers">
          <dt>Step</dt>
          <dd>
            <span data-testid="train-step">{progress?.step ?? 0}</span> / {progress?.steps ?? training.steps}
          </dd>
          <dt>Loss</dt>
          <dd data-testid="train-loss">{progress && Number.isFinite(progress.loss) ? progress.loss.toPrecision(5) : ''}</dd>
          <dt>Validation loss</dt>
          <dd data-testid="train-val-loss" title={latestValidation ? `after step ${latestValidation.step}` : 'no validation yet'}>
            {latestValidation ? latestValidation.loss.toPrecision(5) : ''}
          </dd>
          <dt>ETA</dt>
          <dd>{phase === 'running' && progress ? formatEta(progress.etaMs) : '—'}</dd>
          <dt>Tokens/s</dt>
          <dd>{progress && progress.tokensPerSecond > 0 ? progress.tokensPerSecond.toFixed(1) : '—'}</dd>
          <dt>GPU memory</dt>
          <dd data-testid="train-memory" title={memory ? memoryBreakdown(memory) : undefined}>
            {memory ? formatBytes(memory.total) : '—'}
          </dd>
          <dt>Checkpoint</dt>
          <dd data-testid="train-checkpoint">{training.checkpointStep !== null ? `step ${training.checkpointStep}` : '—'}</dd>
        </dl>
        <LossChart />
        <div className="train-status">
          <p className="status" role="status">
            {statusText(training, modelReady)}
          </p>
          {phase === 'interrupted' && (
            <button type="button" data-testid="train-resume-checkpoint" disabled={restarting} onClick={() => void continueAfterDeviceLoss()}>
              {restarting ? 'Restarting…' : training.checkpointStep ? `Resume from the checkpoint at step ${training.checkpointStep}` : 'Start the run again'}
            </button>
          )}
        </div>
        {training.error && training.error.kind !== 'cancelled' && (
          <p className="error" role="alert" data-testid="train-error">
            {training.error.message}
          </p>
        )}
      </div>
    </section>
  );
}
