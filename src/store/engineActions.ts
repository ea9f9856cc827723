// Starting the engine: connect the worker client, listen for news (a lost device), acquire the GPU, look for a
// saved run, open with the demo model loaded, and start again after a loss.

import type { EngineClient } from '../worker/client.ts';
import { engine, failureOf, setEngineClient, state } from './engineClient.ts';
import { demoSource, loadModel, loadOpeningModel } from './modelActions.ts';
import { checkSavedRun } from './savedRunActions.ts';
import { isShareFragment } from './shareActions.ts';
import { markInterrupted } from './trainingActions.ts';

/** Attach the worker client, listen for news, and start the engine (or say why WebGPU is missing). */
export async function connectEngine(connected: EngineClient): Promise<void> {
  setEngineClient(connected);
  connected.subscribe((event) => {
    if (event.type !== 'deviceLost') return;
    state().setGpu({ state: 'lost', reason: event.reason, message: event.message, restarting: false });
    state().patchModel({ status: 'none', summary: null, progress: null, callId: null });
    state().patchTraining({ attached: null });
    markInterrupted(); // a run in progress or paused can continue from its checkpoint
  });
  if (await startEngine()) await openingModel();
}

/**
 * A page opens with the demo model loaded, ready to train offline, unless something waits for the user's choice:
 * a share link's offer, or a run saved in browser storage that can be resumed.
 */
async function openingModel(): Promise<void> {
  await checkSavedRun();
  const { share, training, model } = state();
  if (share.incoming !== null || isShareFragment(location.hash)) return;
  if (training.savedRun.state !== 'none' || model.status !== 'none') return;
  await loadOpeningModel();
}

/** Shown without starting anything when the page itself has no WebGPU. */
export function reportNoWebGpu(reason: string): void {
  state().setGpu({ state: 'unavailable', reason });
}

async function refreshCatalog(): Promise<void> {
  try {
    state().patchModel({ catalog: await engine().call('catalog', {}) });
  } catch (error) {
    state().patchModel({ error: failureOf(error) });
  }
}

async function startEngine(): Promise<boolean> {
  await refreshCatalog();
  try {
    const device = await engine().call('init', {});
    state().setGpu({ state: 'ready', device });
    await refreshCatalog(); // now with the device's limits
    return true;
  } catch (error) {
    state().setGpu({ state: 'unavailable', reason: failureOf(error).message });
    return false;
  }
}

/** After a device loss: acquire a new device, then load the last model again when that needs no user action. */
export async function restartEngine(): Promise<void> {
  const gpu = state().gpu;
  if (gpu.state === 'lost') state().setGpu({ ...gpu, restarting: true });
  const started = await startEngine();
  const again = state().model.reloadable;
  if (started && again) await loadModel(again.kind === 'demo' ? demoSource() : again, again.kind === 'demo' ? 'Demo model' : again.spec);
}

/** Fault injection for tests (`?faults` in the URL exposes it): destroy the GPU device. */
export async function loseDevice(): Promise<boolean> {
  return (await engine().call('loseDevice', {})).lost;
}
