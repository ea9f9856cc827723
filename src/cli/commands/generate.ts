// `tabtune generate --model SRC --prompt TEXT --max-new-tokens N [--temperature 0] [--top-k K] [--top-p P]
//  [--repetition-penalty R] [--seed S] [--json]`: continue a prompt. Greedy by default (temperature 0). Without
// --json the text streams to stdout as it is generated; with --json one object {text, tokens} is printed at
// the end (tokens: the new token ids, without the prompt and without the stop token). Ctrl-C stops early.

import { generate } from '../../train/generate.ts';
import { checkSamplingOptions, randomSeed } from '../../train/sampling.ts';
import { ADAPTER_OPTIONS, quantOption } from '../adapterOption.ts';
import { withModel, type PreparedSource } from '../modelSource.ts';
import { integerOption, parseOptions, progress, requireOption, UsageError } from '../usage.ts';

const DEFAULT_MAX_NEW_TOKENS = 64;

function numberOption(name: string, value: string | undefined, valid: (n: number) => boolean, rule: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(parsed) || !valid(parsed)) throw new UsageError(`generate: --${name} must be ${rule}, got '${value}'`);
  return parsed;
}

export async function generateCommand(args: string[]) {
  const options = parseOptions('generate', args, {
    ...ADAPTER_OPTIONS,
    model: { type: 'string' },
    prompt: { type: 'string' },
    'max-new-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    'top-p': { type: 'string' },
    'repetition-penalty': { type: 'string' },
    seed: { type: 'string' },
  });
  const spec = requireOption('generate', 'model', options.model);
  const prompt = options.prompt;
  if (prompt === undefined) throw new UsageError('generate: --prompt is required');
  const maxNewTokens = integerOption('generate', 'max-new-tokens', options['max-new-tokens'], DEFAULT_MAX_NEW_TOKENS);
  const temperature = numberOption('temperature', options.temperature, (n) => n >= 0, 'a number ≥ 0 (0: greedy)') ?? 0;
  const topK = numberOption('top-k', options['top-k'], (n) => Number.isSafeInteger(n) && n >= 0, 'an integer ≥ 0 (0: off)');
  const topP = numberOption('top-p', options['top-p'], (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  const repetitionPenalty = numberOption('repetition-penalty', options['repetition-penalty'], (n) => n > 0, 'a number > 0 (1: off)');
  const seed = numberOption('seed', options.seed, (n) => Number.isSafeInteger(n) && n >= 0, 'an integer ≥ 0') ?? randomSeed();
  const sampling = checkSamplingOptions({ temperature, topK, topP, repetitionPenalty });
  if (temperature === 0 && (topK !== undefined || topP !== undefined)) {
    progress('note: --top-k and --top-p have no effect with greedy decoding (--temperature 0)');
  }
  const json = args.includes('--json');

  // The prompt is tokenized and checked before the GPU is taken.
  let ids: number[] = [];
  let stopTokens: number[] = [];
  const prepare = ({ config, tokenizer }: PreparedSource) => {
    ids = tokenizer!.encode(prompt);
    if (ids.length === 0) {
      const bos = tokenizer!.special.bos?.id ?? config.bosTokenId;
      if (bos === null) throw new UsageError('generate: the prompt is empty and the model has no BOS token to start from');
      ids = [bos];
    }
    if (ids.length > config.maxPositions) {
      throw new UsageError(`generate: the prompt is ${ids.length} tokens, more than the model's context of ${config.maxPositions} positions`);
    }
    stopTokens = [...new Set([...tokenizer!.special.eosIds, ...config.eosTokenIds])].filter((id) => id < config.vocabSize);
  };
  return withModel('generate', spec, { adapter: options.adapter, quant: quantOption('generate', options.quant), tokenizer: true, prepare }, async ({ model, tokenizer }) => {
    const tok = tokenizer!;
    const controller = new AbortController();
    const onInterrupt = () => controller.abort();
    process.once('SIGINT', onInterrupt);
    try {
      const result = await generate(model, ids, {
        ...sampling,
        maxNewTokens,
        stopTokens,
        seed,
        signal: controller.signal,
        decoder: tok,
        vocabLimit: tok.vocabSize,
        onStep: json ? undefined : (step) => void (step.text && process.stdout.write(step.text)),
      });
      if (!json && result.finalText) process.stdout.write(result.finalText);
      const why = { eos: 'end of sequence', maxNewTokens: 'max new tokens', context: "the model's context is full", aborted: 'interrupted' }[result.stopReason];
      progress(`${!json && process.stderr.isTTY ? '\n' : ''}generated ${result.tokens.length} tokens after a prompt of ${result.promptTokens} (stopped: ${why})${temperature > 0 ? `, seed ${seed}` : ''}`);
      return { json: { text: result.text, tokens: result.tokens }, text: '' };
    } finally {
      process.off('SIGINT', onInterrupt);
    }
  });
}
