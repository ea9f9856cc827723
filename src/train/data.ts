// Training datasets: parsing, format detection, tokenization and loss masks.
//
// Formats (ISSUE 5, QUALITY.md "Datasets"):
//   'text'               plain text; examples are paragraphs (blank-line separated), lines, or the whole document
//   'jsonl-text'         JSON lines with a string `text`
//   'prompt-completion'  JSON lines with string `prompt` and `completion`; the loss is on the completion only
//   'chat'               JSON lines with `messages` [{role, content}, ...], rendered by the model's chat template;
//                        the loss is on the assistant turns only (ChatTemplate.renderForTraining gives their spans)
// Auto-detection: a file whose first non-blank line starts with `{` is JSON lines, anything else plain text; the
// JSON-lines schema is the one most lines match (a line with `messages` counts as chat, else one with `prompt` or
// `completion` as prompt-completion, else one with `text` as jsonl-text). Lines of another schema are bad lines.
//
// Bytes: strict UTF-8 (a line that is not UTF-8 is a bad line, never decoded with replacement characters), a
// leading BOM dropped, CRLF line ends accepted. Bad lines are counted; the first few are kept with their 1-based
// line numbers. JSON is parsed by the strict parser (duplicate keys refused, nesting bounded) and objects become
// prototype-free records, so `__proto__` or `constructor` keys are plain data.
//
// Tokens and targets: every example becomes token ids and a per-token "target" flag (1 = the model learns to
// produce this token). Segments are tokenized separately and concatenated, so a mask boundary always falls on a
// token boundary:
//   text               [bos?] text [eos]                          targets: text and eos
//   prompt-completion  [bos?] prompt | completion [eos]           targets: completion and eos
//   chat               rendered text cut at the assistant spans   targets: the assistant spans (the template
//                      supplies bos and end-of-turn tokens itself)
// A tokenizer whose normalizer adds a prefix to every input (SentencePiece's "▁" Prepend) would change the text if
// segments were encoded separately; for those (found once per tokenizer by a probe) the whole text is encoded at
// once and each boundary is placed after the longest common prefix of the encoding of the text before it
// ('prefix' method). The method used is reported in the statistics.
//
// Context: an example longer than the context (`maxTokens` = sequence length + 1) is truncated when it has masked
// tokens (prompt-completion, chat) and split into overlapping windows when every token is a target (text), and
// both are counted. Examples left with no target token are dropped and counted. No examples, or no target token
// at all, is a DatasetError: training would have no defined loss.

import type { ChatMessage, ChatTemplate } from '../io/chatTemplate.ts';
import { ChatTemplateError } from '../io/chatTemplate.ts';
import { FormatError, quoteName } from '../io/errors.ts';
import { decodeUtf8Strict, JsonNumber, parseStrictJson, StrictJsonError, type JsonValue } from '../io/strictJson.ts';

export type DatasetFormat = 'text' | 'jsonl-text' | 'prompt-completion' | 'chat';
export const DATASET_FORMATS: readonly DatasetFormat[] = ['text', 'jsonl-text', 'prompt-completion', 'chat'];

/** How plain text is cut into examples. */
export type TextUnit = 'paragraph' | 'line' | 'document';

/** A dataset that cannot be used at all: empty, no usable examples, no target tokens, an unusable option. */
export class DatasetError extends FormatError {
  /** The line issues found before giving up (the first few), when the cause is that no line was usable. */
  readonly issues: readonly DatasetIssue[];
  constructor(file: string, detail: string, options: { field?: string; issues?: readonly DatasetIssue[] } = {}) {
    super(file, detail, { field: options.field });
    this.issues = options.issues ?? [];
  }
}

export type DatasetIssueKind =
  | 'encoding' // not UTF-8
  | 'too-long' // over maxLineBytes
  | 'json' // not valid JSON (syntax, duplicate key, nesting)
  | 'not-object' // valid JSON that is not an object
  | 'schema' // none of the known fields, or another format's fields
  | 'field' // a known field missing, mistyped or empty
  | 'template' // the chat template refused or failed on the conversation
  | 'no-targets'; // nothing left to learn (an empty completion, an assistant turn cut off by the context)

/** One bad line (or example), by 1-based line number. */
export interface DatasetIssue {
  readonly line: number;
  readonly kind: DatasetIssueKind;
  readonly field?: string;
  readonly message: string;
}

