// Tokenizers from a model's tokenizer.json (+ tokenizer_config.json, config.json, generation_config.json), run by
// @huggingface/tokenizers (FORMATS.md §6). That library trusts its input: a merge naming an unknown token, a
// missing field or an unknown component type makes it crash later or silently drop text. So the JSON is checked
// here first, the way the reference Rust `tokenizers` crate checks it when it builds a tokenizer (BPE merges whose
// parts or result are not in the vocabulary are refused: `MergeTokenOutOfVocabulary`), and only a cleaned copy
// is handed to the library. Every problem is a TokenizerError naming the file and the field.
//
// Special tokens: bos/eos/pad/unk come from tokenizer_config.json (strings or {content} objects, resolved to ids),
// then from generation_config.json and config.json (`*_token_id`, eos as a number or a list). `eosIds` is the
// union of all eos ids (Llama 3 stops on several), with the tokenizer_config eos first.

import { Tokenizer as LibraryTokenizer } from '@huggingface/tokenizers';
import { FormatError, quoteName } from './errors.ts';
import { decodeUtf8Strict } from './strictJson.ts';
import { textIfPresent, type ModelFiles } from './sources/types.ts';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
export const MODEL_CONFIG_FILE = 'config.json';
export const GENERATION_CONFIG_FILE = 'generation_config.json';

/** Token ids above this are refused (the largest real vocabularies have ~260k entries). */
export const MAX_TOKEN_ID = 2 ** 24 - 1;

/** A tokenizer file that is malformed or inconsistent; names the file and the field. */
export class TokenizerError extends FormatError {}

/** A tokenizer model type or component type (normalizer, pre_tokenizer, post_processor, decoder) that is not supported. */
export class UnsupportedTokenizerError extends TokenizerError {}

/** Ids given to decode that are not integers naming a token of the vocabulary. */
export class TokenIdError extends TokenizerError {}

export type TokenizerModelType = 'BPE' | 'WordPiece' | 'Unigram' | 'WordLevel';

const MODEL_TYPES: readonly TokenizerModelType[] = ['BPE', 'WordPiece', 'Unigram', 'WordLevel'];

/** Component types the library implements, and the key under which a `Sequence` of that kind lists its parts. */
const COMPONENTS = {
  normalizer: {
    sequenceKey: 'normalizers',
    types: ['BertNormalizer', 'Precompiled', 'Sequence', 'Replace', 'NFC', 'NFD', 'NFKC', 'NFKD', 'Strip', 'StripAccents', 'Lowercase', 'Prepend'],
  },
  pre_tokenizer: {
    sequenceKey: 'pretokenizers',
    types: ['BertPreTokenizer', 'Sequence', 'Whitespace', 'WhitespaceSplit', 'Metaspace', 'ByteLevel', 'Split', 'Punctuation', 'Digits', 'Replace', 'FixedLength'],
  },
  post_processor: {
    sequenceKey: 'processors',
    types: ['TemplateProcessing', 'ByteLevel', 'BertProcessing', 'RobertaProcessing', 'Sequence'],
  },
  decoder: {
    sequenceKey: 'decoders',
    types: ['ByteLevel', 'WordPiece', 'Metaspace', 'BPEDecoder', 'CTC', 'Sequence', 'Replace', 'Fuse', 'Strip', 'ByteFallback'],
  },
} as const;

type ComponentKind = keyof typeof COMPONENTS;

/** The contents of a model's tokenizer files; all but tokenizer.json are optional. */
export interface TokenizerInputs {
  tokenizerJson: string | Uint8Array;
  tokenizerConfig?: string | Uint8Array | null;
  config?: string | Uint8Array | null;
  generationConfig?: string | Uint8Array | null;
}

export interface SpecialToken {
  readonly id: number;
  readonly text: string;
}

export interface SpecialTokens {
  readonly bos: SpecialToken | null;
  readonly eos: SpecialToken | null;
  readonly pad: SpecialToken | null;
  readonly unk: SpecialToken | null;
  /** Every id that ends generation: the tokenizer_config eos first, then generation_config's, then config.json's. */
  readonly eosIds: readonly number[];
}

