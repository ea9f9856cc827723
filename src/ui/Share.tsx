// Share links: the panel that builds a link from the current state (plain or demo), and the confirmation shown
// when the page was opened with one (what will be fetched and trained; nothing happens before "Load and set up",
// or, for a demo link, before its one "Load and start training" button).

import { useId } from 'react';
import type { ShareConfig } from '../share/shareLink.ts';
import { useApp } from '../store/index.ts';
import { applyShareLink, buildShareLink, dismissShareLink, setShareDemoMode, startShareDemo } from '../store/shareActions.ts';
import { formatBytes } from './format.ts';

export function SharePanel() {
  const share = useApp((s) => s.share);
  const id = useId();
  return (
    <section className="panel" aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>Share</h2>
      <div className="stack">
        <p className="hint">A link that opens tabtune with this model, method, run settings and dataset (small datasets travel inside the link). Whoever opens it is asked before anything is downloaded.</p>
        <label className="check">
          <input type="checkbox" data-testid="share-demo-mode" checked={share.demoMode} onChange={(e) => setShareDemoMode(e.target.checked)} />
          Demo link: one click loads the model and starts training
        </label>
        <div className="actions">
          <button type="button" data-testid="share-link" onClick={() => void buildShareLink()}>
            Make a share link
          </button>
        </div>
        <div className="field">
          <label htmlFor={`${id}-u`}>Share link</label>
          <input id={`${id}-u`} data-testid="share-url" type="text" readOnly value={share.url} onFocus={(e) => e.target.select()} />
        </div>
        {share.problem && (
          <p className="error" role="alert">
            {share.problem}
          </p>
        )}
      </div>
    </section>
  );
}

function describeMethod(method: ShareConfig['method']): string {
  if (method.kind === 'adapter') return `Bottleneck adapter: reduction factor ${method.reductionFactor}, ${method.placement} placement, dropout ${method.dropout}`;
  const name = method.kind === 'qlora' ? 'QLoRA (NF4 base weights)' : 'LoRA';
  const targets = method.targetModules ? method.targetModules.join(', ') : "the architecture's default modules";
  return `${name}: rank ${method.r}, alpha ${method.alpha}, dropout ${method.dropout}${method.useRslora ? ', rsLoRA' : ''}, on ${targets}`;
}

/** The run in words; the schedule, warm-up and seed only when the link sets them away from their defaults. */
function describeTrain(train: ShareConfig['train']): string {
  const parts = [`${train.steps} steps of ${train.batchSize ?? 1} × ${train.seqLength} tokens`, `learning rate ${train.lr}`];
  if (train.schedule !== undefined && train.schedule !== 'constant') parts.push(`${train.schedule} schedule`);
  if (train.warmupSteps) parts.push(`${train.warmupSteps} warm-up step${train.warmupSteps === 1 ? '' : 's'}`);
  if (train.seed) parts.push(`seed ${train.seed}`);
  return parts.join(', ');
}

export function ShareOffer() {
  const incoming = useApp((s) => s.share.incoming);
  const gpuReady = useApp((s) => s.gpu.state === 'ready');
  const busy = useApp((s) => s.model.status === 'loading' || s.training.running);
  const id = useId();
  if (!incoming) return null;
  if (incoming.state === 'refused') {
    return (
      <section className="panel share-offer" aria-labelledby={`${id}-h`} data-testid="share-offer">
        <h2 id={`${id}-h`}>This share link cannot be used</h2>
        <p className="error" role="alert" data-testid="share-error">
          {incoming.message}
        </p>
        <div className="actions">
          <button type="button" className="secondary" onClick={dismissShareLink}>
            Dismiss
          </button>
        </div>
      </section>
    );
  }
  const { model, method, train, data, demo } = incoming.config;
  const applying = incoming.state === 'applying';
  const disabled = !gpuReady || busy || applying;
  return (
    <section className="panel share-offer" aria-labelledby={`${id}-h`} data-testid="share-offer">
      <h2 id={`${id}-h`}>{demo ? 'Start the shared demo?' : 'Set up from a shared link?'}</h2>
      <p className="hint">Nothing has been downloaded or loaded yet. Check what the link asks for:</p>
      <dl className="facts">
        <dt>Model</dt>
        <dd>{model.kind === 'demo' ? 'The built-in demo model (shipped with the app, offline)' : `${model.id}, downloaded from ${model.endpoint ?? 'https://huggingface.co'}`}</dd>
        <dt>Method</dt>
        <dd>{describeMethod(method)}</dd>
        <dt>Run</dt>
        <dd>{describeTrain(train)}</dd>
        <dt>Data</dt>
        <dd>{!data ? 'none' : 'inline' in data ? `${formatBytes(new TextEncoder().encode(data.inline).length)} of text inside the link` : `downloaded from ${data.url}`}</dd>
      </dl>
      {demo ? (
        <p className="hint">
          This is a demo link: the button below loads the model, sets up the method and the data, and trains for {train.steps} steps on this computer's GPU. Stop
          training at any time.
        </p>
      ) : (
        <p className="hint">Training does not start by itself: after setting up, press Start training when you are ready.</p>
      )}
      <div className="actions">
        {demo ? (
          <button type="button" data-testid="share-start-demo" disabled={disabled} onClick={() => void startShareDemo()}>
            {applying ? 'Setting up…' : 'Load and start training'}
          </button>
        ) : (
          <button type="button" data-testid="share-confirm" disabled={disabled} onClick={() => void applyShareLink()}>
            {applying ? 'Setting up…' : 'Load and set up'}
          </button>
        )}
        <button type="button" className="secondary" data-testid="share-dismiss" disabled={applying} onClick={dismissShareLink}>
          Dismiss
        </button>
      </div>
    </section>
  );
}