export type DatasetRecord =
  | { readonly kind: 'text'; readonly line: number; readonly text: string }
  | { readonly kind: 'prompt-completion'; readonly line: number; readonly prompt: string; readonly completion: string }
  | { readonly kind: 'chat'; readonly line: number; readonly messages: readonly ChatMessage[] };

export interface ParseDatasetOptions {
  /** Named in errors; default 'dataset'. */
  fileName?: string;
  /** Default 'auto'. */
  format?: DatasetFormat | 'auto';
  /** Plain text only; default 'paragraph'. */
  textUnit?: TextUnit;
  /** How many issues to keep (all are counted); default 5. */
  maxReportedIssues?: number;
  /** Longer lines are bad lines; default 16 MiB. */
  maxLineBytes?: number;
}

export interface ParsedDataset {
  readonly file: string;
  readonly format: DatasetFormat;
  /** True when the format was detected rather than given. */
  readonly detected: boolean;
  readonly records: readonly DatasetRecord[];
  /** Lines in the file (a final line end does not start another line). */
  readonly lines: number;
  readonly hadBom: boolean;
  readonly hadCrlf: boolean;
  /** Lines (or examples) refused, in all; `issues` holds the first few. */
  readonly issueCount: number;
  readonly issues: readonly DatasetIssue[];
  /** JSON lines only: how many well-formed objects matched each schema (what the detection saw). */
  readonly schemaCounts: Readonly<Record<'chat' | 'prompt-completion' | 'jsonl-text' | 'unknown', number>> | null;
}

const DEFAULT_MAX_REPORTED = 5;
const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;
const NEWLINE = 0x0a;

/**
 * Collects issues: all counted, the first `limit` kept. Issues arrive in line order within each pass over the file
 * (lines, JSON, records); keeping the first `limit` of each pass and merging gives the first `limit` overall.
 */
class IssueLog {
  count = 0;
  private readonly passes = new Map<string, DatasetIssue[]>();
  constructor(private readonly limit: number) {}
  add(pass: string, issue: DatasetIssue): void {
    this.count++;
    let kept = this.passes.get(pass);
    if (!kept) this.passes.set(pass, (kept = []));
    if (kept.length < this.limit) kept.push(issue);
  }
  get kept(): DatasetIssue[] {
    return [...this.passes.values()]
      .flat()
      .sort((a, b) => a.line - b.line)
      .slice(0, this.limit);
  }
}

/** A line of the file: its number and text, or null when it is not UTF-8 or too long (already reported). */
interface Line {
  readonly number: number;
  readonly text: string | null;
}

/** Split into lines: BOM dropped, `\r\n` and `\n` accepted, each line strictly UTF-8. */
function splitLines(input: Uint8Array | string, maxLineBytes: number, log: IssueLog): { lines: Line[]; hadBom: boolean; hadCrlf: boolean } {
  let hadBom = false;
  let texts: (string | null)[];
  if (typeof input === 'string') {
    if (input.charCodeAt(0) === 0xfeff) {
      hadBom = true;
      input = input.slice(1);
    }
    texts = input.split('\n');
  } else {
    let bytes = input;
    if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
      hadBom = true;
      bytes = bytes.subarray(3);
    }
    const whole = decodeUtf8Strict(bytes);
    if (whole !== null) texts = whole.split('\n');
    else {
      // Some line is not UTF-8: decode line by line (0x0A never occurs inside a multi-byte sequence).
      texts = [];
      let start = 0;
      for (let i = 0; i <= bytes.length; i++) {
        if (i === bytes.length || bytes[i] === NEWLINE) {
          texts.push(decodeUtf8Strict(bytes.subarray(start, i)));
          start = i + 1;
        }
      }
      texts.forEach((text, index) => {
        if (text === null) log.add('lines', { line: index + 1, kind: 'encoding', message: `line ${index + 1} is not valid UTF-8` });
      });
    }
  }
  if (texts.length > 1 && texts[texts.length - 1] === '') texts.pop(); // the final line end
  let hadCrlf = false;
  const lines = texts.map((text, index): Line => {
    if (text === null) return { number: index + 1, text: null };
    if (text.endsWith('\r')) {
      hadCrlf = true;
      text = text.slice(0, -1);
    }
    // UTF-16 length ≤ UTF-8 bytes ≤ 3 × UTF-16 length: measure bytes only when it could matter.
    if (text.length * 3 > maxLineBytes && new TextEncoder().encode(text).byteLength > maxLineBytes) {
      log.add('length', { line: index + 1, kind: 'too-long', message: `line ${index + 1} is longer than the ${maxLineBytes}-byte limit` });
      return { number: index + 1, text: null };
    }
    return { number: index + 1, text };
  });
  return { lines, hadBom, hadCrlf };
}