export interface EncodeOptions {
  /** Let the tokenizer's post-processor add its special tokens (e.g. Llama's BOS). Default true; use false for rendered chat templates, which already contain them. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

type JsonRecord = Record<string, unknown>;

function isRecord(value: unknown): value is JsonRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${quoteName(value)}`;
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

function isTokenId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= MAX_TOKEN_ID;
}

/** Parse a JSON file whose top level must be an object. */
export function parseJsonObject(input: string | Uint8Array, file: string): JsonRecord {
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    const decoded = decodeUtf8Strict(input);
    if (decoded === null) throw new TokenizerError(file, 'is not valid UTF-8', { field: 'file' });
    text = decoded;
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TokenizerError(file, `is not valid JSON (${(error as Error).message})`, { field: 'file' }, { cause: error });
  }
  if (!isRecord(value)) throw new TokenizerError(file, `is ${describe(value)}, not a JSON object`, { field: 'file' });
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// tokenizer.json checks

function fail(field: string, detail: string): never {
  throw new TokenizerError(TOKENIZER_FILE, detail, { field });
}

/** A `{token: id}` vocabulary: ids are unique integers in [0, MAX_TOKEN_ID]. */
function checkVocabObject(vocab: unknown, field: string): { tokens: Map<string, number>; maxId: number } {
  if (!isRecord(vocab)) fail(field, `${field} is ${describe(vocab)}, not an object of token → id`);
  const tokens = new Map<string, number>();
  const byId = new Map<number, string>();
  let maxId = -1;
  for (const [token, id] of Object.entries(vocab)) {
    if (!isTokenId(id)) fail(field, `${field} gives token ${quoteName(token)} the id ${describe(id)}, not an integer in [0, ${MAX_TOKEN_ID}]`);
    const other = byId.get(id);
    if (other !== undefined) fail(field, `${field} gives id ${id} to both ${quoteName(other)} and ${quoteName(token)}`);
    byId.set(id, token);
    tokens.set(token, id);
    if (id > maxId) maxId = id;
  }
  if (tokens.size === 0) fail(field, `${field} is empty`);
  return { tokens, maxId };
}

function optionalString(model: JsonRecord, key: string): string | null {
  const value = model[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') fail(`model.${key}`, `model.${key} is ${describe(value)}, not a string`);
  return value;
}

/** BPE merges as `[a, b]` pairs; each part and the merged token must be in the vocabulary (as the Rust crate requires). */
function checkMerges(model: JsonRecord, vocab: Map<string, number>): [string, string][] {
  const merges = model.merges ?? [];
  if (!Array.isArray(merges)) fail('model.merges', `model.merges is ${describe(merges)}, not an array`);
  const prefixLength = (optionalString(model, 'continuing_subword_prefix') ?? '').length;
  const pairs: [string, string][] = new Array(merges.length);
  for (let i = 0; i < merges.length; i++) {
    const merge: unknown = merges[i];
    const field = `model.merges[${i}]`;
    let pair: [string, string];
    if (typeof merge === 'string') {
      const parts = merge.split(' ');
      if (parts.length !== 2) fail(field, `${field} is ${quoteName(merge)}, not two tokens separated by one space`);
      pair = [parts[0], parts[1]];
    } else if (Array.isArray(merge) && merge.length === 2 && typeof merge[0] === 'string' && typeof merge[1] === 'string') {
      pair = [merge[0], merge[1]];
    } else {
      fail(field, `${field} is ${describe(merge)}, not a pair of tokens`);
    }
    const merged = pair[0] + pair[1].slice(prefixLength);
    for (const token of [pair[0], pair[1], merged]) {
      if (!vocab.has(token)) {
        fail(field, `${field} (${quoteName(pair[0])} + ${quoteName(pair[1])}) refers to token ${quoteName(token)}, which is not in model.vocab`);
      }
    }
    pairs[i] = pair;
  }
  return pairs;
}

interface CheckedModel {
  type: TokenizerModelType;
  /** The model section to hand to the library. */
  model: JsonRecord;
  /** Highest id in the model's vocabulary. */
  maxId: number;
  unkToken: string | null;
}

function checkModel(root: JsonRecord): CheckedModel {
  const model = root.model;
  if (!isRecord(model)) fail('model', `model is ${model === undefined ? 'missing' : describe(model)}, not an object`);
  const type = model.type;
  if (typeof type !== 'string' || !(MODEL_TYPES as readonly string[]).includes(type)) {
    const shown = type === undefined ? 'missing' : typeof type === 'string' ? quoteName(type) : describe(type);
    throw new UnsupportedTokenizerError(TOKENIZER_FILE, `model.type is ${shown}; supported tokenizer models: ${MODEL_TYPES.join(', ')}`, {
      field: 'model.type',
    });
  }
  switch (type as TokenizerModelType) {
    case 'BPE': {
      const vocab = checkVocabObject(model.vocab, 'model.vocab');
      const merges = checkMerges(model, vocab.tokens);
      for (const key of ['end_of_word_suffix', 'continuing_subword_suffix'] as const) optionalString(model, key);
      return { type: 'BPE', model: { ...model, merges }, maxId: vocab.maxId, unkToken: optionalString(model, 'unk_token') };
    }
    case 'WordPiece':
    case 'WordLevel': {
      const vocab = checkVocabObject(model.vocab, 'model.vocab');
      const unkToken = optionalString(model, 'unk_token');
      if (type === 'WordPiece') optionalString(model, 'continuing_subword_prefix');
      return { type: type as TokenizerModelType, model, maxId: vocab.maxId, unkToken };
    }
    case 'Unigram': {
      const vocab = model.vocab;
      if (!Array.isArray(vocab) || vocab.length === 0) fail('model.vocab', `model.vocab is ${describe(vocab)}, not a non-empty array of [piece, score]`);
      if (vocab.length > MAX_TOKEN_ID + 1) fail('model.vocab', `model.vocab has ${vocab.length} entries, over the ${MAX_TOKEN_ID + 1} limit`);
      vocab.forEach((entry: unknown, i) => {
        if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string' || typeof entry[1] !== 'number' || !Number.isFinite(entry[1])) {
          fail(`model.vocab[${i}]`, `model.vocab[${i}] is ${describe(entry)}, not a [piece, finite score] pair`);
        }
      });
      const unkId = model.unk_id ?? null;
      if (unkId !== null && !(isTokenId(unkId) && unkId < vocab.length)) {
        fail('model.unk_id', `model.unk_id is ${describe(unkId)}, not an index into model.vocab (${vocab.length} entries)`);
      }
      return { type: 'Unigram', model, maxId: vocab.length - 1, unkToken: unkId === null ? null : (vocab[unkId as number] as [string, number])[0] };
    }
  }
}

/** Check that each component (and each part of a Sequence) has a type the library implements. */
function checkComponent(kind: ComponentKind, value: unknown, field: string = kind): void {
  if (value === undefined || value === null) return;
  if (!isRecord(value)) fail(field, `${field} is ${describe(value)}, not an object or null`);
  const { types, sequenceKey } = COMPONENTS[kind];
  const type = value.type;
  if (typeof type !== 'string' || !(types as readonly string[]).includes(type)) {
    const shown = type === undefined ? 'missing' : typeof type === 'string' ? quoteName(type) : describe(type);
    throw new UnsupportedTokenizerError(TOKENIZER_FILE, `${field}.type is ${shown}; supported: ${types.join(', ')}`, { field: `${field}.type` });
  }
  if (type === 'Sequence') {
    const parts = value[sequenceKey];
    if (!Array.isArray(parts)) fail(`${field}.${sequenceKey}`, `${field}.${sequenceKey} is ${describe(parts)}, not an array`);
    parts.forEach((part: unknown, i) => checkComponent(kind, part, `${field}.${sequenceKey}[${i}]`));
  }
}

interface CheckedAddedToken {
  id: number;
  content: string;
  special: boolean;
}

function checkAddedTokens(root: JsonRecord): { tokens: JsonRecord[]; checked: CheckedAddedToken[] } {
  const list = root.added_tokens ?? [];
  if (!Array.isArray(list)) fail('added_tokens', `added_tokens is ${describe(list)}, not an array`);
  const byContent = new Map<string, number>();
  const checked: CheckedAddedToken[] = [];
  const tokens = list.map((entry: unknown, i): JsonRecord => {
    const field = `added_tokens[${i}]`;
    if (!isRecord(entry)) fail(field, `${field} is ${describe(entry)}, not an object`);
    if (!isTokenId(entry.id)) fail(`${field}.id`, `${field}.id is ${describe(entry.id)}, not an integer in [0, ${MAX_TOKEN_ID}]`);
    if (typeof entry.content !== 'string' || entry.content.length === 0) {
      fail(`${field}.content`, `${field}.content is ${describe(entry.content)}, not a non-empty string`);
    }
    for (const flag of ['special', 'single_word', 'lstrip', 'rstrip', 'normalized'] as const) {
      if (entry[flag] !== undefined && typeof entry[flag] !== 'boolean') fail(`${field}.${flag}`, `${field}.${flag} is ${describe(entry[flag])}, not a boolean`);
    }
    const other = byContent.get(entry.content);
    if (other !== undefined && other !== entry.id) {
      fail(`${field}.content`, `${field} adds ${quoteName(entry.content)} as id ${entry.id}, but it was already added as id ${other}`);
    }
    byContent.set(entry.content, entry.id);
    checked.push({ id: entry.id, content: entry.content, special: entry.special === true });
    return entry;
  });
  return { tokens, checked };
}

// ---------------------------------------------------------------------------------------------------------------
// Special tokens

/** A tokenizer_config token field: a string, an AddedToken-like `{content}` object, or null/absent. */
function configTokenText(config: JsonRecord, key: string): string | null {
  const value = config[key];
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.content === 'string') return value.content;
  throw new TokenizerError(TOKENIZER_CONFIG_FILE, `${key} is ${describe(value)}, not a token string or {"content": ...}`, { field: key });
}

