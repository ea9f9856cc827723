// The page's one connection to the engine worker, and the helpers every action module uses: the client, the
// store's current state, and the translation of any error into the worker's EngineFailure shape.

import type { EngineClient } from '../worker/client.ts';
import { EngineCallError } from '../worker/client.ts';
import type { EngineFailure } from '../worker/protocol.ts';
import { useApp } from './index.ts';

let client: EngineClient | null = null;

export function setEngineClient(connected: EngineClient): void {
  client = connected;
}

export function failureOf(error: unknown): EngineFailure {
  if (error instanceof EngineCallError) return error.failure;
  return { kind: 'internal', name: error instanceof Error ? error.name : 'Error', message: error instanceof Error ? error.message : String(error), retryable: false };
}

export function engine(): EngineClient {
  if (!client) throw new Error('the engine is not connected');
  return client;
}

export const state = () => useApp.getState();

/** Offer bytes to the user as a download named `fileName`. */
export function download(bytes: Uint8Array, fileName: string, type = 'application/octet-stream'): void {
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