const isBlank = (text: string) => text.trim() === '';

function checkPositiveInteger(file: string, field: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) throw new DatasetError(file, `${field} must be a positive integer, got ${value}`, { field });
}

/** Parse a dataset file into records; bad lines are counted and reported, never thrown (an empty file is). */
export function parseDataset(input: Uint8Array | string, options: ParseDatasetOptions = {}): ParsedDataset {
  const file = options.fileName ?? 'dataset';
  const requested = options.format ?? 'auto';
  if (requested !== 'auto' && !DATASET_FORMATS.includes(requested)) {
    throw new DatasetError(file, `unknown dataset format ${quoteName(String(requested))} (known: auto, ${DATASET_FORMATS.join(', ')})`, { field: 'format' });
  }
  const textUnit = options.textUnit ?? 'paragraph';
  if (!['paragraph', 'line', 'document'].includes(textUnit)) {
    throw new DatasetError(file, `unknown text unit ${quoteName(String(textUnit))} (known: paragraph, line, document)`, { field: 'textUnit' });
  }
  const maxReported = options.maxReportedIssues ?? DEFAULT_MAX_REPORTED;
  if (!Number.isSafeInteger(maxReported) || maxReported < 0) throw new DatasetError(file, `maxReportedIssues must be a non-negative integer, got ${maxReported}`, { field: 'maxReportedIssues' });
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  checkPositiveInteger(file, 'maxLineBytes', maxLineBytes);
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) throw new DatasetError(file, 'the dataset must be bytes or a string', { field: 'file' });

  const log = new IssueLog(maxReported);
  const { lines, hadBom, hadCrlf } = splitLines(input, maxLineBytes, log);
  const firstContent = lines.find((line) => line.text !== null && !isBlank(line.text));
  if (!firstContent && log.count === 0) throw new DatasetError(file, 'is empty: no lines with content', { field: 'file' });

  const jsonl = requested === 'auto' ? firstContent?.text?.trimStart().startsWith('{') === true : requested !== 'text';
  const base = { file, lines: lines.length, hadBom, hadCrlf };
  if (!jsonl) {
    const records = plainTextRecords(lines, textUnit);
    return { ...base, format: 'text', detected: requested === 'auto', records, issueCount: log.count, issues: log.kept, schemaCounts: null };
  }
  const { format, records, schemaCounts } = jsonLineRecords(lines, requested === 'auto' || requested === 'text' ? null : requested, log);
  return { ...base, format, detected: requested === 'auto', records, issueCount: log.count, issues: log.kept, schemaCounts };
}

function plainTextRecords(lines: readonly Line[], unit: TextUnit): DatasetRecord[] {
  const records: DatasetRecord[] = [];
  if (unit === 'line') {
    for (const { number, text } of lines) if (text !== null && !isBlank(text)) records.push({ kind: 'text', line: number, text });
    return records;
  }
  let start = 0;
  let parts: string[] = [];
  const flush = () => {
    if (parts.length > 0) records.push({ kind: 'text', line: start, text: parts.join('\n') });
    parts = [];
  };
  for (const { number, text } of lines) {
    if (text === null) continue; // a bad line (reported) does not end a paragraph
    if (unit === 'paragraph' && isBlank(text)) {
      flush();
      continue;
    }
    if (parts.length === 0) {
      if (isBlank(text)) continue; // leading blank lines of the document
      start = number;
    }
    parts.push(text);
  }
  if (unit === 'document') {
    while (parts.length > 0 && isBlank(parts[parts.length - 1])) parts.pop();
  }
  flush();
  return records;
}

type Schema = 'chat' | 'prompt-completion' | 'jsonl-text' | 'unknown';
type JsonRecord = Record<string, unknown>;