/** A config `*_token_id` field: an id, a list of ids, or null/absent. Out-of-vocabulary ids are dropped with a warning. */
function configIds(config: JsonRecord | null, file: string, key: string, vocabSize: number, warnings: string[]): number[] {
  if (config === null) return [];
  const value = config[key];
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  const ids: number[] = [];
  for (const id of list) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id)) {
      throw new TokenizerError(file, `${key} is ${describe(value)}, not a token id or a list of token ids`, { field: key });
    }
    if (id < 0 || id >= vocabSize) {
      warnings.push(`${file}: ${key} ${id} is not a token of ${TOKENIZER_FILE} (vocabulary size ${vocabSize}); ignored`);
      continue;
    }
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------------------------
// The tokenizer

/** A checked tokenizer: encode/decode plus the resolved special tokens. Build it with {@link parseTokenizer} or {@link loadTokenizer}. */
export class Tokenizer {
  readonly modelType: TokenizerModelType;
  /** One more than the highest token id (model vocabulary and added tokens). */
  readonly vocabSize: number;
  readonly special: SpecialTokens;
  /** The parsed tokenizer_config.json ({} when absent), e.g. for its chat_template. */
  readonly config: Readonly<JsonRecord>;
  /** Non-fatal oddities found while loading (ids in config.json outside the vocabulary, ...). */
  readonly warnings: readonly string[];
  private readonly library: LibraryTokenizer;
  private readonly specialIds: ReadonlySet<number>;
  /**
   * A byte-level BPE whose vocabulary lacks some of the 256 byte symbols: the library drops the bytes it
   * cannot spell without a trace, so encode() refuses text holding them (outside added tokens).
   */
  private readonly unspellable: { bytes: ReadonlySet<number>; addedTexts: readonly string[] };

