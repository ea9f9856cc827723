// The page's side of the engine worker: typed calls that return promises, per-call event callbacks (progress,
// tokens), and a subscription for news that belongs to no call (a lost device). The UI and its store use only
// this; no GPU object ever reaches the page.

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
}

export class EngineClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(event: EngineEvent, callId: number | null) => void>();

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
    const id = this.nextId++;
    const result = new Promise<Result<T>>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, onEvent });
    });
    const message: RequestMessage = { v: PROTOCOL_VERSION, id, request: { type, ...payload } as Request };
    this.worker.postMessage(message);
    return { id, result, cancel: () => void this.call('cancel', { target: id }).catch(() => undefined) };
  }

  call<T extends CallType>(type: T, payload: Payload<T>, onEvent?: (event: EngineEvent) => void): Promise<Result<T>> {
    return this.start(type, payload, onEvent).result;
  }

  /** Every event (with its call id, or null for news such as a lost device). Returns the unsubscribe function. */
  subscribe(listener: (event: EngineEvent, callId: number | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  terminate(): void {
    this.worker.terminate();
    this.failAll({ kind: 'internal', name: 'WorkerError', message: 'the engine worker was stopped', retryable: false });
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