/** JSON data as plain values: numbers as numbers, objects as prototype-free records (so `__proto__` is a key). */
function toPlain(value: JsonValue): unknown {
  if (value instanceof JsonNumber) return value.value;
  if (Array.isArray(value)) return value.map(toPlain);
  if (value instanceof Map) {
    const record: JsonRecord = Object.create(null);
    for (const [key, item] of value) record[key] = toPlain(item);
    return record;
  }
  return value;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return 'a string';
  return `a ${typeof value}`;
}

const has = (record: JsonRecord, key: string) => Object.prototype.hasOwnProperty.call(record, key);

function schemaOf(record: JsonRecord): Schema {
  if (has(record, 'messages')) return 'chat';
  if (has(record, 'prompt') || has(record, 'completion')) return 'prompt-completion';
  if (has(record, 'text')) return 'jsonl-text';
  return 'unknown';
}

const SCHEMA_FIELDS: Record<Exclude<Schema, 'unknown'>, string> = {
  chat: '`messages`',
  'prompt-completion': '`prompt` and `completion`',
  'jsonl-text': '`text`',
};

function jsonLineRecords(
  lines: readonly Line[],
  forced: Exclude<DatasetFormat, 'text'> | null,
  log: IssueLog,
): { format: Exclude<DatasetFormat, 'text'>; records: DatasetRecord[]; schemaCounts: Record<Schema, number> } {
  const parsed: { line: number; record: JsonRecord; schema: Schema }[] = [];
  const schemaCounts: Record<Schema, number> = { chat: 0, 'prompt-completion': 0, 'jsonl-text': 0, unknown: 0 };
  for (const { number, text } of lines) {
    if (text === null || isBlank(text)) continue;
    let value: JsonValue;
    try {
      value = parseStrictJson(text);
    } catch (error) {
      if (!(error instanceof StrictJsonError)) throw error;
      const why = error.kind === 'duplicate' ? `has the key ${quoteName(error.key ?? '')} twice` : `is not valid JSON (${error.detail})`;
      log.add('json', { line: number, kind: 'json', message: `line ${number} ${why}` });
      continue;
    }
    if (!(value instanceof Map)) {
      log.add('json', { line: number, kind: 'not-object', message: `line ${number} is ${describeJsonKind(value)}, not a JSON object` });
      continue;
    }
    const record = toPlain(value) as JsonRecord;
    const schema = schemaOf(record);
    schemaCounts[schema]++;
    parsed.push({ line: number, record, schema });
  }

  // The schema most lines follow (ties: chat, then prompt-completion, then text).
  const order: Exclude<Schema, 'unknown'>[] = ['chat', 'prompt-completion', 'jsonl-text'];
  const format = forced ?? order.reduce((best, schema) => (schemaCounts[schema] > schemaCounts[best] ? schema : best), order[0]);
  const records: DatasetRecord[] = [];
  for (const { line, record, schema } of parsed) {
    if (schema !== format) {
      const found = schema === 'unknown' ? `none of the fields ${Object.values(SCHEMA_FIELDS).join(', ')}` : `${SCHEMA_FIELDS[schema]} (${schema})`;
      log.add('records', { line, kind: 'schema', message: `line ${line} has ${found}, but the dataset is ${format} (needs ${SCHEMA_FIELDS[format]})` });
      continue;
    }
    const checked = checkRecord(line, record, format);
    if (typeof checked === 'string') log.add('records', { line, kind: 'field', field: checked.split(' ')[0], message: `line ${line}: ${checked}` });
    else records.push(checked);
  }
  return { format, records, schemaCounts };
}

function describeJsonKind(value: JsonValue): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof JsonNumber) return 'a number';
  return `a ${typeof value}`;
}

