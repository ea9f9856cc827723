// The tokenizers of the model fixtures (tests/fixtures/models/*/tokenizer.json + tokenizer_config.json, written by
// make_tiny_models.py): each loads from its folder, round-trips text, puts its special tokens at the ids
// config.json names, and fills the embedding exactly; `tabtune generate` runs on every architecture from the
// folder alone, and its greedy tokens are the argmax of `tabtune logits` on the same ids.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadChatTemplate } from '../../src/io/chatTemplate.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer, type Tokenizer } from '../../src/io/tokenizer.ts';
import { runCliAsync, type CliResult } from '../cli/run.ts';
import { argmax, FIXTURES, MODEL_FIXTURES, type ModelFixture } from './helpers.ts';

const MODELS = 'tests/fixtures/models';
const folder = (fixture: ModelFixture) => fileURLToPath(new URL(`${fixture}/`, FIXTURES));
const configOf = (fixture: ModelFixture) => JSON.parse(readFileSync(new URL(`${fixture}/config.json`, FIXTURES), 'utf8'));

/** Text inside each vocabulary's alphabet (Llama's has no newline, Llama 3's no capitals or digits). */
const SAMPLES: Record<ModelFixture, string> = {
  gpt2: 'The cat sat on the mat, and it is 42 in the hat!\nYes: "fine" (really).',
  'gpt2-noprefix-sharded': "Where is the thing? It's in the attic - or the shed.",
  llama: "The cat sat on the mat, and it's 42 in the hat! Yes.",
  qwen2: 'The cat sat on the mat, and it is 42 in the hat!\nYes.',
  llama3: "the cat sat on the mat, and it's in the hat!\nyes.",
};

/** What each family's tokenizer must say: special tokens, and whether encoding adds a BOS. */
const SPECIAL: Record<ModelFixture, { bos: string | null; eos: string; eosIds: number[]; addsBos: boolean }> = {
  gpt2: { bos: '<|endoftext|>', eos: '<|endoftext|>', eosIds: [96], addsBos: false },
  'gpt2-noprefix-sharded': { bos: '<|endoftext|>', eos: '<|endoftext|>', eosIds: [96], addsBos: false },
  llama: { bos: '<s>', eos: '</s>', eosIds: [2], addsBos: true },
  qwen2: { bos: '<|im_start|>', eos: '<|im_end|>', eosIds: [2, 3], addsBos: false },
  llama3: { bos: '<|begin_of_text|>', eos: '<|end_of_text|>', eosIds: [2], addsBos: true },
};

const PROMPT: Record<ModelFixture, string> = {
  gpt2: 'The cat',
  'gpt2-noprefix-sharded': 'Where is',
  llama: 'The cat',
  qwen2: 'The cat',
  llama3: 'the cat',
};

describe.each(MODEL_FIXTURES)('%s tokenizer', (fixture) => {
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    tokenizer = await loadTokenizer(localDirectory(folder(fixture)));
  });

  it('loads with its special tokens at the ids config.json names', () => {
    const config = configOf(fixture);
    const expected = SPECIAL[fixture];
    expect(tokenizer.warnings).toEqual([]);
    expect(tokenizer.special.bos?.text ?? null).toBe(expected.bos);
    expect(tokenizer.special.bos?.id).toBe(config.bos_token_id);
    expect(tokenizer.special.eos?.text).toBe(expected.eos);
    expect(tokenizer.special.eosIds).toEqual(expected.eosIds);
    expect([config.eos_token_id].flat()).toEqual(expect.arrayContaining(expected.eosIds));
  });

  it('fills the embedding: every id below vocab_size is a token', () => {
    const { vocab_size } = configOf(fixture);
    expect(tokenizer.vocabSize).toBe(vocab_size);
    const tokens = new Set<string>();
    for (let id = 0; id < vocab_size; id++) {
      const token = tokenizer.idToToken(id);
      expect(token, `id ${id}`).not.toBeNull();
      expect(tokenizer.tokenToId(token!)).toBe(id);
      tokens.add(token!);
    }
    expect(tokens.size).toBe(vocab_size);
  });

  it('round-trips text, with merges applied', () => {
    const text = SAMPLES[fixture];
    const ids = tokenizer.encode(text);
    const bos = tokenizer.special.bos!.id;
    expect(ids[0] === bos).toBe(SPECIAL[fixture].addsBos);
    expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < configOf(fixture).vocab_size)).toBe(true);
    expect(ids.length).toBeLessThan(text.length); // BPE merged something
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe(text);
    const plain = tokenizer.encode(text, { addSpecialTokens: false });
    expect(plain).toEqual(SPECIAL[fixture].addsBos ? ids.slice(1) : ids);
    expect(tokenizer.decode(plain)).toBe(text);
    // Special tokens in text are recognised whole.
    const eos = tokenizer.special.eos!;
    expect(tokenizer.encode(`the${eos.text}`, { addSpecialTokens: false }).at(-1)).toBe(eos.id);
  });
});

