import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FormatError, quoteName } from '../../src/io/errors.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer, parseTokenizer, TokenIdError, TokenizerError, UnsupportedTokenizerError, type TokenizerInputs } from '../../src/io/tokenizer.ts';

// Fixtures: tests/fixtures/tokenizers/make_tokenizer_fixtures.py (hand-made vocabularies and merges).
const FIXTURES = new URL('../fixtures/tokenizers/', import.meta.url);
const fixtureDir = (name: string) => new URL(`${name}/`, FIXTURES).pathname;
const read = (name: string, file: string) => readFileSync(new URL(`${name}/${file}`, FIXTURES), 'utf8');
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const readJson = (name: string, file: string): Json => JSON.parse(read(name, file));

function byteInputs(mutate?: (tokenizer: Json, config: Json) => void): TokenizerInputs {
  const tokenizer = readJson('byte_bpe', 'tokenizer.json');
  const config = readJson('byte_bpe', 'tokenizer_config.json');
  mutate?.(tokenizer, config);
  return { tokenizerJson: JSON.stringify(tokenizer), tokenizerConfig: JSON.stringify(config), config: read('byte_bpe', 'config.json') };
}

function expectTypedError(run: () => unknown, errorClass: new (...args: never[]) => FormatError, file: string, field: string, says?: RegExp): FormatError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a typed error').toBeInstanceOf(errorClass);
  const error = caught as FormatError;
  expect(error.file).toBe(file);
  expect(error.field).toBe(field);
  expect(error.message.startsWith(`${quoteName(file)}: `)).toBe(true);
  if (says) expect(error.message).toMatch(says);
  return error;
}

describe('byte-level BPE (GPT-2 / Qwen style)', async () => {
  const tokenizer = await loadTokenizer(localDirectory(fixtureDir('byte_bpe')));
  const vocab = readJson('byte_bpe', 'tokenizer.json').model.vocab as Record<string, number>;
  const id = (token: string) => {
    const value = tokenizer.tokenToId(token);
    expect(value, token).not.toBeNull();
    return value as number;
  };

  it('has the vocabulary, added tokens and special tokens of its files', () => {
    expect(tokenizer.modelType).toBe('BPE');
    expect(tokenizer.vocabSize).toBe(256 + 14 + 3);
    expect(id('<|endoftext|>')).toBe(270);
    // bos from config.json's bos_token_id (tokenizer_config has bos_token null), eos from tokenizer_config,
    // eosIds: the tokenizer_config eos first, then config.json's list.
    expect(tokenizer.special.bos).toEqual({ id: 270, text: '<|endoftext|>' });
    expect(tokenizer.special.eos).toEqual({ id: 272, text: '<|im_end|>' });
    expect(tokenizer.special.pad).toEqual({ id: 270, text: '<|endoftext|>' });
    expect(tokenizer.special.unk).toBeNull();
    expect(tokenizer.special.eosIds).toEqual([272, 270]);
    expect(tokenizer.warnings).toEqual([]);
    expect([270, 271, 272].map((i) => tokenizer.isSpecialId(i))).toEqual([true, true, true]);
    expect(tokenizer.isSpecialId(id('hello'))).toBe(false);
  });

  it('applies the merges in rank order (worked out by hand)', () => {
    expect(tokenizer.encode('hello world')).toEqual([vocab.hello, vocab['Ġworld']]);
    expect(tokenizer.encode('hello, world!')).toEqual([vocab.hello, vocab[','], vocab['Ġworld'], vocab['!']]);
    // " the thing": Ġthe, then Ġ t h i n g → Ġt (rank 10) and in → ing; "h" stays alone.
    expect(tokenizer.encode(' the thing')).toEqual([vocab['Ġthe'], vocab['Ġt'], vocab.h, vocab.ing]);
    expect(tokenizer.encode(' hello')).toEqual([vocab['Ġhello']]);
  });

  it('maps non-ASCII text to byte tokens and splits out added tokens', () => {
    // é is C3 A9 → 'Ã' '©' in GPT-2's byte alphabet; 👋 is F0 9F 91 8B.
    expect(tokenizer.encode('héllo').map((i) => tokenizer.idToToken(i))).toEqual(['h', 'Ã', '©', 'll', 'o']);
    expect(tokenizer.encode(' 👋').map((i) => tokenizer.idToToken(i))).toEqual(['Ġ', 'ð', 'Ł', 'ĳ', 'ĭ']);
    expect(tokenizer.encode('<|im_start|>user\nhello<|im_end|>')).toEqual([271, vocab.u, vocab.s, vocab.e, vocab.r, vocab['Ċ'], vocab.hello, 272]);
  });

  it('decodes losslessly, and skips special tokens when asked', () => {
    const texts = ['hello world', 'héllo 👋 — ünïcödé', 'tabs\tand\r\nnewlines\n\n', '  leading and trailing  ', 'a'.repeat(1000), '\u0000\u0001 control', ''];
    for (const text of texts) expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    const ids = tokenizer.encode('<|im_start|>user\nhello<|im_end|>');
    expect(tokenizer.decode(ids)).toBe('<|im_start|>user\nhello<|im_end|>');
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('user\nhello');
    expect(tokenizer.decode(new Int32Array(tokenizer.encode('hello')))).toBe('hello');
  });

  it('reads legacy "a b" merges exactly as pairs', () => {
    const legacy = parseTokenizer(
      byteInputs((t) => {
        t.model.merges = t.model.merges.map(([a, b]: [string, string]) => `${a} ${b}`);
      }),
    );
    for (const text of ['hello world', ' the thing', 'héllo 👋']) expect(legacy.encode(text)).toEqual(tokenizer.encode(text));
  });

  it('refuses ids that name no token when decoding', () => {
    for (const bad of [-1, 273, 1.5, Number.NaN, 2 ** 40]) {
      expectTypedError(() => tokenizer.decode([vocab.hello, bad]), TokenIdError, 'tokenizer.json', 'ids', /position 1/);
    }
    expect(tokenizer.idToToken(99999)).toBeNull();
    expect(tokenizer.tokenToId('no such token')).toBeNull();
  });
});

