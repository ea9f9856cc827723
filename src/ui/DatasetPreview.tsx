// The first examples as the model sees them: one chip per token, trained tokens plain, masked tokens (label
// ignored: prompts, non-assistant turns) dimmed and struck through, special tokens boxed. Runs of masked and of
// trained tokens carry a hidden "masked:" / "trained:" so screen readers hear the split that the styling shows.

import type { DatasetPreviewExample, DatasetPreviewToken } from '../worker/protocol.ts';
import { formatCount } from './format.ts';

/** What a chip shows for a token's text: line ends and tabs as visible marks, an unfinished character as ◌. */
export function chipText(text: string): string {
  if (text === '') return '◌';
  return text.replace(/\r/g, '␍').replace(/\n/g, '↵').replace(/\t/g, '⇥');
}

function chipTitle(token: DatasetPreviewToken): string {
  const what = token.trained ? 'trained' : 'masked (not trained)';
  const partial = token.text === '' ? ', the first bytes of a character the next token completes' : '';
  return `${what}${token.special ? ', special token' : ''}${partial}; id ${token.id}`;
}

/** Consecutive tokens with the same flag. */
function runs(tokens: readonly DatasetPreviewToken[]): { trained: boolean; start: number; tokens: DatasetPreviewToken[] }[] {
  const out: { trained: boolean; start: number; tokens: DatasetPreviewToken[] }[] = [];
  tokens.forEach((token, index) => {
    const last = out[out.length - 1];
    if (last && last.trained === token.trained) last.tokens.push(token);
    else out.push({ trained: token.trained, start: index, tokens: [token] });
  });
  return out;
}

export function DatasetPreview({ preview }: { preview: readonly DatasetPreviewExample[] }) {
  return (
    <div className="dataset-preview" data-testid="dataset-preview">
      <h3>The first examples as the model sees them</h3>
      <p className="hint dataset-legend">
        <span className="token-chip">trained</span> the loss is on this token · <span className="token-chip masked">masked</span> label ignored, not trained ·{' '}
        <span className="token-chip special">special</span> special token · ↵ line end · ◌ part of a character
      </p>
      <ol className="dataset-examples">
        {preview.map((example, index) => {
          const more = example.totalTokens - example.tokens.length;
          return (
            <li key={index} data-line={example.line}>
              <p className="hint">
                Line {example.line}: {formatCount(example.totalTokens)} tokens, {formatCount(example.trainedTokens)} trained
              </p>
              <p className="token-chips">
                {runs(example.tokens).map((run) => (
                  <span key={run.start} className="token-run">
                    <span className="visually-hidden">{run.trained ? 'trained:' : 'masked:'}</span>
                    {run.tokens.map((token, k) => (
                      <span
                        key={k}
                        className={`token-chip${token.trained ? '' : ' masked'}${token.special ? ' special' : ''}`}
                        data-trained={token.trained}
                        data-special={token.special}
                        title={chipTitle(token)}
                      >
                        {chipText(token.text)}
                      </span>
                    ))}
                  </span>
                ))}
                {more > 0 && <span className="token-more">… {formatCount(more)} more tokens</span>}
              </p>
            </li>
          );
        })}
      </ol>
    </div>
  );
}
