// Datasets as the loaded model's tokenizer reads them: parse (text, JSONL text, prompt/completion, chat), tokenize
// with the loss mask, and summarise for the data panel (counts, the first examples token by token with their
// masks); bad lines become a list with line numbers, not a failure.

import { DatasetError, parseDataset, requireUsable, tokenizeDataset, type TokenizedDataset } from '../../train/data.ts';
import { previewDataset } from '../datasetPreview.ts';
import { requireLoaded, type LoadedModel } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import type { DatasetSummary, Payload } from '../protocol.ts';

export function checkSeqLen(seqLen: number, maxPositions: number): void {
  if (!Number.isSafeInteger(seqLen) || seqLen < 1 || seqLen > maxPositions) throw new BadRequestError(`the sequence length must be an integer in [1, ${maxPositions}], got ${seqLen}`);
}

/**
 * The last dataset tokenized, with what it was tokenized for: the data panel inspects a text and the run that
 * follows trains on the same one, and a large file takes the tokenizer seconds (about 1 MB/s), so it is done once.
 */
let lastTokenized: { loaded: LoadedModel; text: string; seqLen: number; dataset: TokenizedDataset } | null = null;

export function tokenize(current: LoadedModel, text: string, seqLen: number): TokenizedDataset {
  if (typeof text !== 'string') throw new BadRequestError('the dataset must be text');
  checkSeqLen(seqLen, current.model.config.maxPositions);
  if (lastTokenized && lastTokenized.loaded === current && lastTokenized.seqLen === seqLen && lastTokenized.text === text) return lastTokenized.dataset;
  lastTokenized = null; // the previous model's or text's tokens are not kept past a new request
  const parsed = parseDataset(text, { fileName: 'the dataset' });
  const dataset = tokenizeDataset(parsed, { tokenizer: current.tokenizer, chatTemplate: current.chatTemplate, maxTokens: seqLen + 1, modelVocabSize: current.model.config.vocabSize });
  lastTokenized = { loaded: current, text, seqLen, dataset };
  return dataset;
}

export async function inspectDataset({ text, seqLen }: Payload<'inspectDataset'>): Promise<DatasetSummary> {
  const current = requireLoaded();
  try {
    const dataset = tokenize(current, text, seqLen);
    let problem: string | null = null;
    try {
      requireUsable(dataset);
    } catch (error) {
      problem = (error as Error).message;
    }
    const { stats } = dataset;
    return {
      format: dataset.format,
      examples: stats.examples,
      tokens: stats.tokens,
      targetTokens: stats.targetTokens,
      issueCount: dataset.issueCount,
      issues: dataset.issues.map((i) => ({ line: i.line, message: i.message })),
      problem,
      preview: previewDataset(dataset, current.tokenizer),
    };
  } catch (error) {
    if (!(error instanceof DatasetError)) throw error;
    return { format: '—', examples: 0, tokens: 0, targetTokens: 0, issueCount: error.issues.length, issues: error.issues.map((i) => ({ line: i.line, message: i.message })), problem: error.message, preview: [] };
  }
}