  /** @internal Use parseTokenizer. */
  constructor(parts: {
    modelType: TokenizerModelType;
    vocabSize: number;
    special: SpecialTokens;
    config: JsonRecord;
    warnings: string[];
    library: LibraryTokenizer;
    specialIds: Set<number>;
    /** For a byte-level BPE, the bytes its vocabulary cannot spell (usually none), and the added tokens' texts. */
    unspellable: { bytes: ReadonlySet<number>; addedTexts: readonly string[] };
  }) {
    this.modelType = parts.modelType;
    this.vocabSize = parts.vocabSize;
    this.special = Object.freeze({ ...parts.special, eosIds: Object.freeze([...parts.special.eosIds]) });
    this.config = Object.freeze(parts.config);
    this.warnings = Object.freeze([...parts.warnings]);
    this.library = parts.library;
    this.specialIds = parts.specialIds;
    this.unspellable = parts.unspellable;
  }

  /** Token ids of `text`. A token the vocabulary lacks (with no usable unk_token) is a TokenizerError, never a silent gap. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`encode expects a string, got ${describe(text)}`);
    const { ids, tokens } = this.library.encode(text, { add_special_tokens: options.addSpecialTokens ?? true });
    for (let i = 0; i < ids.length; i++) {
      if (!isTokenId(ids[i])) {
        throw new TokenizerError(
          TOKENIZER_FILE,
          `text produced the token ${quoteName(String(tokens[i]))}, which is not in the vocabulary, and model.unk_token is not a token either`,
          { field: 'model.unk_token' },
        );
      }
    }
    if (this.unspellable.bytes.size > 0) this.checkSpellable(text);
    return ids;
  }

  private checkSpellable(text: string): void {
    let plain = text;
    for (const added of this.unspellable.addedTexts) plain = plain.split(added).join('\u0000'.repeat(added.length));
    const encoder = new TextEncoder();
    for (let at = 0; at < plain.length; at++) {
      const char = String.fromCodePoint(plain.codePointAt(at)!);
      if (char !== '\u0000' && encoder.encode(char).some((byte) => this.unspellable.bytes.has(byte))) {
        throw new TokenizerError(
          TOKENIZER_FILE,
          `cannot encode ${quoteName(char)} at character ${at}: this byte-level vocabulary has no token for its bytes`,
          { field: 'model.vocab' },
        );
      }
      if (char.length === 2) at++;
    }
  }

  /** The text of `ids`. Ids that are not integers naming a token are a TokenIdError. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const list = Array.from(ids);
    for (let i = 0; i < list.length; i++) {
      const id = list[i];
      if (!Number.isSafeInteger(id) || id < 0 || id >= this.vocabSize || this.library.id_to_token(id) === undefined) {
        throw new TokenIdError(TOKENIZER_FILE, `token id ${String(id)} at position ${i} is not in the vocabulary (size ${this.vocabSize})`, { field: 'ids' });
      }
    }
    if (list.length === 0) return '';
    return this.library.decode(list, { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | null {
    return this.library.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return Number.isSafeInteger(id) && id >= 0 && id < this.vocabSize ? (this.library.id_to_token(id) ?? null) : null;
  }

  /** Whether `id` is a special token (an added token marked special, or bos/eos/pad/unk). */
  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }
}

