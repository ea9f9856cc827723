// The offer of a run saved in browser storage, shown above the panels when the page opens after a reload or a
// crash: "A run stopped at step N of M (model, method, saved at …)" with Resume (loads the model again, restores
// the settings and dataset, continues from the checkpoint) and Discard. A saved run that cannot be read is
// offered for discarding only.

import { useId } from 'react';
import { useApp } from '../store/index.ts';
import { discardSavedRun, resumeSavedRun } from '../store/savedRunActions.ts';
import type { MethodKind, SavedRun } from '../worker/protocol.ts';
import './ResumeOffer.css';

const METHOD_NAMES: Record<MethodKind, string> = { lora: 'LoRA', qlora: 'QLoRA', adapter: 'bottleneck adapter' };

function describe(run: SavedRun): string {
  const { description, checkpointStep, savedAt } = run;
  const where = checkpointStep > 0 ? `at step ${checkpointStep} of ${description.settings.steps}` : `before its first checkpoint (of ${description.settings.steps} steps)`;
  return `A run stopped ${where} (${description.model.label}, ${METHOD_NAMES[description.settings.method.method]}, saved at ${new Date(savedAt).toLocaleString()}).`;
}

export function ResumeOffer() {
  const offer = useApp((s) => s.training.savedRun);
  const busy = useApp((s) => s.training.running || s.model.status === 'loading');
  const id = useId();
  if (offer.state === 'none' || offer.state === 'checking') return null;
  if (offer.state === 'unreadable') {
    return (
      <section className="panel resume-offer" aria-labelledby={`${id}-h`} data-testid="resume-offer">
        <h2 id={`${id}-h`}>A saved run cannot be continued</h2>
        <p className="error" role="alert">
          {offer.message}
        </p>
        <div className="actions">
          <button type="button" className="secondary" data-testid="resume-discard" onClick={() => void discardSavedRun()}>
            Discard
          </button>
        </div>
      </section>
    );
  }
  const resuming = offer.state === 'resuming';
  return (
    <section className="panel resume-offer" aria-labelledby={`${id}-h`} data-testid="resume-offer">
      <h2 id={`${id}-h`}>Continue the last run?</h2>
      <p data-testid="resume-description">{describe(offer.run)}</p>
      <p className="hint">Resume loads the model again, restores the run's settings and dataset, and continues from the checkpoint.</p>
      <div className="actions">
        <button type="button" data-testid="resume-run" disabled={resuming || busy} onClick={() => void resumeSavedRun()}>
          {resuming ? 'Resuming…' : 'Resume'}
        </button>
        <button type="button" className="secondary" data-testid="resume-discard" disabled={resuming} onClick={() => void discardSavedRun()}>
          Discard
        </button>
      </div>
      {offer.state === 'offer' && offer.problem && (
        <p className="error" role="alert">
          {offer.problem}
        </p>
      )}
    </section>
  );
}