describe('SentencePiece-style BPE (Llama 2 / TinyLlama style)', async () => {
  const tokenizer = await loadTokenizer(localDirectory(fixtureDir('llama')));
  const vocab = readJson('llama', 'tokenizer.json').model.vocab as Record<string, number>;

  it('resolves AddedToken objects, eos lists from generation_config.json, and ignores out-of-vocabulary config ids with a warning', () => {
    expect(tokenizer.special.bos).toEqual({ id: 1, text: '<s>' });
    expect(tokenizer.special.eos).toEqual({ id: 2, text: '</s>' });
    expect(tokenizer.special.unk).toEqual({ id: 0, text: '<unk>' });
    expect(tokenizer.special.pad).toBeNull();
    expect(tokenizer.special.eosIds).toEqual([2, tokenizer.tokenToId('<|eot|>')]);
    expect(tokenizer.warnings).toEqual(['config.json: pad_token_id -1 is not a token of tokenizer.json (vocabulary size 309); ignored']);
  });

  it('prepends ▁, merges, adds <s> through the post-processor, and falls back to bytes', () => {
    expect(tokenizer.encode('hello world')).toEqual([1, vocab['▁hello'], vocab['▁world']]);
    expect(tokenizer.encode('hello world', { addSpecialTokens: false })).toEqual([vocab['▁hello'], vocab['▁world']]);
    // é is not a piece: byte_fallback gives <0xC3> <0xA9>; "llo" merges to l + lo (rank of "l o").
    expect(tokenizer.encode('héllo').map((i) => tokenizer.idToToken(i))).toEqual(['<s>', '▁h', '<0xC3>', '<0xA9>', 'l', 'lo']);
  });

  it('decodes through Replace, ByteFallback, Fuse and Strip', () => {
    expect(tokenizer.decode(tokenizer.encode('hello world'))).toBe('<s> hello world');
    for (const text of ['hello world', 'héllo 👋', 'Hi, World!']) {
      expect(tokenizer.decode(tokenizer.encode(text), { skipSpecialTokens: true })).toBe(text);
    }
  });
});