/** Check the tokenizer files and build the tokenizer. TokenizerError (naming file and field) for anything malformed. */
export function parseTokenizer(inputs: TokenizerInputs): Tokenizer {
  const root = parseJsonObject(inputs.tokenizerJson, TOKENIZER_FILE);
  const tokenizerConfig = inputs.tokenizerConfig == null ? {} : parseJsonObject(inputs.tokenizerConfig, TOKENIZER_CONFIG_FILE);
  const modelConfig = inputs.config == null ? null : parseJsonObject(inputs.config, MODEL_CONFIG_FILE);
  const generationConfig = inputs.generationConfig == null ? null : parseJsonObject(inputs.generationConfig, GENERATION_CONFIG_FILE);

  const model = checkModel(root);
  for (const kind of Object.keys(COMPONENTS) as ComponentKind[]) checkComponent(kind, root[kind]);
  const added = checkAddedTokens(root);
  const vocabSize = added.checked.reduce((max, token) => Math.max(max, token.id), model.maxId) + 1;

  // Only the tokenizer_config fields the library reads, checked, in a fresh object (no `__proto__` games).
  const tokenText = (key: string) => configTokenText(tokenizerConfig, key);
  const additional = tokenizerConfig.additional_special_tokens ?? [];
  if (!Array.isArray(additional)) {
    throw new TokenizerError(TOKENIZER_CONFIG_FILE, `additional_special_tokens is ${describe(additional)}, not an array`, { field: 'additional_special_tokens' });
  }
  const additionalTexts = additional.map((entry: unknown, i) => {
    if (typeof entry === 'string') return entry;
    if (isRecord(entry) && typeof entry.content === 'string') return entry.content;
    throw new TokenizerError(TOKENIZER_CONFIG_FILE, `additional_special_tokens[${i}] is ${describe(entry)}, not a token`, {
      field: `additional_special_tokens[${i}]`,
    });
  });
  const flag = (key: string, fallback: boolean): boolean => {
    const value = tokenizerConfig[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') throw new TokenizerError(TOKENIZER_CONFIG_FILE, `${key} is ${describe(value)}, not a boolean`, { field: key });
    return value;
  };
  const libraryConfig: JsonRecord = {
    // transformers no longer cleans up spaces by default; the library would. Decoding stays lossless unless asked.
    clean_up_tokenization_spaces: flag('clean_up_tokenization_spaces', false),
    remove_space: flag('remove_space', false),
    do_lowercase_and_remove_accent: flag('do_lowercase_and_remove_accent', false),
    additional_special_tokens: additionalTexts,
    bos_token: tokenText('bos_token') ?? undefined,
    eos_token: tokenText('eos_token') ?? undefined,
    pad_token: tokenText('pad_token') ?? undefined,
    // The library runs WordLevel through its plain-vocabulary model, which takes the unknown token from here.
    unk_token: (model.type === 'WordLevel' ? model.unkToken : tokenText('unk_token')) ?? undefined,
  };
  const libraryJson: JsonRecord = {
    model: model.model,
    added_tokens: added.tokens,
    normalizer: root.normalizer ?? null,
    pre_tokenizer: root.pre_tokenizer ?? null,
    post_processor: root.post_processor ?? null,
    decoder: root.decoder ?? null,
  };

  let library: LibraryTokenizer;
  try {
    library = new LibraryTokenizer(libraryJson, libraryConfig);
    library.encode('a b', { add_special_tokens: true }); // surface errors of lazily compiled parts (regexes) now
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const kind = /Normalizer/i.test(message)
      ? 'normalizer'
      : /PreTokenizer/i.test(message)
        ? 'pre_tokenizer'
        : /PostProcessor/i.test(message)
          ? 'post_processor'
          : /Decoder/i.test(message)
            ? 'decoder'
            : 'tokenizer';
    throw new TokenizerError(TOKENIZER_FILE, `the tokenizer cannot be built (${kind}): ${message}`, { field: kind }, { cause: error });
  }

  const warnings: string[] = [];
  const resolveText = (key: string): SpecialToken | null => {
    const text = tokenText(key);
    if (text === null) return null;
    const id = library.token_to_id(text);
    if (id === undefined || !isTokenId(id)) {
      throw new TokenizerError(TOKENIZER_CONFIG_FILE, `${key} ${quoteName(text)} is not a token of ${TOKENIZER_FILE}`, { field: key });
    }
    return { id, text };
  };
  const fromIds = (ids: number[]): SpecialToken | null => {
    if (ids.length === 0) return null;
    return { id: ids[0], text: library.id_to_token(ids[0]) ?? '' };
  };
  const idsOf = (key: string): number[] => {
    const fromGeneration = configIds(generationConfig, GENERATION_CONFIG_FILE, key, vocabSize, warnings);
    const fromModel = configIds(modelConfig, MODEL_CONFIG_FILE, key, vocabSize, warnings);
    return [...new Set([...fromGeneration, ...fromModel])];
  };

  const eosIdsFromConfigs = idsOf('eos_token_id');
  const bos = resolveText('bos_token') ?? fromIds(idsOf('bos_token_id'));
  const eos = resolveText('eos_token') ?? fromIds(eosIdsFromConfigs);
  const pad = resolveText('pad_token') ?? fromIds(idsOf('pad_token_id'));
  let unk = resolveText('unk_token');
  if (unk === null && model.unkToken !== null) {
    const id = library.token_to_id(model.unkToken);
    if (id !== undefined) unk = { id, text: model.unkToken };
  }
  const eosIds = [...new Set([...(eos ? [eos.id] : []), ...eosIdsFromConfigs])];

  const specialIds = new Set<number>(added.checked.filter((t) => t.special).map((t) => t.id));
  for (const token of [bos, eos, pad, unk]) if (token) specialIds.add(token.id);
  for (const id of eosIds) specialIds.add(id);

  return new Tokenizer({
    unspellable: {
      bytes: new Set(usesByteLevel(root) ? BYTE_SYMBOLS.flatMap((symbol, byte) => (library.token_to_id(symbol) === undefined ? [byte] : [])) : []),
      addedTexts: added.checked.map((token) => token.content),
    },
    modelType: model.type,
    vocabSize,
    special: { bos, eos, pad, unk, eosIds },
    config: tokenizerConfig,
    warnings,
    library,
    specialIds,
  });
}

/** GPT-2's byte-to-character map: the 256 symbols a byte-level BPE spells every byte with. */
const BYTE_SYMBOLS: readonly string[] = (() => {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
})();

function usesByteLevel(root: JsonRecord): boolean {
  return JSON.stringify([root.pre_tokenizer ?? null, root.decoder ?? null]).includes('"ByteLevel"');
}

/** Read tokenizer.json (required) and tokenizer_config.json, config.json, generation_config.json (each optional) from a source. */
export async function loadTokenizer(files: ModelFiles): Promise<Tokenizer> {
  const tokenizerJson = await files.text(TOKENIZER_FILE);
  const [tokenizerConfig, config, generationConfig] = await Promise.all([
    textIfPresent(files, TOKENIZER_CONFIG_FILE),
    textIfPresent(files, MODEL_CONFIG_FILE),
    textIfPresent(files, GENERATION_CONFIG_FILE),
  ]);
  return parseTokenizer({ tokenizerJson, tokenizerConfig, config, generationConfig });
}