/** The record, or why it is unusable (starting with the field's name). */
function checkRecord(line: number, record: JsonRecord, format: Exclude<DatasetFormat, 'text'>): DatasetRecord | string {
  if (format === 'jsonl-text') {
    const text = record.text;
    if (typeof text !== 'string') return `text is ${describeValue(text)}, not a string`;
    if (isBlank(text)) return 'text is empty';
    return { kind: 'text', line, text };
  }
  if (format === 'prompt-completion') {
    const { prompt, completion } = record;
    if (typeof prompt !== 'string') return `prompt is ${describeValue(prompt)}, not a string`;
    if (typeof completion !== 'string') return `completion is ${describeValue(completion)}, not a string`;
    if (completion === '') return 'completion is empty: nothing to learn';
    return { kind: 'prompt-completion', line, prompt, completion };
  }
  const messages = record.messages;
  if (!Array.isArray(messages)) return `messages is ${describeValue(messages)}, not an array`;
  if (messages.length === 0) return 'messages is empty';
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i] as unknown;
    if (typeof message !== 'object' || message === null || Array.isArray(message)) return `messages[${i}] is ${describeValue(message)}, not an object`;
    const { role, content } = message as JsonRecord;
    if (typeof role !== 'string' || role === '') return `messages[${i}].role is ${describeValue(role)}, not a non-empty string`;
    if (typeof content !== 'string') return `messages[${i}].content is ${describeValue(content)}, not a string`;
  }
  if (!messages.some((m) => (m as JsonRecord).role === 'assistant' && ((m as JsonRecord).content as string).trim() !== '')) {
    return 'messages has no assistant message with content: nothing to learn';
  }
  return { kind: 'chat', line, messages: messages as ChatMessage[] };
}

// ---------------------------------------------------------------------------------------------------------------
// Tokenization

/** What tokenization needs of a tokenizer (io/tokenizer.ts's Tokenizer fits). */
export interface DatasetTokenizer {
  readonly vocabSize: number;
  readonly special: { readonly bos: { readonly id: number } | null; readonly eos: { readonly id: number } | null };
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
}

export interface TokenizeOptions {
  tokenizer: DatasetTokenizer;
  /** Needed for chat datasets. */
  chatTemplate?: ChatTemplate | null;
  /** The context: sequence length + 1 (a row of L inputs needs L + 1 tokens for its labels). At least 2. */
  maxTokens: number;
  /** The model's vocabulary size: a token id at or above it is a DatasetError (tokenizer and model do not match). */
  modelVocabSize?: number;
  /** Template variables for chat rendering (tools, enable_thinking, ...). */
  templateVariables?: Record<string, unknown>;
  /** Force the boundary method instead of probing the tokenizer. */
  spanMethod?: SpanMethod;
  /** How many issues to keep (all are counted); default 5. */
  maxReportedIssues?: number;
}

/** How segment boundaries are mapped to tokens (see the file header). */
export type SpanMethod = 'segments' | 'prefix';

export interface TokenizedExample {
  /** The line the example came from. */
  readonly line: number;
  readonly ids: Int32Array;
  /** 1 where the token is a target (learned), else 0. The first token is never a target: nothing precedes it. */
  readonly targets: Uint8Array;
}

export interface DatasetStats {
  readonly records: number;
  readonly examples: number;
  readonly tokens: number;
  /** Target tokens (tokens whose prediction is trained). */
  readonly targetTokens: number;
  /** Examples with masked tokens cut at the context, and the tokens cut. */
  readonly truncated: number;
  readonly truncatedTokens: number;
  /** Text examples longer than the context, split into windows (each window is an example). */
  readonly split: number;
  /** Examples dropped because no target token was left. */
  readonly droppedNoTargets: number;
  readonly spanMethod: SpanMethod;
}

export interface TokenizedDataset {
  readonly file: string;
  readonly format: DatasetFormat;
  readonly examples: readonly TokenizedExample[];
  readonly stats: DatasetStats;
  /** Parse and tokenization issues together: all counted, the first few kept, in line order. */
  readonly issueCount: number;
  readonly issues: readonly DatasetIssue[];
}

interface Segment {
  text: string;
  target: boolean;
}

/** Special tokens a tokenizer's post-processor adds around an input, found by encoding a probe with and without them. */
interface TokenizerTraits {
  prefix: number[];
  suffix: number[];
  segmentsCompose: boolean;
}

const traitsCache = new WeakMap<DatasetTokenizer, TokenizerTraits>();