describe('the Qwen2 fixture chat template', () => {
  it('renders ChatML and encodes the rendering with the chat tokens whole', async () => {
    const files = localDirectory(folder('qwen2'));
    const tokenizer = await loadTokenizer(files);
    const chat = await loadChatTemplate(files, tokenizer);
    expect(chat).not.toBeNull();
    const text = chat!.render([{ role: 'user', content: 'Hi there!' }], { addGenerationPrompt: true });
    expect(text).toBe('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n');
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    expect(ids.filter((id) => id === tokenizer.tokenToId('<|im_start|>'))).toHaveLength(3);
    expect(ids.filter((id) => id === tokenizer.tokenToId('<|im_end|>'))).toHaveLength(2);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  it('is the only fixture with a chat template', async () => {
    for (const fixture of MODEL_FIXTURES.filter((f) => f !== 'qwen2')) {
      const files = localDirectory(folder(fixture));
      expect(await loadChatTemplate(files, await loadTokenizer(files)), fixture).toBeNull();
    }
  });
});

describe('tabtune generate on each fixture folder', () => {
  const STEPS = 3;
  const runs = new Map<ModelFixture, Promise<{ generated: CliResult; logits: CliResult | null; prompt: number[] }>>();

  beforeAll(async () => {
    for (const fixture of MODEL_FIXTURES) {
      runs.set(
        fixture,
        (async () => {
          const prompt = (await loadTokenizer(localDirectory(folder(fixture)))).encode(PROMPT[fixture]);
          const generated = await runCliAsync(['generate', '--model', `${MODELS}/${fixture}`, '--prompt', PROMPT[fixture], '--max-new-tokens', String(STEPS), '--json']);
          if (generated.status !== 0) return { generated, logits: null, prompt };
          const { tokens } = JSON.parse(generated.stdout) as { tokens: number[] };
          // The logits of the prompt and all but the last new token: row T − 1 + i must pick new token i.
          const ids = [...prompt, ...tokens.slice(0, -1)];
          const logits = await runCliAsync(['logits', '--model', `${MODELS}/${fixture}`, '--tokens', ids.join(','), '--json']);
          return { generated, logits, prompt };
        })(),
      );
    }
  });

  it.each(MODEL_FIXTURES)('%s: greedy tokens decode to the text and are the argmax of the logits', async (fixture) => {
    const { generated, logits, prompt } = await runs.get(fixture)!;
    expect(generated.status, generated.stderr).toBe(0);
    expect(generated.stdout.trim().split('\n')).toHaveLength(1);
    const result = JSON.parse(generated.stdout) as { text: string; tokens: number[] };
    const tokenizer = await loadTokenizer(localDirectory(folder(fixture)));
    const config = configOf(fixture);
    expect(result.tokens.length).toBeGreaterThan(0);
    expect(result.tokens.length).toBeLessThanOrEqual(STEPS);
    if (result.tokens.length < STEPS) expect(generated.stderr).toMatch(/stopped: end of sequence/);
    expect(result.tokens.every((id) => Number.isInteger(id) && id >= 0 && id < config.vocab_size)).toBe(true);
    expect(result.text).toBe(tokenizer.decode(result.tokens));
    expect(generated.stderr).toMatch(new RegExp(`after a prompt of ${prompt.length}\\b`));

    expect(logits!.status, logits!.stderr).toBe(0);
    const rows = (JSON.parse(logits!.stdout) as { logits: number[][] }).logits;
    expect(rows).toHaveLength(prompt.length + result.tokens.length - 1);
    result.tokens.forEach((token, i) => expect(argmax(rows[prompt.length - 1 + i]), `new token ${i}`).toBe(token));
  });
});

describe('characters a small byte-level vocabulary cannot spell', () => {
  it('are a TokenizerError naming the character, not silently dropped', async () => {
    const { loadTokenizer } = await import('../../src/io/tokenizer.ts');
    const { localDirectory } = await import('../../src/io/sources/localDirectory.ts');
    const { TokenizerError } = await import('../../src/io/tokenizer.ts');
    for (const name of ['gpt2', 'qwen2']) {
      const tokenizer = await loadTokenizer(localDirectory(`tests/fixtures/models/${name}`));
      expect(() => tokenizer.encode('a@b')).toThrow(TokenizerError);
      expect(() => tokenizer.encode('a@b')).toThrow(/cannot encode "@" at character 1/);
    }
  });
});
