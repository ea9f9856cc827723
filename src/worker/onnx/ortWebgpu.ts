// ONNX Runtime Web with its WebGPU execution provider, inside the engine worker. The runtime (its JavaScript and
// its ~27 MB WebAssembly) is loaded on first use only, from files the Vite build ships beside the app (the `?url`
// import below), never from a CDN: the app works offline and from any folder. `onnxruntime-web/webgpu` is the
// build whose WebGPU EP is ONNX Runtime's native one (the "asyncify" WebAssembly).
//
// Sessions are created with executionProviders ['webgpu'] and nothing else: when WebGPU cannot be started the
// creation fails (OnnxBackendError) instead of quietly running on the CPU. ONNX Runtime still places shape
// arithmetic on its CPU provider, as it always does; the model's compute runs on the GPU.

import type { InferenceSession } from 'onnxruntime-web/webgpu';
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url';
import { GpuUnavailableError } from '../../gpu/errors.ts';
import { OnnxFileError } from './onnxInterface.ts';

type Ort = typeof import('onnxruntime-web/webgpu');

/** ONNX Runtime Web could not start its WebGPU execution provider (no adapter, no device). */
export class OnnxBackendError extends GpuUnavailableError {}

export const EXECUTION_PROVIDER = 'webgpu';

let runtime: Promise<Ort> | null = null;

function loadRuntime(): Promise<Ort> {
  runtime ??= import('onnxruntime-web/webgpu').then(
    (ort) => {
      // One thread and no proxy worker: ONNX Runtime runs inside this worker, which is already off the page's thread.
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      ort.env.wasm.wasmPaths = { wasm: new URL(ortWasmUrl, import.meta.url).href };
      ort.env.logLevel = 'error';
      return ort;
    },
    (error: unknown) => {
      runtime = null; // a later run may retry (a network hiccup fetching the chunk)
      throw error;
    },
  );
  return runtime;
}

/**
 * The error ONNX Runtime throws when creating a session, as a typed one: "no available backend found" (it could
 * not start the requested execution provider) → OnnxBackendError; anything else is about the file.
 */
export function sessionCreationError(error: unknown, fileName: string): Error {
  const message = error instanceof Error ? error.message : String(error);
  const backend = /^no available backend found\. ERR: (?:\[webgpu\] )?(.*)$/s.exec(message);
  if (backend) {
    const detail = backend[1].replace(/^Error: /, '').trim();
    return new OnnxBackendError(`ONNX Runtime Web could not start its WebGPU execution provider (it is not allowed to fall back to the CPU): ${detail}`);
  }
  // "Can't create a session. ERROR_CODE: 1, ERROR_MESSAGE: /…/model.cc:193 onnxruntime::Model::Model(…) Missing opset …":
  // the source location and C++ signature say nothing to the user.
  const reason = message.replace(/^Can't create a session\. ERROR_CODE: \d+, ERROR_MESSAGE: (?:\S+:\d+ [\w:~<>]+\([^)]*\) )?/, '').trim();
  return new OnnxFileError(fileName, `ONNX Runtime Web cannot load this model: ${reason}`, {}, { cause: error });
}

export interface WebgpuSession {
  session: InferenceSession;
  ort: Ort;
  executionProvider: typeof EXECUTION_PROVIDER;
  /** The GPU ONNX Runtime runs on, in words ("google swiftshader"). */
  adapter: string;
}

export async function createWebgpuSession(bytes: Uint8Array, fileName: string): Promise<WebgpuSession> {
  const ort = await loadRuntime();
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: [EXECUTION_PROVIDER], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  } catch (error) {
    throw sessionCreationError(error, fileName);
  }
  const device = await ort.env.webgpu.device;
  const info = device.adapterInfo;
  const adapter = [info.vendor, info.architecture, info.description].filter((part) => part).join(' ') || 'an unnamed adapter';
  return { session, ort, executionProvider: EXECUTION_PROVIDER, adapter };
}
