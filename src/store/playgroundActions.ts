// Generation in the playground: stream the worker's tokens into the playground slice; compare the attached
// adapter with the base model (two runs, one after the other, same prompt, settings and seed); run an exported
// .onnx file through ONNX Runtime Web in the worker; stop on request.

import type { EngineEvent, GenerateRequest, OnnxSource } from '../worker/protocol.ts';
import { engine, failureOf, state } from './engineClient.ts';
import type { GenerationSide } from './playground.ts';

/** The request of the playground's current prompt and settings. */
function currentRequest(): GenerateRequest {
  const { prompt, sampling, useChatTemplate } = state().playground;
  return { prompt, sampling, useChatTemplate };
}

/** Appends streamed text to `side`'s column. */
function onToken(side: GenerationSide) {
  return (event: EngineEvent) => {
    if (event.type !== 'token') return;
    const current = state().playground;
    const counted = event.tokenId >= 0 ? 1 : 0;
    if (side === 'adapter') state().patchPlayground({ output: current.output + event.delta, tokens: current.tokens + counted });
    else state().patchPlayground({ baseOutput: current.baseOutput + event.delta, baseTokens: current.baseTokens + counted });
  };
}

/** One generation into `side`'s column; false when it failed (the error is in the store). */
async function generateInto(side: GenerationSide, request: GenerateRequest): Promise<{ stopped: boolean } | null> {
  const running = engine().start('generate', side === 'base' ? { ...request, adapterOff: true } : request, onToken(side));
  state().patchPlayground({ side, callId: running.id });
  try {
    const result = await running.result;
    if (side === 'adapter') state().patchPlayground({ result, output: result.text, tokens: result.tokenIds.length });
    else state().patchPlayground({ baseResult: result, baseOutput: result.text, baseTokens: result.tokenIds.length });
    return { stopped: result.stopReason === 'aborted' };
  } catch (error) {
    state().patchPlayground({ error: failureOf(error) });
    return null;
  }
}

const CLEARED = { output: '', tokens: 0, result: null, baseOutput: '', baseTokens: 0, baseResult: null, error: null } as const;

export async function generate(): Promise<void> {
  const { playground } = state();
  if (playground.running || playground.onnx.running) return;
  state().patchPlayground({ ...CLEARED, running: true, compared: false });
  await generateInto('adapter', currentRequest());
  state().patchPlayground({ running: false, side: null, callId: null });
}

/** The model with its adapter, then with the adapter off, side by side; a stop during the first skips the second. */
export async function compareWithAdapterOff(): Promise<void> {
  const { playground, training } = state();
  if (playground.running || playground.onnx.running || training.attached === null) return;
  const request = currentRequest(); // both runs use the settings of the moment the comparison started
  state().patchPlayground({ ...CLEARED, running: true, compared: true });
  const first = await generateInto('adapter', request);
  if (first && !first.stopped) await generateInto('base', request);
  state().patchPlayground({ running: false, side: null, callId: null });
}

export function stopGenerating(): void {
  const id = state().playground.callId;
  if (id !== null) void engine().call('cancel', { target: id }).catch(() => undefined);
}

/** Ask the worker whether it keeps an ONNX export (after an export, or when the playground comes into use). */
export async function refreshKeptOnnx(): Promise<void> {
  try {
    state().patchOnnx({ kept: await engine().call('keptOnnx', {}) });
  } catch {
    // The worker is restarting or gone; the button stays as it was and the run itself reports any problem.
  }
}

export async function runOnnx(source: OnnxSource): Promise<void> {
  const { playground } = state();
  if (playground.running || playground.onnx.running) return;
  const running = engine().start('onnxGenerate', { source, ...currentRequest() }, (event) => {
    if (event.type === 'onnxSession') {
      const { type: _, ...session } = event;
      state().patchOnnx({ session });
    } else if (event.type === 'token') {
      const current = state().playground.onnx;
      state().patchOnnx({ output: current.output + event.delta, tokens: event.tokenId >= 0 ? current.tokens + 1 : current.tokens });
    }
  });
  state().patchOnnx({ running: true, output: '', tokens: 0, session: null, result: null, error: null, callId: running.id });
  try {
    const result = await running.result;
    state().patchOnnx({ running: false, result, output: result.text, tokens: result.tokenIds.length, callId: null });
  } catch (error) {
    state().patchOnnx({ running: false, error: failureOf(error), callId: null });
  }
  await refreshKeptOnnx();
}

export function stopOnnx(): void {
  const id = state().playground.onnx.callId;
  if (id !== null) void engine().call('cancel', { target: id }).catch(() => undefined);
}
