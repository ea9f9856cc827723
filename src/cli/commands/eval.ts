// `tabtune eval --model SRC --data FILE [--max-length L] [--json]`: mean next-token loss (nats) and perplexity
// of the model on a text file or a JSONL file (see src/train/evaluate.ts for the formats and the windows).

import { readFile, stat } from 'node:fs/promises';
import { loadChatTemplate } from '../../io/chatTemplate.ts';
import { FileReadError, quoteName } from '../../io/errors.ts';
import { TextFileError } from '../../io/sources/types.ts';
import { decodeUtf8Strict } from '../../io/strictJson.ts';
import { DEFAULT_EVAL_MAX_LENGTH, evaluateTokens, isJsonLines, readEvalDocuments, tokenizeDocuments } from '../../train/evaluate.ts';
import { ADAPTER_OPTIONS, quantOption } from '../adapterOption.ts';
import { withModel, type PreparedSource } from '../modelSource.ts';
import { integerOption, parseOptions, progress, requireOption, UsageError } from '../usage.ts';

/** Evaluation text is read whole; beyond this it is refused rather than exhausting memory. */
const MAX_DATA_BYTES = 512 * 1024 * 1024;

async function readDataFile(path: string): Promise<string> {
  const stats = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') throw new UsageError(`eval: --data ${quoteName(path)}: no such file`);
    throw new FileReadError(path, `cannot read the file (${error.code ?? error.message})`, { field: 'file' });
  });
  if (!stats.isFile()) throw new UsageError(`eval: --data ${quoteName(path)} is not a file`);
  if (stats.size > MAX_DATA_BYTES) throw new TextFileError(path, `is ${stats.size} bytes, over the ${MAX_DATA_BYTES}-byte cap`, { field: 'file size' });
  const bytes = await readFile(path);
  const start = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const text = decodeUtf8Strict(bytes.subarray(start));
  if (text === null) throw new TextFileError(path, 'is not valid UTF-8', { field: 'file' });
  return text;
}

export async function evalCommand(args: string[]) {
  const options = parseOptions('eval', args, {
    ...ADAPTER_OPTIONS, model: { type: 'string' }, data: { type: 'string' }, 'max-length': { type: 'string' } });
  const spec = requireOption('eval', 'model', options.model);
  const dataPath = requireOption('eval', 'data', options.data);
  const requestedLength = options['max-length'] === undefined ? undefined : integerOption('eval', 'max-length', options['max-length'], 1);
  const content = await readDataFile(dataPath); // before the model: a missing file is found at once

  // The documents are read and tokenized before the GPU is taken: a bad line is found at once.
  let ids: number[] = [];
  const prepare = async ({ config, tokenizer, files }: PreparedSource) => {
    if (requestedLength !== undefined && requestedLength > config.maxPositions) {
      throw new UsageError(`eval: --max-length ${requestedLength} is more than the model's context of ${config.maxPositions} positions`);
    }
    // The chat template is only read for files with chat messages.
    const template = isJsonLines(dataPath) && /"messages"\s*:/.test(content) ? await loadChatTemplate(files, tokenizer!) : null;
    ids = tokenizeDocuments(tokenizer!, readEvalDocuments(content, dataPath, template));
    if (ids.length < 2) throw new UsageError(`eval: --data ${quoteName(dataPath)} is ${ids.length} token${ids.length === 1 ? '' : 's'} long; at least 2 are needed`);
  };
  return withModel('eval', spec, { adapter: options.adapter, quant: quantOption('eval', options.quant), tokenizer: true, prepare }, async ({ model, config }) => {
    const maxLength = requestedLength ?? Math.min(config.maxPositions, DEFAULT_EVAL_MAX_LENGTH);
    const result = await evaluateTokens(model, ids, {
      maxLength,
      onProgress: ({ window, windows }) => {
        if (window === windows || window % 10 === 0) progress(`eval: window ${window}/${windows}`);
      },
    });
    const json = { loss: result.loss, perplexity: result.perplexity, tokens: result.tokens };
    const text = `loss ${result.loss.toFixed(4)} nats, perplexity ${result.perplexity.toFixed(3)} over ${result.tokens} predicted tokens (${result.windows} window${result.windows === 1 ? '' : 's'} of at most ${result.maxLength} tokens)`;
    return { json, text };
  });
}
