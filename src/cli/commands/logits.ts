// `tabtune logits --model SRC --tokens 1,2,3 [--json]`: the model's logits for a sequence of token ids,
// one row of V values per input position (what the golden tests compare against the reference).

import type { ModelConfig } from '../../models/config.ts';
import { tokenTensor } from '../../models/model.ts';
import { ADAPTER_OPTIONS, quantOption } from '../adapterOption.ts';
import { withModel } from '../modelSource.ts';
import { parseOptions, requireOption, UsageError } from '../usage.ts';

/** "1,2,3" → [1, 2, 3]; anything but comma-separated non-negative integers is a UsageError naming the item. */
export function parseTokenList(command: string, text: string): number[] {
  const items = text.split(',').map((item) => item.trim());
  return items.map((item, index) => {
    if (!/^\d+$/.test(item) || !Number.isSafeInteger(Number(item))) {
      throw new UsageError(`${command}: --tokens must be comma-separated token ids (non-negative integers); item ${index + 1} is '${item}'`);
    }
    return Number(item);
  });
}

export async function logitsCommand(args: string[]) {
  const options = parseOptions('logits', args, {
    ...ADAPTER_OPTIONS, model: { type: 'string' }, tokens: { type: 'string' } });
  const spec = requireOption('logits', 'model', options.model);
  const ids = parseTokenList('logits', requireOption('logits', 'tokens', options.tokens));
  // Checked before the GPU is used: ids outside the vocabulary or past the context are the user's mistake.
  const prepare = ({ config }: { config: ModelConfig }) => {
    const V = config.vocabSize;
    const bad = ids.findIndex((id) => id >= V);
    if (bad !== -1) throw new UsageError(`logits: token id ${ids[bad]} (item ${bad + 1} of --tokens) is outside the model's vocabulary of ${V} (ids 0..${V - 1})`);
    if (ids.length > config.maxPositions) {
      throw new UsageError(`logits: ${ids.length} tokens are more than the model's context of ${config.maxPositions} positions`);
    }
  };
  return withModel('logits', spec, { adapter: options.adapter, quant: quantOption('logits', options.quant), tokenizer: false, prepare }, async ({ engine, model, config }) => {
    const V = config.vocabSize;
    const values = await engine.scope(() => engine.noGrad(() => model.forward(tokenTensor(engine, [ids], V))).read());
    const logits = ids.map((_, t) => Array.from(values.subarray(t * V, (t + 1) * V)));
    const text = logits.map((row, t) => `${ids[t]}: argmax ${argmaxOf(row)} (${row[argmaxOf(row)].toFixed(4)})`).join('\n');
    return { json: { logits }, text };
  });
}

function argmaxOf(row: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
