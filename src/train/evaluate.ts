// Loss and perplexity of a causal LM on a text: the token stream is cut into consecutive windows of at most
// L positions (the model's context length, or a smaller maxLength); a window starting at token s feeds tokens
// s .. s + n − 1 and predicts s + 1 .. s + n, so every token after the first is predicted exactly once, with the
// tokens of its own window as context. The loss is the mean next-token cross entropy (nats) over all predicted
// tokens, computed by the engine's crossEntropy kernels; perplexity = exp(loss).
//
// Logits are formed in row chunks of the final hidden states ([n, V] each, under one storage binding), so a
// long window over a large vocabulary never needs its [L, V] logits at once. One number is read back per window.
//
// Data: a plain text file is one document. A JSONL file (.jsonl, .ndjson) holds one JSON object per line with
// "text", or "prompt" and "completion" (joined as they are), or chat "messages" (rendered with the model's chat
// template); documents are tokenized separately and joined with the tokenizer's EOS token between them.

import { crossEntropyCount, crossEntropyMean, crossEntropyRows } from '../engine/ops/crossEntropy.ts';
import { reshape } from '../engine/ops/reshape.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ChatMessage, ChatTemplate } from '../io/chatTemplate.ts';
import { FormatError } from '../io/errors.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import { tokenTensor, type CausalLM } from '../models/model.ts';

/** Windows longer than this are not used unless asked for (real models declare contexts of 100k+ positions). */
export const DEFAULT_EVAL_MAX_LENGTH = 2048;

/** Logit chunks are kept under this many bytes (and under the device's binding limit). */
const LOGIT_CHUNK_BYTES = 64 * 1024 * 1024;

/** An evaluation file that cannot be read as text or JSONL documents; names the file and the line. */
export class EvalDataError extends FormatError {}

export interface EvalDocument {
  text: string;
  /** Let the tokenizer add its special tokens (BOS); false for chat renders, which hold them already. */
  addSpecialTokens: boolean;
}

export function isJsonLines(fileName: string): boolean {
  return /\.(jsonl|ndjson)$/i.test(fileName);
}