function tokenizerTraits(tokenizer: DatasetTokenizer): TokenizerTraits {
  let traits = traitsCache.get(tokenizer);
  if (traits) return traits;
  const probe = 'a';
  const plain = tokenizer.encode(probe, { addSpecialTokens: false });
  const full = tokenizer.encode(probe, { addSpecialTokens: true });
  let at = -1;
  for (let i = 0; i + plain.length <= full.length && at < 0; i++) {
    if (plain.every((id, k) => full[i + k] === id)) at = i;
  }
  const prefix = at < 0 ? [] : full.slice(0, at);
  const suffix = at < 0 ? [] : full.slice(at + plain.length);
  // Encoding pieces separately must give back the same text as encoding them together.
  const pairs: [string, string][] = [
    ['Hello', ' world'],
    ['x', '\ny'],
    ['The answer:', ' 42.'],
  ];
  const segmentsCompose = pairs.every(([a, b]) => {
    const apart = [...tokenizer.encode(a, { addSpecialTokens: false }), ...tokenizer.encode(b, { addSpecialTokens: false })];
    return tokenizer.decode(apart) === tokenizer.decode(tokenizer.encode(a + b, { addSpecialTokens: false }));
  });
  traits = { prefix, suffix, segmentsCompose };
  traitsCache.set(tokenizer, traits);
  return traits;
}

/** Tokens and target flags of segments, by the chosen method. */
function encodeSegments(tokenizer: DatasetTokenizer, segments: readonly Segment[], method: SpanMethod): { ids: number[]; targets: number[] } {
  const ids: number[] = [];
  const targets: number[] = [];
  if (method === 'segments') {
    for (const segment of segments) {
      if (segment.text === '') continue;
      const piece = tokenizer.encode(segment.text, { addSpecialTokens: false });
      for (const id of piece) {
        ids.push(id);
        targets.push(segment.target ? 1 : 0);
      }
    }
    return { ids, targets };
  }
  const joined = segments.map((s) => s.text).join('');
  const full = tokenizer.encode(joined, { addSpecialTokens: false });
  let chars = 0;
  let token = 0;
  segments.forEach((segment, index) => {
    chars += segment.text.length;
    let end = full.length;
    if (index < segments.length - 1) {
      // The boundary after this segment: the longest common prefix of the encoding of the text so far.
      const before = tokenizer.encode(joined.slice(0, chars), { addSpecialTokens: false });
      end = 0;
      while (end < before.length && end < full.length && before[end] === full[end]) end++;
      end = Math.max(end, token);
    }
    for (; token < end; token++) {
      ids.push(full[token]);
      targets.push(segment.target ? 1 : 0);
    }
  });
  return { ids, targets };
}

