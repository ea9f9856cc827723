// The data panel: the dataset as pasted text, and what the worker finds in it (format, examples, tokens, bad lines).

import { useEffect, useId } from 'react';
import { useApp } from '../store/index.ts';
import { inspectDataset } from '../store/trainingActions.ts';
import { formatCount } from './format.ts';

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
