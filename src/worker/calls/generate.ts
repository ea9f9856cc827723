// Generation from the loaded model (with whatever adapter is attached, or with it switched off for a side-by-side
// comparison): the prompt, optionally wrapped in the chat template, then streaming tokens as events until EOS,
// the token limit, the context's end or a cancel. The prompt encoding and stop tokens are shared with the ONNX
// runner (onnxGenerate.ts), so both see the same token ids for the same prompt.

import { generate, type GenerationResult, type GenerationStep } from '../../train/generate.ts';
import { engineState, requireLoaded, type Adapted, type CallContext, type LoadedModel } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import type { GenerateRequest, GenerateResult, Result, SamplingSettings } from '../protocol.ts';

/** The prompt's token ids: wrapped as a user message when asked, a start token when empty; checked against `contextLength`. */
export function encodePrompt(loaded: LoadedModel, prompt: unknown, useChatTemplate: boolean, contextLength: number): number[] {
  const { tokenizer, chatTemplate } = loaded;
  if (typeof prompt !== 'string') throw new BadRequestError('the prompt must be text');
  let promptIds: number[];
  if (useChatTemplate) {
    if (!chatTemplate) throw new BadRequestError('this model has no chat template');
    const rendered = chatTemplate.render([{ role: 'user', content: prompt }], { addGenerationPrompt: true });
    promptIds = tokenizer.encode(rendered, { addSpecialTokens: false });
  } else {
    promptIds = tokenizer.encode(prompt);
  }
  if (promptIds.length === 0) {
    const bos = tokenizer.special.bos ?? tokenizer.special.eos;
    if (!bos) throw new BadRequestError('the prompt is empty and the tokenizer has no start token to begin from');
    promptIds = [bos.id];
  }
  if (promptIds.length >= contextLength) {
    throw new BadRequestError(`the prompt is ${promptIds.length} tokens; this model's context holds ${contextLength}, with room needed for new tokens`);
  }
  return promptIds;
}

/** Token ids that end a generation: the tokenizer's end tokens and the model config's. */
export function stopTokensOf(loaded: LoadedModel): number[] {
  return [...new Set([...loaded.tokenizer.special.eosIds, ...loaded.model.config.eosTokenIds])];
}

/**
 * What every generation of the worker shares: the sampling settings, the stop tokens, the tokenizer as decoder,
 * each step's text streamed as a token event, and the result with its timing (`started`: when the call began).
 */
export function streamedGeneration(loaded: LoadedModel, sampling: SamplingSettings, ctx: CallContext, started: number) {
  let firstTokenAt: number | null = null;
  const options = {
    maxNewTokens: sampling.maxNewTokens,
    temperature: sampling.temperature,
    topK: sampling.topK,
    topP: sampling.topP,
    repetitionPenalty: sampling.repetitionPenalty,
    seed: sampling.seed,
    stopTokens: stopTokensOf(loaded),
    signal: ctx.signal,
    decoder: loaded.tokenizer,
    skipSpecialTokens: true,
    onStep: (step: GenerationStep) => {
      firstTokenAt ??= performance.now();
      ctx.emit({ type: 'token', delta: step.text, tokenId: step.token, index: step.index });
    },
  };
  /** Send the text still held back (an incomplete character at the end) and describe the result. */
  const finish = (result: GenerationResult): GenerateResult => {
    if (result.finalText) ctx.emit({ type: 'token', delta: result.finalText, tokenId: -1, index: result.tokens.length });
    const finished = performance.now();
    return {
      text: result.text,
      tokenIds: result.tokens,
      promptTokens: result.promptTokens,
      stopReason: result.stopReason,
      totalMs: finished - started,
      decodeMs: firstTokenAt === null ? 0 : finished - firstTokenAt,
    };
  };
  return { options, finish };
}

/**
 * Run `fn` with the attached adapter switched off (LoRA wrappers pass the base output through; bottleneck hooks
 * return the plain residual sum), switching it back on however `fn` ends. Without an adapter `fn` just runs.
 */
export async function withAdapterOff<T>(adapted: Adapted | null, fn: () => Promise<T>): Promise<T> {
  if (adapted?.peft) {
    const peft = adapted.peft;
    const wasEnabled = peft.adaptersEnabled;
    try {
      peft.disableAdapters();
    } catch (error) {
      throw new BadRequestError(`the adapter cannot be switched off: ${(error as Error).message}`);
    }
    try {
      return await fn();
    } finally {
      if (wasEnabled) peft.enableAdapters();
    }
  }
  if (adapted?.bottleneck) {
    const bottleneck = adapted.bottleneck;
    const wasEnabled = bottleneck.isEnabled;
    bottleneck.disable();
    try {
      return await fn();
    } finally {
      if (wasEnabled) bottleneck.enable();
    }
  }
  return fn();
}

export async function generateCall(payload: GenerateRequest, ctx: CallContext): Promise<Result<'generate'>> {
  const loaded = requireLoaded();
  const { model, tokenizer } = loaded;
  const started = performance.now();
  const promptIds = encodePrompt(loaded, payload.prompt, payload.useChatTemplate, model.config.maxPositions);
  const { options, finish } = streamedGeneration(loaded, payload.sampling, ctx, started);
  const run = () => generate(model, promptIds, { ...options, vocabLimit: Math.min(tokenizer.vocabSize, model.config.vocabSize) });
  return finish(payload.adapterOff === true ? await withAdapterOff(engineState.adapted, run) : await run());
}