/** The documents of an evaluation file's text (see the header for the formats). */
export function readEvalDocuments(content: string, fileName: string, template: ChatTemplate | null = null): EvalDocument[] {
  if (!isJsonLines(fileName)) {
    if (content.length === 0) throw new EvalDataError(fileName, 'is empty', { field: 'file' });
    return [{ text: content, addSpecialTokens: true }];
  }
  const documents: EvalDocument[] = [];
  const lines = content.split('\n');
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line.length === 0) return;
    const field = `line ${index + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new EvalDataError(fileName, `${field} is not JSON (${(error as Error).message})`, { field });
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new EvalDataError(fileName, `${field} is not a JSON object`, { field });
    const record = value as Record<string, unknown>;
    if (typeof record.text === 'string') {
      documents.push({ text: record.text, addSpecialTokens: true });
    } else if (typeof record.prompt === 'string' && typeof record.completion === 'string') {
      documents.push({ text: record.prompt + record.completion, addSpecialTokens: true });
    } else if (Array.isArray(record.messages)) {
      if (template === null) throw new EvalDataError(fileName, `${field} holds chat "messages", but the model has no chat template`, { field });
      documents.push({ text: template.render(record.messages as ChatMessage[]), addSpecialTokens: false });
    } else {
      throw new EvalDataError(fileName, `${field} has no "text" string, no "prompt" and "completion" strings, and no "messages" array`, { field });
    }
  });
  if (documents.length === 0) throw new EvalDataError(fileName, 'holds no JSON lines', { field: 'file' });
  return documents;
}

/** One token stream: each document's tokens, with the EOS token after every document but the last (when there is an EOS). */
export function tokenizeDocuments(tokenizer: Tokenizer, documents: readonly EvalDocument[]): number[] {
  const eos = tokenizer.special.eos?.id ?? null;
  const ids: number[] = [];
  documents.forEach((document, index) => {
    const tokens = tokenizer.encode(document.text, { addSpecialTokens: document.addSpecialTokens });
    ids.push(...tokens);
    if (eos !== null && index < documents.length - 1 && tokens[tokens.length - 1] !== eos) ids.push(eos);
  });
  return ids;
}

/** The windows over N tokens: [start, start + length) are fed, [start + 1, start + length + 1) predicted. */
export function evalWindows(tokenCount: number, maxLength: number): { start: number; length: number }[] {
  const windows: { start: number; length: number }[] = [];
  for (let start = 0; start < tokenCount - 1; start += maxLength) windows.push({ start, length: Math.min(maxLength, tokenCount - 1 - start) });
  return windows;
}

export interface EvalOptions {
  /** Window length; default min(context length, DEFAULT_EVAL_MAX_LENGTH); at most the context length. */
  maxLength?: number;
  signal?: AbortSignal;
  onProgress?: (progress: { window: number; windows: number; tokens: number }) => void;
}

export interface EvalResult {
  /** Mean next-token cross entropy in nats. */
  loss: number;
  perplexity: number;
  /** Predicted tokens (all tokens but the first). */
  tokens: number;
  windows: number;
  maxLength: number;
}

/** Loss and perplexity of `model` on the token stream `ids`. */
export async function evaluateTokens(model: CausalLM, ids: readonly number[], options: EvalOptions = {}): Promise<EvalResult> {
  const { engine, config } = model;
  const V = config.vocabSize;
  const C = config.hiddenSize;
  const maxLength = options.maxLength ?? Math.min(config.maxPositions, DEFAULT_EVAL_MAX_LENGTH);
  if (!Number.isSafeInteger(maxLength) || maxLength < 1) throw new RangeError(`evaluate: maxLength must be a positive integer, got ${maxLength}`);
  if (maxLength > config.maxPositions) {
    throw new RangeError(`evaluate: maxLength ${maxLength} is more than the ${config.maxPositions} positions of the model's context`);
  }
  if (ids.length < 2) throw new RangeError(`evaluate: need at least 2 tokens to predict one, got ${ids.length}`);
  ids.forEach((id, i) => {
    if (!Number.isSafeInteger(id) || id < 0 || id >= V) throw new RangeError(`evaluate: token ${id} at position ${i} is outside the vocabulary [0, ${V})`);
  });

  const limit = Math.min(LOGIT_CHUNK_BYTES, engine.gpu.info.limits.maxStorageBufferBindingSize);
  const chunkRows = Math.max(1, Math.floor(limit / (V * 4)));
  const windows = evalWindows(ids.length, maxLength);
  let total = 0;
  let predicted = 0;
  for (const [index, { start, length }] of windows.entries()) {
    options.signal?.throwIfAborted();
    const mean = await engine.scope(async () => {
      const loss = engine.noGrad(() => {
        const input = tokenTensor(engine, [ids.slice(start, start + length)], V);
        const targets = engine.tensor(Int32Array.from(ids.slice(start + 1, start + length + 1)), [length], { dtype: 'i32' });
        const hidden = model.hidden(input); // [1, n, C]
        const count = crossEntropyCount(targets);
        const rowLoss = engine.empty([length]);
        for (let first = 0; first < length; first += chunkRows) {
          const rows = Math.min(chunkRows, length - first);
          const chunk = hiddenRows(hidden, first, rows, C);
          const logits = model.head(chunk); // [rows, V]
          crossEntropyRows(logits, targets, { rowOffset: first, rowLoss }).rowStats.dispose();
          logits.dispose();
          chunk.dispose();
        }
        return crossEntropyMean(rowLoss, count);
      });
      return (await loss.read())[0];
    });
    total += mean * length;
    predicted += length;
    options.onProgress?.({ window: index + 1, windows: windows.length, tokens: predicted });
  }
  const loss = total / predicted;
  if (!Number.isFinite(loss)) throw new RangeError(`evaluate: the loss is not finite (${loss}); the model produced non-finite logits`);
  return { loss, perplexity: Math.exp(loss), tokens: predicted, windows: windows.length, maxLength };
}

/** Tokenize documents and evaluate. */
export async function evaluateDocuments(model: CausalLM, tokenizer: Tokenizer, documents: readonly EvalDocument[], options: EvalOptions = {}): Promise<EvalResult> {
  return evaluateTokens(model, tokenizeDocuments(tokenizer, documents), options);
}

/** Rows [first, first + rows) of hidden [1, n, C] as [rows, C] (a view when they are all of them). */
function hiddenRows(hidden: Tensor, first: number, rows: number, C: number): Tensor {
  if (first === 0 && rows === hidden.shape[1]) return reshape(hidden, [rows, C]);
  const out = hidden.engine.empty([rows, C]);
  hidden.engine.gpu.copy(hidden.buffer, first * C * 4, out.buffer, 0, rows * C * 4);
  return out;
}
