// Generation from the loaded model (with whatever adapter is attached): the prompt, optionally wrapped in the
// chat template, then streaming tokens as events until EOS, the token limit, the context's end or a cancel.

import { generate } from '../../train/generate.ts';
import { requireLoaded, type CallContext } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import type { GenerateRequest, Result } from '../protocol.ts';

export async function generateCall(payload: GenerateRequest, ctx: CallContext): Promise<Result<'generate'>> {
  const { model, tokenizer, chatTemplate } = requireLoaded();
  const started = performance.now();
  if (typeof payload.prompt !== 'string') throw new BadRequestError('the prompt must be text');
  let promptIds: number[];
  if (payload.useChatTemplate) {
    if (!chatTemplate) throw new BadRequestError('this model has no chat template');
    const rendered = chatTemplate.render([{ role: 'user', content: payload.prompt }], { addGenerationPrompt: true });
    promptIds = tokenizer.encode(rendered, { addSpecialTokens: false });
  } else {
    promptIds = tokenizer.encode(payload.prompt);
  }
  if (promptIds.length === 0) {
    const bos = tokenizer.special.bos ?? tokenizer.special.eos;
    if (!bos) throw new BadRequestError('the prompt is empty and the tokenizer has no start token to begin from');
    promptIds = [bos.id];
  }
  if (promptIds.length >= model.config.maxPositions) {
    throw new BadRequestError(`the prompt is ${promptIds.length} tokens; this model's context holds ${model.config.maxPositions}, with room needed for new tokens`);
  }
  const stopTokens = [...new Set([...tokenizer.special.eosIds, ...model.config.eosTokenIds])];
  const { sampling } = payload;
  let firstTokenAt: number | null = null;
  const result = await generate(model, promptIds, {
    maxNewTokens: sampling.maxNewTokens,
    temperature: sampling.temperature,
    topK: sampling.topK,
    topP: sampling.topP,
    repetitionPenalty: sampling.repetitionPenalty,
    seed: sampling.seed,
    stopTokens,
    signal: ctx.signal,
    decoder: tokenizer,
    skipSpecialTokens: true,
    vocabLimit: Math.min(tokenizer.vocabSize, model.config.vocabSize),
    onStep: (step) => {
      firstTokenAt ??= performance.now();
      ctx.emit({ type: 'token', delta: step.text, tokenId: step.token, index: step.index });
    },
  });
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
}
