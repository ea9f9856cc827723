// Share-link actions: build a link from the current model, method, run settings and dataset (a plain or a demo
// link); read the link this page was opened with into an offer (nothing is fetched, loaded or trained); and, once
// the user confirms, apply it: settings and dataset first, then the model load. Training starts only from a demo
// link, and only on the user's one click that also sets everything up.

import { parseHubSpec, resolveHubEndpoint } from '../io/sources/hub.ts';
import { decodeShareConfig, encodeShareConfig, SHARE_PREFIX, type ShareConfig, type ShareMethod, type ShareTrain } from '../share/shareLink.ts';
import type { ModelSource } from '../worker/protocol.ts';
import { demoSource, loadModel, weightsFor } from './modelActions.ts';
import { useApp } from './index.ts';
import type { TrainingState } from './training.ts';
import { startTraining } from './trainingActions.ts';

/** Largest dataset fetched from a shared dataset URL, bytes. */
const MAX_DATASET_URL_BYTES = 16 * 1024 * 1024;

const state = () => useApp.getState();

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The run settings of a link: the optional ones only when they differ from their defaults (older links read the same). */
function shareTrainOf(training: TrainingState): ShareTrain {
  const train: ShareTrain = { steps: training.steps, seqLength: training.seqLen, lr: training.lr };
  if (training.batchSize !== 1) train.batchSize = training.batchSize;
  if (training.schedule !== 'constant') train.schedule = training.schedule;
  if (training.warmupSteps !== 0) train.warmupSteps = training.warmupSteps;
  if (training.seed !== 0) train.seed = training.seed;
  return train;
}

/** The configuration the share button encodes, or why there is none. */
function currentConfig(): ShareConfig {
  const { model, training } = state();
  const source = model.status === 'ready' ? model.reloadable : null;
  if (!source) throw new Error('Load the demo model or a hub model first: a link can only name a model that others can fetch.');
  let shareModel: ShareConfig['model'] = { kind: 'demo' };
  if (source.kind === 'hub') {
    const location = parseHubSpec(source.spec, resolveHubEndpoint(source.endpoint || 'https://huggingface.co'));
    const id = location.revision === 'main' ? location.repo : `${location.repo}@${location.revision}`;
    shareModel = source.endpoint ? { kind: 'hub', id, endpoint: source.endpoint } : { kind: 'hub', id };
  }
  const s = training.settings;
  const method: ShareMethod =
    s.method === 'adapter'
      ? { kind: 'adapter', reductionFactor: s.reductionFactor, dropout: s.dropout, placement: s.placement }
      : { kind: s.method, r: s.r, alpha: s.alpha, dropout: s.dropout, useRslora: s.useRslora, targetModules: s.targetModules };
  const config: ShareConfig = { v: 1, model: shareModel, method, train: shareTrainOf(training) };
  if (training.dataset.trim() !== '') config.data = { inline: training.dataset };
  if (state().share.demoMode) {
    if (!config.data) throw new Error('A demo link starts training, so it needs a dataset: paste one first (or make a plain link).');
    config.demo = true;
  }
  return config;
}

/** Build the link for the current state into `share.url`, and copy it to the clipboard when the page may. */
export async function buildShareLink(): Promise<void> {
  try {
    const fragment = await encodeShareConfig(currentConfig());
    const url = `${location.href.split('#')[0]}${fragment}`;
    state().patchShare({ url, problem: null });
    await navigator.clipboard?.writeText(url).catch(() => undefined);
  } catch (error) {
    state().patchShare({ url: '', problem: messageOf(error) });
  }
}

/** Choose between plain and demo links; a link built before no longer matches, so it is cleared. */
export function setShareDemoMode(demoMode: boolean): void {
  state().patchShare({ demoMode, url: '', problem: null });
}

/** Read a `#share=` fragment into an offer (or the reason it is refused). Starts nothing. */
/** Whether a URL fragment carries a share link (read or not yet). */
export function isShareFragment(fragment: string): boolean {
  return fragment.startsWith(SHARE_PREFIX);
}

export async function openShareLink(fragment: string): Promise<void> {
  if (!isShareFragment(fragment)) return;
  try {
    state().patchShare({ incoming: { state: 'offer', config: await decodeShareConfig(fragment) } });
  } catch (error) {
    state().patchShare({ incoming: { state: 'refused', message: messageOf(error) } });
  }
}

function forgetFragment(): void {
  history.replaceState(history.state, '', location.href.split('#')[0]);
}

export function dismissShareLink(): void {
  state().patchShare({ incoming: null });
  forgetFragment();
}

async function fetchDataset(url: string): Promise<string> {
  const response = await fetch(url, { credentials: 'omit' });
  if (!response.ok || !response.body) throw new Error(`The shared dataset ${url} could not be fetched (HTTP ${response.status}).`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > MAX_DATASET_URL_BYTES) {
      await reader.cancel().catch(() => undefined);
      throw new Error(`The shared dataset ${url} is larger than ${MAX_DATASET_URL_BYTES / 1024 / 1024} MiB.`);
    }
    text += decoder.decode(value, { stream: true });
  }
  return text + decoder.decode();
}

/** The user confirmed the offer: apply the settings, fill the dataset, load the model. Does not train. */
export async function applyShareLink(): Promise<void> {
  const incoming = state().share.incoming;
  if (incoming?.state !== 'offer' || state().model.status === 'loading' || state().training.running) return;
  const { config } = incoming;
  state().patchShare({ incoming: { state: 'applying', config } });
  forgetFragment();
  const { method, train, data, model } = config;
  state().setMethodSettings(
    method.kind === 'adapter'
      ? { method: 'adapter', reductionFactor: method.reductionFactor, dropout: method.dropout, placement: method.placement }
      : { method: method.kind, r: method.r, alpha: method.alpha, dropout: method.dropout, useRslora: method.useRslora, targetModules: method.targetModules },
  );
  state().patchTraining({
    steps: train.steps,
    seqLen: train.seqLength,
    lr: train.lr,
    batchSize: train.batchSize ?? 1,
    schedule: train.schedule ?? 'constant',
    warmupSteps: train.warmupSteps ?? 0,
    seed: train.seed ?? 0,
  });
  try {
    if (data && 'inline' in data) state().patchTraining({ dataset: data.inline });
    else if (data) state().patchTraining({ dataset: await fetchDataset(data.url) });
  } catch (error) {
    state().patchShare({ incoming: { state: 'refused', message: messageOf(error) } });
    return;
  }
  const source: ModelSource = model.kind === 'demo' ? demoSource() : { kind: 'hub', spec: model.id, ...(model.endpoint ? { endpoint: model.endpoint } : {}) };
  state().patchShare({ incoming: null });
  await loadModel(source, model.kind === 'demo' ? 'Demo model' : model.id, false, weightsFor(method.kind));
}

/** The user's one click on a demo link: set up as applyShareLink does, then start training when all went well. */
export async function startShareDemo(): Promise<void> {
  const incoming = state().share.incoming;
  if (incoming?.state !== 'offer' || !incoming.config.demo) return;
  await applyShareLink();
  const { share, model, training } = state();
  // A failure (dataset fetch, model load) is on show already: the panels say what went wrong.
  if (share.incoming !== null || model.status !== 'ready' || model.error !== null || training.dataset.trim() === '') return;
  await startTraining();
}
