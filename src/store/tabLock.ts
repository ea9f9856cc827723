// One engine per browser profile: only the tab holding the Web Lock `tabtune-engine` runs the engine worker (two
// engines would compete for GPU memory and write the same checkpoint files in the origin-private file system).
// A tab that finds the lock taken queues for it and starts by itself when the holder closes. "Use it here" asks
// the holder over a BroadcastChannel to hand over: the holder cancels its running calls (training stops at a step
// boundary), stops its worker and answers; the asking tab then steals the lock, so no third tab in the queue can
// slip in. A holder whose lock is stolen without asking stops its engine the same way. The holder keeps the lock
// until another tab steals it, so the lock is never free while an engine may still be running.

import type { EngineClient } from '../worker/client.ts';
import { connectEngine } from './engineActions.ts';
import { state } from './engineClient.ts';

const LOCK_NAME = 'tabtune-engine';
const CHANNEL_NAME = 'tabtune-engine-handover';
/** How long a handing-over tab lets its running calls reach a stopping point before it terminates the worker. */
const STOP_GRACE_MS = 20_000;
/** How long an asking tab waits for the holder's answer before it takes the lock anyway (a frozen holder). */
const HANDOVER_WAIT_MS = STOP_GRACE_MS + 10_000;
const MOVED_MESSAGE = 'tabtune moved to another tab';

/** Messages on the channel; `from`/`to` are tab ids, so a reply reaches only the tab that asked. */
type HandoverMessage = { type: 'handoverRequest'; from: string } | { type: 'handedOver'; to: string };

function isHandoverMessage(value: unknown): value is HandoverMessage {
  if (typeof value !== 'object' || value === null) return false;
  const message = value as Record<string, unknown>;
  return (message.type === 'handoverRequest' && typeof message.from === 'string') || (message.type === 'handedOver' && typeof message.to === 'string');
}

/** This tab's id on the channel (set at start: crypto.randomUUID exists only in secure contexts). */
let tabId = '';
let locks: LockManager | null = null;
let channel: BroadcastChannel | null = null;
let startClient: () => EngineClient = () => {
  throw new Error('runEngineInOneTab was not called');
};

/** Each lock request gets a number; only the latest one may hold the lock (earlier ones were abandoned). */
let generation = 0;
/** The request number holding the lock now, or null. */
let heldBy: number | null = null;
/** Ends the callback of the request holding the lock (the lock manager has already released it when stolen). */
let releaseHeld: (() => void) | null = null;
/** Aborts this tab's queued request. */
let queued: AbortController | null = null;

/** The engine this tab runs and the promise of its start (settles after the start wrote its outcome to the store). */
let running: { client: EngineClient; started: Promise<void> } | null = null;
let stopping: Promise<void> | null = null;

function startEngineHere(): void {
  if (running) return;
  state().setGpu({ state: 'checking' });
  const client = startClient();
  running = { client, started: connectEngine(client) };
}