describe('other tokenizer models', () => {
  it('WordLevel maps whole words and uses model.unk_token', () => {
    const tokenizer = parseTokenizer({
      tokenizerJson: JSON.stringify({
        model: { type: 'WordLevel', vocab: { '[UNK]': 0, hello: 1, world: 2 }, unk_token: '[UNK]' },
        pre_tokenizer: { type: 'WhitespaceSplit' },
      }),
    });
    expect(tokenizer.encode('hello there world')).toEqual([1, 0, 2]);
    expect(tokenizer.decode([1, 0, 2])).toBe('hello [UNK] world');
    expect(tokenizer.special.unk).toEqual({ id: 0, text: '[UNK]' });
  });

  it('WordPiece splits words into ## pieces', () => {
    const tokenizer = parseTokenizer({
      tokenizerJson: JSON.stringify({
        model: { type: 'WordPiece', vocab: { '[UNK]': 0, un: 1, '##aff': 2, '##able': 3, the: 4 }, unk_token: '[UNK]', continuing_subword_prefix: '##' },
        pre_tokenizer: { type: 'BertPreTokenizer' },
        decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
      }),
    });
    expect(tokenizer.encode('the unaffable')).toEqual([4, 1, 2, 3]);
    expect(tokenizer.decode([4, 1, 2, 3])).toBe('the unaffable');
  });

  it('Unigram picks the best segmentation', () => {
    const tokenizer = parseTokenizer({
      tokenizerJson: JSON.stringify({
        model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0], ['▁', -2], ['▁ab', -1], ['a', -3], ['b', -3], ['c', -3], ['▁abc', -10]] },
        pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always' },
        decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always' },
      }),
    });
    // ▁ab + c (−1 −3 = −4) beats ▁abc (−10) and ▁ + a + b + c (−11).
    expect(tokenizer.encode('abc')).toEqual([2, 5]);
    expect(tokenizer.decode([2, 5])).toBe('abc');
  });
});