/** Tokenize parsed records into examples with target flags, applying the context limit. */
export function tokenizeDataset(parsed: ParsedDataset, options: TokenizeOptions): TokenizedDataset {
  const { file, format } = parsed;
  const { tokenizer, maxTokens } = options;
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 2) throw new DatasetError(file, `the context (maxTokens) must be an integer ≥ 2, got ${maxTokens}`, { field: 'maxTokens' });
  const template = options.chatTemplate ?? null;
  if (format === 'chat' && template === null) {
    throw new DatasetError(file, 'is a chat dataset, but the model has no chat template to render it', { field: 'chat_template' });
  }
  const traits = tokenizerTraits(tokenizer);
  const method = options.spanMethod ?? (traits.segmentsCompose ? 'segments' : 'prefix');
  const vocab = options.modelVocabSize ?? tokenizer.vocabSize;
  const eos = tokenizer.special.eos?.id ?? null;
  const extra: DatasetIssue[] = [];
  const examples: TokenizedExample[] = [];
  let truncated = 0;
  let truncatedTokens = 0;
  let split = 0;
  let dropped = 0;

  const emit = (line: number, ids: number[], targets: number[]) => {
    for (let i = 0; i < ids.length; i++) {
      if (!(ids[i] >= 0 && ids[i] < vocab)) {
        throw new DatasetError(file, `line ${line}: token id ${ids[i]} is outside the model's vocabulary of ${vocab}: the tokenizer does not belong to this model`, {
          field: 'tokenizer',
        });
      }
    }
    targets[0] = 0;
    if (!targets.some((t) => t === 1)) {
      dropped++;
      extra.push({ line, kind: 'no-targets', message: `line ${line}: no token left to learn within the ${maxTokens}-token context` });
      return;
    }
    examples.push({ line, ids: Int32Array.from(ids), targets: Uint8Array.from(targets) });
  };

  for (const record of parsed.records) {
    let segments: Segment[];
    let wrap: boolean; // add the post-processor's special tokens and eos around the text
    if (record.kind === 'text') {
      segments = [{ text: record.text, target: true }];
      wrap = true;
    } else if (record.kind === 'prompt-completion') {
      segments = [
        { text: record.prompt, target: false },
        { text: record.completion, target: true },
      ];
      wrap = true;
    } else {
      let rendered;
      try {
        rendered = template!.renderForTraining(record.messages, { variables: options.templateVariables });
      } catch (error) {
        if (!(error instanceof ChatTemplateError)) throw error;
        extra.push({ line: record.line, kind: 'template', field: 'messages', message: `line ${record.line}: ${error.message}` });
        continue;
      }
      segments = [];
      let at = 0;
      for (const span of [...rendered.spans].sort((a, b) => a.start - b.start)) {
        if (span.start < at) continue; // overlapping spans: keep the first
        segments.push({ text: rendered.text.slice(at, span.start), target: false }, { text: rendered.text.slice(span.start, span.end), target: true });
        at = span.end;
      }
      segments.push({ text: rendered.text.slice(at), target: false });
      wrap = false;
    }

    const { ids, targets } = encodeSegments(tokenizer, segments, method);
    if (wrap) {
      ids.unshift(...traits.prefix);
      targets.unshift(...traits.prefix.map(() => 0));
      ids.push(...traits.suffix);
      targets.push(...traits.suffix.map(() => 0));
      if (eos !== null && ids[ids.length - 1] !== eos) {
        ids.push(eos);
        targets.push(1);
      }
    }
    if (ids.length <= maxTokens) {
      emit(record.line, ids, targets);
    } else if (record.kind === 'text') {
      // Overlapping windows of maxTokens: each token after the first is a target in exactly one window.
      split++;
      for (let start = 0; start < ids.length - 1; start += maxTokens - 1) {
        emit(record.line, ids.slice(start, start + maxTokens), targets.slice(start, start + maxTokens));
      }
    } else {
      truncated++;
      truncatedTokens += ids.length - maxTokens;
      emit(record.line, ids.slice(0, maxTokens), targets.slice(0, maxTokens));
    }
  }

  // Parse issues come first in the file; merge the kept ones in line order.
  const issues = [...parsed.issues, ...extra].sort((a, b) => a.line - b.line).slice(0, options.maxReportedIssues ?? DEFAULT_MAX_REPORTED);
  const issueCount = parsed.issueCount + extra.length;
  let tokens = 0;
  let targetTokens = 0;
  for (const example of examples) {
    tokens += example.ids.length;
    for (const t of example.targets) targetTokens += t;
  }
  const stats: DatasetStats = {
    records: parsed.records.length,
    examples: examples.length,
    tokens,
    targetTokens,
    truncated,
    truncatedTokens,
    split,
    droppedNoTargets: dropped,
    spanMethod: method,
  };
  return { file, format, examples, stats, issueCount, issues };
}

export interface PrepareDatasetOptions extends ParseDatasetOptions, TokenizeOptions {}

/**
 * Parse and tokenize; a DatasetError when nothing is usable: no examples (the first issues are attached and
 * named in the message) or no target token in any example (the loss would be undefined).
 */
export function prepareDataset(input: Uint8Array | string, options: PrepareDatasetOptions): TokenizedDataset {
  const parsed = parseDataset(input, options);
  const tokenized = tokenizeDataset(parsed, options);
  requireUsable(tokenized);
  return tokenized;
}

/** DatasetError unless the dataset has examples and at least one target token. */
export function requireUsable(dataset: TokenizedDataset): void {
  const { file, stats, issues, issueCount } = dataset;
  const first = issues.slice(0, 3).map((issue) => issue.message);
  const shown = first.length > 0 ? `; ${issueCount} bad line${issueCount === 1 ? '' : 's'}, first: ${first.join('; ')}` : '';
  if (stats.targetTokens === 0 && stats.droppedNoTargets > 0) {
    throw new DatasetError(
      file,
      `every label is masked: ${stats.droppedNoTargets} example${stats.droppedNoTargets === 1 ? '' : 's'} had no token to learn within the context, so the loss is undefined${shown}`,
      { field: 'labels', issues },
    );
  }
  if (stats.examples === 0) {
    throw new DatasetError(file, `has no usable examples (${stats.records} ${dataset.format} records${shown})`, { field: 'examples', issues });
  }
  if (stats.targetTokens === 0) {
    throw new DatasetError(file, `every label is masked: no example has a token to learn, so the loss is undefined${shown}`, { field: 'labels', issues });
  }
}
