// Runs that outlive the page or the device: the run saved in browser storage, found when the page opens and
// offered to continue (load its model again, restore its settings and dataset, continue from its checkpoint) or
// discard; and a run interrupted by a lost device, continued from its checkpoint once the engine is restarted.

import type { ModelSource, SavedRun } from '../worker/protocol.ts';
import { restartEngine } from './engineActions.ts';
import { engine, failureOf, state } from './engineClient.ts';
import { demoSource, loadModel, weightsFor } from './modelActions.ts';
import type { ReloadableSource } from './model.ts';
import { startTraining } from './trainingActions.ts';

/**
 * Once the engine is up (at start, or in a tab that takes the engine over from another): is there a saved run to
 * offer? A damaged one is offered for discarding only. A run this tab is training or holds paused is its own.
 */
export async function checkSavedRun(): Promise<void> {
  if (state().training.phase !== 'idle' || state().training.savedRun.state === 'resuming') return;
  state().patchTraining({ savedRun: { state: 'checking' } });
  try {
    const run = await engine().call('savedRun', {});
    // A run started meanwhile has replaced whatever was saved.
    if (state().training.savedRun.state !== 'checking') return;
    state().patchTraining({ savedRun: run ? { state: 'offer', run, problem: null } : { state: 'none' } });
  } catch (error) {
    if (state().training.savedRun.state === 'checking') state().patchTraining({ savedRun: { state: 'unreadable', message: failureOf(error).message } });
  }
}

function sameSource(a: ReloadableSource | null, b: ReloadableSource): boolean {
  return a !== null && JSON.stringify(a) === JSON.stringify(b);
}

function modelSourceOf(source: ReloadableSource): ModelSource {
  return source.kind === 'demo' ? demoSource() : source;
}

function offerAgain(run: SavedRun, problem: string): void {
  state().patchTraining({ savedRun: { state: 'offer', run, problem } });
}

/** Continue the offered run: its model (loaded again when it is not the one loaded), settings and dataset, then its checkpoint. */
export async function resumeSavedRun(): Promise<void> {
  const offer = state().training.savedRun;
  if (offer.state !== 'offer' || state().training.running || state().model.status === 'loading') return;
  const { run } = offer;
  const { source, label } = run.description.model;
  state().patchTraining({ savedRun: { state: 'resuming', run } });
  if (source) {
    const { model } = state();
    if (model.status !== 'ready' || !sameSource(model.reloadable, source)) {
      await loadModel(modelSourceOf(source), label, false, weightsFor(run.description.settings.method.method));
      const after = state().model;
      if (after.status !== 'ready' || !sameSource(after.reloadable, source)) {
        offerAgain(run, `${label} could not be loaded${after.error ? `: ${after.error.message}` : '.'}`);
        return;
      }
    }
  } else if (state().model.status !== 'ready') {
    offerAgain(run, `This run used ${label}, picked from files, which the page cannot load again by itself: load it in the model panel, then press Resume.`);
    return;
  }
  const { method, ...runSettings } = run.description.settings;
  state().setMethodSettings(method);
  state().patchTraining({ dataset: run.dataset, datasetFileName: null, ...runSettings });
  await startTraining({ fromCheckpoint: true, offered: run });
}

/** Forget the offered (or unreadable) saved run. */
export async function discardSavedRun(): Promise<void> {
  const offer = state().training.savedRun;
  if (offer.state !== 'offer' && offer.state !== 'unreadable') return;
  try {
    await engine().call('discardSavedRun', {});
    state().patchTraining({ savedRun: { state: 'none' } });
  } catch (error) {
    const message = `The saved run could not be removed: ${failureOf(error).message}`;
    state().patchTraining({ savedRun: offer.state === 'offer' ? { ...offer, problem: message } : { state: 'unreadable', message } });
  }
}

/** After a device loss during a run: restart the engine (which loads the model again) and continue from the checkpoint. */
export async function continueAfterDeviceLoss(): Promise<void> {
  if (state().training.phase !== 'interrupted') return;
  if (state().gpu.state !== 'ready') await restartEngine();
  const { gpu, model } = state();
  if (gpu.state !== 'ready') return; // the banner says why
  if (model.status !== 'ready') {
    const reason = model.error ? model.error.message : 'the model was picked from files, which the page cannot load again by itself';
    state().patchTraining({ error: { kind: 'noModel', name: 'NoModelError', message: `Load the model again to continue the run (${reason}), then press the button again.`, retryable: false } });
    return;
  }
  await startTraining({ fromCheckpoint: true });
}