describe('bad tokenizer files get typed errors naming file and field', () => {
  it('invalid JSON, invalid UTF-8, a top level that is not an object', () => {
    expectTypedError(() => parseTokenizer({ tokenizerJson: '{"model": ' }), TokenizerError, 'tokenizer.json', 'file', /not valid JSON/);
    expectTypedError(() => parseTokenizer({ tokenizerJson: new Uint8Array([0x7b, 0xff, 0x7d]) }), TokenizerError, 'tokenizer.json', 'file', /UTF-8/);
    expectTypedError(() => parseTokenizer({ tokenizerJson: '[1, 2]' }), TokenizerError, 'tokenizer.json', 'file', /an array, not a JSON object/);
    expectTypedError(() => parseTokenizer({ ...byteInputs(), tokenizerConfig: '{"eos_token": }' }), TokenizerError, 'tokenizer_config.json', 'file', /not valid JSON/);
    expectTypedError(() => parseTokenizer({ ...byteInputs(), config: 'nope' }), TokenizerError, 'config.json', 'file', /not valid JSON/);
  });

  it('an unknown or missing model type, and unknown components, even inside a Sequence', () => {
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.model.type = 'SentencePieceMagic'))), UnsupportedTokenizerError, 'tokenizer.json', 'model.type', /"SentencePieceMagic"; supported tokenizer models: BPE, WordPiece, Unigram, WordLevel/);
    expectTypedError(() => parseTokenizer(byteInputs((t) => delete t.model.type)), UnsupportedTokenizerError, 'tokenizer.json', 'model.type', /missing/);
    expectTypedError(() => parseTokenizer(byteInputs((t) => delete t.model)), TokenizerError, 'tokenizer.json', 'model', /missing/);
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.normalizer = { type: 'Shout' }))), UnsupportedTokenizerError, 'tokenizer.json', 'normalizer.type', /"Shout"/);
    expectTypedError(
      () => parseTokenizer(byteInputs((t) => (t.decoder = { type: 'Sequence', decoders: [{ type: 'ByteLevel' }, { type: 'Mystery' }] }))),
      UnsupportedTokenizerError,
      'tokenizer.json',
      'decoder.decoders[1].type',
    );
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.pre_tokenizer = 'ByteLevel'))), TokenizerError, 'tokenizer.json', 'pre_tokenizer', /not an object/);
  });

  it('a merge that refers to unknown tokens (a part, or the merged result), or is malformed', () => {
    expectTypedError(
      () => parseTokenizer(byteInputs((t) => t.model.merges.push(['x', 'q']))),
      TokenizerError,
      'tokenizer.json',
      'model.merges[14]',
      /\("x" \+ "q"\) refers to token "xq", which is not in model.vocab/,
    );
    expectTypedError(() => parseTokenizer(byteInputs((t) => t.model.merges.unshift(['zz', 'a']))), TokenizerError, 'tokenizer.json', 'model.merges[0]', /token "zz"/);
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.model.merges[3] = 'a b c'))), TokenizerError, 'tokenizer.json', 'model.merges[3]', /not two tokens/);
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.model.merges[3] = ['a']))), TokenizerError, 'tokenizer.json', 'model.merges[3]', /not a pair/);
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.model.merges = 'h e'))), TokenizerError, 'tokenizer.json', 'model.merges');
  });

  it('vocabulary ids that are not unique non-negative integers, and bad added tokens', () => {
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.model.vocab.hello = 0))), TokenizerError, 'tokenizer.json', 'model.vocab', /id 0 to both "!" and "hello"/);
    for (const bad of [-1, 1.5, '5', null, 2 ** 30]) {
      expectTypedError(() => parseTokenizer(byteInputs((t) => (t.model.vocab.hello = bad))), TokenizerError, 'tokenizer.json', 'model.vocab', /token "hello"/);
    }
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.model.vocab = {}))), TokenizerError, 'tokenizer.json', 'model.vocab', /empty/);
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.added_tokens[0].id = 'x'))), TokenizerError, 'tokenizer.json', 'added_tokens[0].id');
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.added_tokens[1].content = ''))), TokenizerError, 'tokenizer.json', 'added_tokens[1].content');
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.added_tokens[2].content = '<|endoftext|>'))), TokenizerError, 'tokenizer.json', 'added_tokens[2].content', /already added as id 270/);
    expectTypedError(() => parseTokenizer(byteInputs((t) => (t.added_tokens = {}))), TokenizerError, 'tokenizer.json', 'added_tokens');
  });

  it('special tokens that are not tokens, and mistyped config ids', () => {
    expectTypedError(() => parseTokenizer(byteInputs((_t, c) => (c.eos_token = '<|nope|>'))), TokenizerError, 'tokenizer_config.json', 'eos_token', /"<\|nope\|>" is not a token/);
    expectTypedError(() => parseTokenizer(byteInputs((_t, c) => (c.bos_token = 7))), TokenizerError, 'tokenizer_config.json', 'bos_token');
    expectTypedError(() => parseTokenizer(byteInputs((_t, c) => (c.clean_up_tokenization_spaces = 'yes'))), TokenizerError, 'tokenizer_config.json', 'clean_up_tokenization_spaces');
    expectTypedError(() => parseTokenizer({ ...byteInputs(), config: '{"eos_token_id": "272"}' }), TokenizerError, 'config.json', 'eos_token_id', /not a token id/);
    expectTypedError(() => parseTokenizer({ ...byteInputs(), generationConfig: '{"eos_token_id": [272, 1.5]}' }), TokenizerError, 'generation_config.json', 'eos_token_id');
  });

  it('an unk_token that is not in the vocabulary fails when it is needed, not silently', () => {
    const tokenizer = parseTokenizer(
      byteInputs((t) => {
        delete t.model.vocab.z; // no merge uses "z"
        t.model.unk_token = '<nope>';
      }),
    );
    expect(tokenizer.encode('hello')).toEqual([tokenizer.tokenToId('hello')]);
    expectTypedError(() => tokenizer.encode('zoo'), TokenizerError, 'tokenizer.json', 'model.unk_token', /"<nope>"/);
  });

  it('`__proto__` and `constructor` are plain tokens, and nothing is polluted', () => {
    const tokenizer = parseTokenizer(
      byteInputs((t) => {
        t.model.vocab.constructor = 273;
      }),
    );
    const viaJson = parseTokenizer({
      tokenizerJson: '{"model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "__proto__": 1, "constructor": 2}}, "pre_tokenizer": {"type": "WhitespaceSplit"}}',
    });
    expect(tokenizer.tokenToId('constructor')).toBe(273);
    expect(viaJson.encode('__proto__ constructor toString')).toEqual([1, 2, 0]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  });

  it('byte mutations of tokenizer.json give a tokenizer or a TokenizerError, never another crash', () => {
    const text = read('byte_bpe', 'tokenizer.json');
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const alphabet = '{}[]":,0123456789-.eE tnulfrsaxyz\\';
    let built = 0;
    let refused = 0;
    for (let round = 0; round < 300; round++) {
      const chars = [...text];
      for (let k = 0; k < 1 + Math.floor(random() * 3); k++) chars[Math.floor(random() * chars.length)] = alphabet[Math.floor(random() * alphabet.length)];
      try {
        const tokenizer = parseTokenizer({ tokenizerJson: chars.join('') });
        tokenizer.decode(tokenizer.encode('hello world, héllo 👋'));
        built++;
      } catch (error) {
        expect(error, String(error)).toBeInstanceOf(TokenizerError);
        refused++;
      }
    }
    expect(built + refused).toBe(300);
    expect(refused).toBeGreaterThan(0);
  });
});
