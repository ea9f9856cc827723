// The worker's outgoing messages: results, failures and events, stamped with the protocol version.

/// <reference lib="webworker" />

import { PROTOCOL_VERSION, type EngineEvent, type ResponseMessage } from './protocol.ts';

export function post(message: ResponseMessage): void {
  (self as unknown as DedicatedWorkerGlobalScope).postMessage(message);
}

/** Events of call `id`, or news that belongs to no call (id null). */
export function emitter(id: number | null): (event: EngineEvent) => void {
  return (event) => post({ v: PROTOCOL_VERSION, kind: 'event', id, event });
}
