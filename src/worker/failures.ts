// Errors of the worker's own, and the translation of every error into EngineFailure data for the page: the
// kind says what the user can do (retry, pick other files, a smaller model), the message says why.

import { DeviceLostError, GpuLimitError, GpuOutOfMemoryError, GpuUnavailableError } from '../gpu/errors.ts';
import { FormatError } from '../io/errors.ts';
import { HubAccessError, HubDownloadError, HubNetworkError, type HubFailure } from '../io/sources/hub.ts';
import { MissingFileError } from '../io/sources/types.ts';
import { QuantStateError } from '../quant/quantState.ts';
import { WeightTooLargeError } from '../models/weights.ts';
import type { EngineFailure, FailureKind, MemoryEstimate } from './protocol.ts';

/** The model cannot fit this device; carries the estimate that says so. */
export class DoesNotFitError extends Error {
  constructor(readonly estimate: MemoryEstimate) {
    super(`This model does not fit: ${estimate.refusal ?? 'it is too large for this device'}.`);
    this.name = 'DoesNotFitError';
  }
}

/** A call that needs a model (or a device) before one is there. */
export class NoModelError extends Error {
  override name = 'NoModelError';
}

/** A call whose payload makes no sense (an empty file list, a prompt that is not text). */
export class BadRequestError extends Error {
  override name = 'BadRequestError';
}

function isAbort(error: unknown): boolean {
  return error instanceof DOMException ? error.name === 'AbortError' : error instanceof Error && error.name === 'AbortError';
}

function kindOf(error: unknown): FailureKind {
  if (isAbort(error)) return 'cancelled';
  if (error instanceof GpuUnavailableError) return 'gpuUnavailable';
  if (error instanceof DeviceLostError) return 'deviceLost';
  if (error instanceof GpuOutOfMemoryError) return 'outOfMemory';
  if (error instanceof DoesNotFitError || error instanceof WeightTooLargeError || error instanceof GpuLimitError) return 'doesNotFit';
  if (error instanceof NoModelError) return 'noModel';
  if (error instanceof BadRequestError || error instanceof RangeError) return 'badInput';
  if (error instanceof HubAccessError) return 'access';
  if (error instanceof HubNetworkError || error instanceof HubDownloadError) return 'network';
  if (error instanceof MissingFileError) return 'notFound';
  if (error instanceof FormatError || error instanceof QuantStateError) return 'badInput';
  return 'internal';
}

const ADVICE: Partial<Record<FailureKind, string>> = {
  outOfMemory: 'The GPU ran out of memory: close other GPU-heavy tabs, or pick a smaller model.',
  deviceLost: 'The GPU device was lost; restart the engine to continue.',
};

export function toFailure(error: unknown): EngineFailure {
  const kind = kindOf(error);
  const base = error instanceof Error ? error : new Error(String(error));
  const advice = ADVICE[kind];
  const failure: EngineFailure = {
    kind,
    name: base.name || 'Error',
    message: kind === 'cancelled' ? 'Cancelled.' : advice ? `${base.message} ${advice}` : base.message,
    retryable: kind === 'network' ? (error as HubFailure).retryable !== false : false,
  };
  if (error instanceof FormatError) {
    failure.file = error.file;
    if (error.field !== undefined) failure.field = error.field;
  }
  if (error instanceof DoesNotFitError) failure.estimate = error.estimate;
  return failure;
}
