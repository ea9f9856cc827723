// The page's side of the engine worker: typed calls that return promises, per-call event callbacks (progress,
// tokens), a subscription for news that belongs to no call (a lost device), and the worker's stop (graceful:
// cancel, wait, terminate). The UI and its store use only this; no GPU object ever reaches the page.

import {
  isResponseMessage,
  PROTOCOL_VERSION,
  type CallType,
  type EngineEvent,
  type EngineFailure,
  type Payload,
  type Request,
  type RequestMessage,
  type Result,
} from './protocol.ts';

/** A failed call; `failure` is the worker's description of what went wrong. */
export class EngineCallError extends Error {
  constructor(readonly failure: EngineFailure) {
    super(failure.message);
    this.name = 'EngineCallError';
  }
}

/** What the client needs of a Worker (a MessagePort-like object; tests may pass a fake). */
export interface WorkerLike {
  postMessage(message: unknown): void;
  terminate(): void;
  onmessage: ((event: MessageEvent) => void) | null;
  onerror: ((event: ErrorEvent) => void) | null;
}

export interface RunningCall<T extends CallType> {
  readonly id: number;
  readonly result: Promise<Result<T>>;
  /** Ask the worker to stop this call; `result` then settles (rejects with kind 'cancelled', or resolves early for generate). */
  cancel(): void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: EngineCallError): void;
  onEvent?: (event: EngineEvent) => void;
  /** Settles (never rejects) when the call does. */
  settled: Promise<void>;
}

export class EngineClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(event: EngineEvent, callId: number | null) => void>();
  /** Set once the client is closing or stopped: new calls fail with it at once (a stopped worker would never answer). */
  private stopped: EngineFailure | null = null;
  private closing: Promise<void> | null = null;

  constructor(private readonly worker: WorkerLike) {
    worker.onmessage = (event) => this.receive(event.data);
    worker.onerror = (event) => {
      event.preventDefault?.();
      this.failAll({ kind: 'internal', name: 'WorkerError', message: `the engine worker failed: ${event.message || 'unknown error'}`, retryable: false });
    };
  }

  /** The engine worker of this app (bundled by Vite). */
  static start(): EngineClient {
    return new EngineClient(new Worker(new URL('./engineWorker.ts', import.meta.url), { type: 'module', name: 'tabtune engine' }));
  }

  /** Start a call; events that belong to it go to `onEvent`. */
  start<T extends CallType>(type: T, payload: Payload<T>, onEvent?: (event: EngineEvent) => void): RunningCall<T> {
    if (this.stopped) {
      const failure = this.stopped;
      return { id: this.nextId++, result: Promise.reject(new EngineCallError(failure)), cancel: () => undefined };
    }
    return this.send(type, payload, onEvent);
  }

  call<T extends CallType>(type: T, payload: Payload<T>, onEvent?: (event: EngineEvent) => void): Promise<Result<T>> {
    return this.start(type, payload, onEvent).result;
  }

  /** Every event (with its call id, or null for news such as a lost device). Returns the unsubscribe function. */
  subscribe(listener: (event: EngineEvent, callId: number | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stop the worker now; running calls fail with `message`. */
  terminate(message = 'the engine worker was stopped'): void {
    this.stopped ??= { kind: 'internal', name: 'WorkerError', message, retryable: false };
    this.worker.terminate();
    this.failAll(this.stopped);
  }

  /**
   * Stop the worker gracefully: refuse new calls, cancel the running ones (a training run stops at its next step
   * boundary), give them up to `graceMs` to settle, then terminate. Calls still running then fail with `message`.
   */
  close(message: string, graceMs: number): Promise<void> {
    this.closing ??= (async () => {
      this.stopped = { kind: 'internal', name: 'WorkerError', message, retryable: false };
      const running = [...this.pending.entries()];
      for (const [id] of running) void this.send('cancel', { target: id }).result.catch(() => undefined);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
      await Promise.race([Promise.all(running.map(([, pending]) => pending.settled)), grace]);
      clearTimeout(timer);
      this.terminate(message);
    })();
    return this.closing;
  }

  private send<T extends CallType>(type: T, payload: Payload<T>, onEvent?: (event: EngineEvent) => void): RunningCall<T> {
    const id = this.nextId++;
    // `settled` is its own promise (not result.then): a rejection nobody handles must still be reported.
    let markSettled: () => void = () => undefined;
    const settled = new Promise<void>((resolve) => (markSettled = resolve));
    const result = new Promise<Result<T>>((resolve, reject) => {
      this.pending.set(id, {
        resolve: (value) => (markSettled(), resolve(value as Result<T>)),
        reject: (error) => (markSettled(), reject(error)),
        onEvent,
        settled,
      });
    });
    const message: RequestMessage = { v: PROTOCOL_VERSION, id, request: { type, ...payload } as Request };
    this.worker.postMessage(message);
    return { id, result, cancel: () => void this.call('cancel', { target: id }).catch(() => undefined) };
  }

  private receive(data: unknown): void {
    if (!isResponseMessage(data)) return;
    if (data.v !== PROTOCOL_VERSION) {
      this.failAll({ kind: 'protocol', name: 'ProtocolError', message: `the engine speaks protocol ${data.v}, the page ${PROTOCOL_VERSION}: reload the page`, retryable: false });
      return;
    }
    if (data.kind === 'event') {
      if (data.id !== null) this.pending.get(data.id)?.onEvent?.(data.event);
      for (const listener of this.listeners) listener(data.event, data.id);
      return;
    }
    const pending = this.pending.get(data.id);
    if (!pending) return;
    this.pending.delete(data.id);
    if (data.kind === 'result') pending.resolve(data.result);
    else pending.reject(new EngineCallError(data.error));
  }

  private failAll(failure: EngineFailure): void {
    for (const pending of this.pending.values()) pending.reject(new EngineCallError(failure));
    this.pending.clear();
  }
}