/** Cancel the running calls, stop the worker, and forget what lived in it. Idempotent. */
function stopEngineHere(): Promise<void> {
  stopping ??= (async () => {
    const engine = running;
    running = null;
    state().setGpu({ state: 'elsewhere', reason: 'moved', asking: false });
    if (engine) {
      await engine.client.close(MOVED_MESSAGE, STOP_GRACE_MS);
      await engine.started;
      // The actions of the stopped calls finish in microtasks (their follow-up calls now fail at once); let them
      // write their outcome first, so that the state below wins.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    // The notice says where the engine went; failures of the calls it cut short would only repeat that.
    state().setGpu({ state: 'elsewhere', reason: 'moved', asking: false });
    state().patchModel({ status: 'none', summary: null, progress: null, estimate: null, callId: null, error: null });
    state().patchTraining({ attached: null, attaching: false, callId: null, datasetSummary: null, exporting: false, error: null });
    state().patchPlayground({ running: false, callId: null, error: null });
    const { running: hadRun, progress, checkpointStep } = state().training;
    if (hadRun) {
      // The run (paused at a step boundary by the cancel, or cut off) lived in the stopped worker; its checkpoint
      // stays in browser storage.
      const saved = checkpointStep !== null ? ` Its checkpoint of step ${checkpointStep} is saved in browser storage.` : '';
      state().patchTraining({ running: false, phase: 'idle', outcome: `Stopped after ${progress?.step ?? 0} steps: tabtune moved to another tab.${saved}` });
    }
  })().finally(() => (stopping = null));
  return stopping;
}

type RequestMode = 'ifAvailable' | 'queue' | 'steal';

function requestLock(mode: RequestMode): void {
  const manager = locks!;
  const mine = ++generation;
  queued?.abort();
  queued = mode === 'queue' ? new AbortController() : null;
  const controller = queued;
  const options: LockOptions = mode === 'ifAvailable' ? { ifAvailable: true } : mode === 'steal' ? { steal: true } : { signal: controller!.signal };
  manager
    .request(LOCK_NAME, options, (lock) => {
      if (lock === null) {
        // Another tab holds it: wait in line, and say so.
        state().setGpu({ state: 'elsewhere', reason: 'waiting', asking: false });
        requestLock('queue');
        return;
      }
      if (mine !== generation) return; // a request this tab has since replaced: let the lock go at once
      if (queued === controller) queued = null;
      heldBy = mine;
      return new Promise<void>((release) => {
        releaseHeld = release;
        startEngineHere();
      });
    })
    .catch((error: unknown) => {
      if (heldBy !== mine) {
        // An abandoned queued request (AbortError): nothing to do. Any other refusal (a sandboxed page may not
        // use locks): run without the lock rather than never.
        if (!(error instanceof DOMException && error.name === 'AbortError') && mine === generation) runWithoutLock(error);
        return;
      }
      heldBy = null;
      releaseHeld?.();
      releaseHeld = null;
      void stopEngineHere().then(() => {
        if (heldBy === null && queued === null) requestLock('queue');
      });
    });
}

/** Ask the holder to hand over; true once it has stopped its engine, false when it did not answer in time. */
function askForHandover(): Promise<boolean> {
  const bus = channel;
  if (!bus) return Promise.resolve(false);
  return new Promise((resolve) => {
    const finish = (answered: boolean) => {
      clearTimeout(timer);
      bus.removeEventListener('message', listen);
      resolve(answered);
    };
    const listen = (event: MessageEvent) => {
      if (isHandoverMessage(event.data) && event.data.type === 'handedOver' && event.data.to === tabId) finish(true);
    };
    const timer = setTimeout(() => finish(false), HANDOVER_WAIT_MS);
    bus.addEventListener('message', listen);
    bus.postMessage({ type: 'handoverRequest', from: tabId } satisfies HandoverMessage);
  });
}

/** Another tab asks for the engine: if this tab holds the lock, stop the engine and say so (the lock goes when stolen). */
async function answerHandover(to: string): Promise<void> {
  if (heldBy === null) return;
  await stopEngineHere();
  channel?.postMessage({ type: 'handedOver', to } satisfies HandoverMessage);
}

/**
 * Start the engine in this tab once it holds the lock; `start` makes the worker client. Without the Web Locks API
 * the engine starts at once (a console warning says that tabs are then not kept apart).
 */
export function runEngineInOneTab(start: () => EngineClient): void {
  startClient = start;
  if (!('locks' in navigator) || !navigator.locks) {
    runWithoutLock('this browser has no Web Locks API (navigator.locks)');
    return;
  }
  tabId = crypto.randomUUID();
  locks = navigator.locks;
  if (typeof BroadcastChannel === 'function') {
    channel = new BroadcastChannel(CHANNEL_NAME);
    channel.addEventListener('message', (event: MessageEvent) => {
      if (isHandoverMessage(event.data) && event.data.type === 'handoverRequest') void answerHandover(event.data.from);
    });
  }
  requestLock('ifAvailable');
}

function runWithoutLock(why: unknown): void {
  const reason = why instanceof Error ? why.message : String(why);
  console.warn(`tabtune: ${reason}, so other tabs of tabtune are not kept from running the engine at the same time.`);
  locks = null;
  startEngineHere();
}

/** "Use it here" / "Take it back": bring the engine to this tab from the one running it. */
export async function takeOverEngine(): Promise<void> {
  const gpu = state().gpu;
  if (!locks || gpu.state !== 'elsewhere' || gpu.asking) return;
  if (stopping) await stopping;
  if (heldBy !== null) {
    // Nobody took the lock after this tab handed over: the engine can simply start again.
    startEngineHere();
    return;
  }
  state().setGpu({ ...gpu, asking: true });
  await askForHandover();
  if (heldBy !== null) return; // the lock reached this tab meanwhile (the other tab closed)
  requestLock('steal');
}
