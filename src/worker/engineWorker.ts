// The engine's home in the browser: a dedicated Web Worker that owns the GPU device, the engine, the loaded model
// and its tokenizer, and answers the calls of protocol.ts. Calls that use the GPU run one after another (engine
// scopes must not interleave); `cancel`, `catalog` and `loseDevice` are answered at once. Failures travel as
// EngineFailure data; a lost device is reported as an event whether or not a call was running.

/// <reference lib="webworker" />

import { generateCall } from './calls/generate.ts';
import { capacity, init, loseDevice } from './calls/device.ts';
import { inspectDataset } from './calls/dataset.ts';
import { exportAdapterCall } from './calls/exportAdapter.ts';
import { exportMergedCall } from './calls/exportMerged.ts';
import { importAdapterCall } from './calls/importAdapter.ts';
import { loadModelCall } from './calls/loadModel.ts';
import { keptOnnxCall, onnxGenerateCall } from './calls/onnxGenerate.ts';
import { attachMethod } from './calls/method.ts';
import { discardSavedRunCall, endTrainingCall, resumeTrainingCall, savedRunCall, trainCall } from './calls/train.ts';
import { describeCatalog } from './catalog.ts';
import { disposeLoaded, engineState, type CallContext } from './engineState.ts';
import { BadRequestError, toFailure } from './failures.ts';
import { emitter, post } from './messages.ts';
import { isRequestMessage, PROTOCOL_VERSION, type CallType, type Payload, type Request, type ResponseMessage, type Result } from './protocol.ts';

const worker = self as unknown as DedicatedWorkerGlobalScope;

/** Abort controllers of the calls that can be cancelled, by call id. */
const cancellable = new Map<number, AbortController>();
/** The tail of the queue of GPU calls. */
let gpuQueue: Promise<unknown> = Promise.resolve();

type Handler<T extends CallType> = (payload: Payload<T>, ctx: CallContext) => Promise<Result<T>>;

const handlers: { [T in CallType]: { gpu: boolean; cancellable: boolean; run: Handler<T> } } = {
  catalog: { gpu: false, cancellable: false, run: async () => describeCatalog(capacity()) },
  init: { gpu: true, cancellable: false, run: () => init() },
  loadModel: { gpu: true, cancellable: true, run: loadModelCall },
  unloadModel: {
    gpu: true,
    cancellable: false,
    run: async () => {
      const had = engineState.loaded !== null;
      disposeLoaded();
      return { unloaded: had };
    },
  },
  loadedModel: { gpu: false, cancellable: false, run: async () => engineState.loaded?.summary ?? null },
  generate: { gpu: true, cancellable: true, run: generateCall },
  onnxGenerate: { gpu: true, cancellable: true, run: onnxGenerateCall },
  keptOnnx: { gpu: false, cancellable: false, run: async () => keptOnnxCall() },
  attachMethod: { gpu: true, cancellable: false, run: ({ settings }) => attachMethod(settings) },
  attachedMethod: { gpu: false, cancellable: false, run: async () => engineState.adapted?.summary ?? null },
  inspectDataset: { gpu: false, cancellable: false, run: (payload) => inspectDataset(payload) },
  train: { gpu: true, cancellable: true, run: trainCall },
  resumeTraining: { gpu: true, cancellable: true, run: resumeTrainingCall },
  endTraining: { gpu: true, cancellable: false, run: () => endTrainingCall() },
  savedRun: { gpu: false, cancellable: false, run: () => savedRunCall() },
  discardSavedRun: { gpu: true, cancellable: false, run: () => discardSavedRunCall() },
  exportAdapter: { gpu: true, cancellable: false, run: (payload) => exportAdapterCall(payload) },
  exportMerged: { gpu: true, cancellable: false, run: exportMergedCall },
  importAdapter: { gpu: true, cancellable: false, run: (payload) => importAdapterCall(payload) },
  cancel: {
    gpu: false,
    cancellable: false,
    run: async ({ target }) => {
      const controller = cancellable.get(target);
      controller?.abort(new DOMException('cancelled by the user', 'AbortError'));
      return { found: controller !== undefined };
    },
  },
  loseDevice: {
    gpu: false,
    cancellable: false,
    run: async () => loseDevice(),
  },
};

async function handle(id: number, request: Request): Promise<void> {
  const entry = handlers[request.type] as { gpu: boolean; cancellable: boolean; run: Handler<CallType> } | undefined;
  if (!entry) throw new BadRequestError(`unknown call ${JSON.stringify(String(request.type))}`);
  const controller = new AbortController();
  if (entry.cancellable) cancellable.set(id, controller);
  const ctx: CallContext = { id, signal: controller.signal, emit: emitter(id) };
  const run = () => entry.run(request as Payload<CallType>, ctx);
  try {
    let result: unknown;
    if (entry.gpu) {
      const queued = gpuQueue.then(() => (controller.signal.throwIfAborted(), run()));
      gpuQueue = queued.catch(() => undefined);
      result = await queued;
    } else {
      result = await run();
    }
    post({ v: PROTOCOL_VERSION, kind: 'result', id, type: request.type, result } as ResponseMessage);
  } finally {
    cancellable.delete(id);
  }
}

worker.onmessage = (event: MessageEvent<unknown>) => {
  const message = event.data;
  if (!isRequestMessage(message)) {
    post({ v: PROTOCOL_VERSION, kind: 'error', id: -1, error: toFailure(new BadRequestError('a message that is not a call was ignored')) });
    return;
  }
  if (message.v !== PROTOCOL_VERSION) {
    const error = new BadRequestError(`protocol version ${message.v} is not this worker's ${PROTOCOL_VERSION}: reload the page`);
    post({ v: PROTOCOL_VERSION, kind: 'error', id: message.id, error: { ...toFailure(error), kind: 'protocol' } });
    return;
  }
  handle(message.id, message.request).catch((error: unknown) => {
    post({ v: PROTOCOL_VERSION, kind: 'error', id: message.id, error: toFailure(error) });
  });
};
