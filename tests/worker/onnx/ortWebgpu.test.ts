// The errors of ONNX Runtime Web's session creation, as the worker reports them: a missing execution provider is
// a GpuUnavailableError (the run never falls back to the CPU), a model the runtime refuses is a badInput failure
// naming the file. The errors are real ones: ONNX Runtime Web's Node build has no WebGPU backend.

import * as ort from 'onnxruntime-web';
import { readFileSync } from 'node:fs';
import { beforeAll, expect, it } from 'vitest';
import { exportOnnxFromWeights } from '../../../src/export/exportOnnx.ts';
import { GpuUnavailableError } from '../../../src/gpu/errors.ts';
import { parseModelConfig } from '../../../src/models/config.ts';
import { expectedTensors } from '../../../src/models/weights.ts';
import { toFailure } from '../../../src/worker/failures.ts';
import { OnnxFileError } from '../../../src/worker/onnx/onnxInterface.ts';
import { OnnxBackendError, sessionCreationError } from '../../../src/worker/onnx/ortWebgpu.ts';

const config = parseModelConfig(readFileSync(new URL('../../fixtures/models/llama/config.json', import.meta.url)));
const bytes = exportOnnxFromWeights(config, new Map(expectedTensors(config).map((t) => [t.name, new Float32Array(t.shape.reduce((a, b) => a * b, 1))])));

beforeAll(() => {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
});

async function creationError(model: Uint8Array, executionProviders: string[]): Promise<unknown> {
  try {
    const session = await ort.InferenceSession.create(model, { executionProviders });
    await session.release();
  } catch (error) {
    return error;
  }
  throw new Error('the session was created');
}

it('reports a WebGPU execution provider that cannot start as a GPU failure, without falling back', async () => {
  const raw = await creationError(bytes, ['webgpu']);
  expect((raw as Error).message).toMatch(/^no available backend found\. ERR: \[webgpu\]/);
  const error = sessionCreationError(raw, 'model.onnx');
  expect(error).toBeInstanceOf(OnnxBackendError);
  expect(error).toBeInstanceOf(GpuUnavailableError);
  expect(error.message).toBe('ONNX Runtime Web could not start its WebGPU execution provider (it is not allowed to fall back to the CPU): backend not found.');
  expect(toFailure(error)).toMatchObject({ kind: 'gpuUnavailable', name: 'OnnxBackendError' });
  // The browser's words when there is no adapter, as ONNX Runtime Web 1.30 puts them.
  const noAdapter = sessionCreationError(new Error('no available backend found. ERR: [webgpu] Error: Failed to get GPU adapter. You may need to enable flag "--enable-unsafe-webgpu" if you are using Chrome.'), 'm.onnx');
  expect(noAdapter.message).toMatch(/could not start its WebGPU execution provider \(it is not allowed to fall back to the CPU\): Failed to get GPU adapter\./);
});

it('reports a model the runtime refuses as a bad file, naming it, without the runtime\'s source locations', async () => {
  // A model with a graph but no opset import: valid protobuf that ONNX Runtime refuses.
  const raw = await creationError(new Uint8Array([8, 8, 58, 2, 10, 0]), ['wasm']);
  const error = sessionCreationError(raw, 'broken.onnx');
  expect(error).toBeInstanceOf(OnnxFileError);
  expect(error.message).toMatch(/^"broken\.onnx": ONNX Runtime Web cannot load this model: Missing opset in the model\./);
  expect(error.message).not.toMatch(/\.cc:\d+|onnxruntime::/);
  expect(toFailure(error)).toMatchObject({ kind: 'badInput', file: 'broken.onnx' });
});
