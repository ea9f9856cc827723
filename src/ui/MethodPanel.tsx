// The method panel: LoRA, QLoRA or a bottleneck adapter, with their settings, and the trainable parameter count
// the worker reports once the adapter is attached. On a checkpoint stored in 4-bit (bitsandbytes) only QLoRA can
// train: LoRA and adapters are disabled options, with the reason beside the choice.

import { useId } from 'react';
import { useApp } from '../store/index.ts';
import { attachMethod } from '../store/trainingActions.ts';
import type { MethodKind } from '../worker/protocol.ts';
import { formatBytes, formatCount } from './format.ts';
import { numberOr } from './numberInput.ts';

/** f32 weight, gradient and AdamW's two moments per trained parameter. */
const TRAINING_BYTES_PER_PARAMETER = 16;

export function MethodPanel() {
  const settings = useApp((s) => s.training.settings);
  const attached = useApp((s) => s.training.attached);
  const attaching = useApp((s) => s.training.attaching);
  const attachError = useApp((s) => s.training.attachError);
  const running = useApp((s) => s.training.running);
  const modelReady = useApp((s) => s.model.status === 'ready');
  // The 4-bit data type of the loaded checkpoint when it is stored so (no float weights to train LoRA or adapters on).
  const storedFourBit = useApp((s) => (s.model.summary?.prequantized ? s.model.summary.weights : null));
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
          <select
            id={`${id}-m`}
            data-testid="method-select"
            value={settings.method}
            disabled={busy}
            aria-describedby={storedFourBit ? `${id}-q` : undefined}
            onChange={(e) => set({ method: e.target.value as MethodKind })}
          >
            <option value="lora" disabled={storedFourBit !== null}>
              LoRA
            </option>
            <option value="qlora">QLoRA ({storedFourBit === 'fp4' ? 'FP4' : 'NF4'} base weights)</option>
            <option value="adapter" disabled={storedFourBit !== null}>
              Bottleneck adapter
            </option>
          </select>
          {storedFourBit && (
            <p className="hint" id={`${id}-q`} data-testid="method-quantized-note">
              Only QLoRA: the checkpoint is stored in 4-bit {storedFourBit.toUpperCase()} (bitsandbytes), and LoRA and adapters need float weights. Load its
              unquantized version to use them.
            </p>
          )}
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
            ? `${formatCount(attached.trainableParameters)} trainable parameters (${((100 * attached.trainableParameters) / attached.totalParameters).toFixed(3)}% of ${formatCount(attached.totalParameters)}) in ${attached.targets.length} ${lora ? 'modules' : 'adapter sites'}; ${formatBytes(attached.trainableParameters * TRAINING_BYTES_PER_PARAMETER)} of GPU memory to train them (weights, gradients and AdamW moments in f32).`
            : modelReady
              ? 'Not attached yet: Attach, or start training, attaches it.'
              : 'Load a model first.'}
        </p>
        {attachError && (
          <p className="error" role="alert" data-testid="method-error">
            {attachError.message}
          </p>
        )}
      </div>
    </section>
  );
}
