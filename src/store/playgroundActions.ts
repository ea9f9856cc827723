// Generation in the playground: stream the worker's tokens into the playground slice; stop on request.

import { engine, failureOf, state } from './engineClient.ts';

export async function generate(): Promise<void> {
  const { playground } = state();
  if (playground.running) return;
  const running = engine().start('generate', { prompt: playground.prompt, sampling: playground.sampling, useChatTemplate: playground.useChatTemplate }, (event) => {
    if (event.type !== 'token') return;
    const current = state().playground;
    state().patchPlayground({ output: current.output + event.delta, tokens: event.tokenId >= 0 ? current.tokens + 1 : current.tokens });
  });
  state().patchPlayground({ running: true, output: '', tokens: 0, result: null, error: null, callId: running.id });
  try {
    const result = await running.result;
    state().patchPlayground({ running: false, result, output: result.text, tokens: result.tokenIds.length, callId: null });
  } catch (error) {
    state().patchPlayground({ running: false, error: failureOf(error), callId: null });
  }
}

export function stopGenerating(): void {
  const id = state().playground.callId;
  if (id !== null) void engine().call('cancel', { target: id }).catch(() => undefined);
}
