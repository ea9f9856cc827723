// Generate from the loaded model: a prompt, sampling settings, and the output streaming in token by token.
// Ctrl+Enter (⌘+Enter) in the prompt generates. The output box keeps its size, so nothing jumps while it fills.

import { useId, useState } from 'react';
import { generate, stopGenerating } from '../store/playgroundActions.ts';
import { useApp } from '../store/index.ts';
import type { SamplingSettings, StopReason } from '../worker/protocol.ts';

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

export function Playground() {
  const playground = useApp((s) => s.playground);
  const modelReady = useApp((s) => s.model.status === 'ready' && s.model.summary !== null);
  const hasChatTemplate = useApp((s) => s.model.summary?.hasChatTemplate ?? false);
  const patch = useApp((s) => s.patchPlayground);
  const promptId = useId();
  const outputId = useId();
  const canRun = modelReady && !playground.running && playground.prompt.length > 0;
  const result = playground.result;
  const rate = result && result.decodeMs > 0 && result.tokenIds.length > 1 ? ((result.tokenIds.length - 1) / result.decodeMs) * 1000 : null;

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
            <SettingInput key={setting.key} setting={setting} disabled={playground.running} />
          ))}
        </fieldset>
        <label className="check">
          <input
            type="checkbox"
            checked={playground.useChatTemplate && hasChatTemplate}
            disabled={!hasChatTemplate || playground.running}
            onChange={(event) => patch({ useChatTemplate: event.target.checked })}
          />
          Send as a chat message (the model’s chat template){hasChatTemplate ? '' : ' — this model has none'}
        </label>
        <div className="actions">
          <button type="submit" data-testid="generate-run" disabled={!canRun}>
            Generate
          </button>
          <button type="button" className="secondary" onClick={stopGenerating} disabled={!playground.running}>
            Stop
          </button>
        </div>
      </form>
      <h3 id={outputId}>Output</h3>
      <pre className="output" data-testid="generate-output" aria-labelledby={outputId} aria-busy={playground.running} tabIndex={0}>
        {playground.output}
      </pre>
      <p className="status" role="status">
        {playground.running
          ? `Generating… ${playground.tokens} tokens`
          : result
            ? `${result.tokenIds.length} tokens after a ${result.promptTokens}-token prompt; ${STOP_REASONS[result.stopReason]}${rate !== null ? `; ${rate.toFixed(1)} tokens/s` : ''}.`
            : modelReady
              ? 'Ready to generate.'
              : 'Load a model to generate.'}
      </p>
      {playground.error && playground.error.kind !== 'cancelled' && (
        <p className="error" role="alert">
          {playground.error.message}
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
