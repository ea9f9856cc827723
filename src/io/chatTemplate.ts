// Chat templates (FORMATS.md §6): the Jinja `chat_template` of tokenizer_config.json, or a chat_template.jinja file
// (which wins, as in transformers), rendered by @huggingface/jinja with transformers' settings (trim_blocks,
// lstrip_blocks, `raise_exception`, `strftime_now`, `namespace`).
//
// A template comes with a downloaded model, so it is data, not code. @huggingface/jinja interprets it (nothing is
// ever evaluated as JavaScript) and only exposes own data of the values passed in, so `constructor`,
// `__proto__` and the like are undefined. What remains is resource use, and the interpreter is synchronous, so
// {@link GuardedInterpreter} hooks every node evaluation and refuses, with a ChatTemplateLimitError:
//   - more than `maxSteps` evaluation steps (loop iterations and building large arrays are charged as steps too;
//     the default, a million, is about a second and a hundred times what a long real conversation needs), or
//     more than `maxMillis` of wall time (checked every 64 steps; a backstop for a slow machine);
//   - any value (string, or the characters held by an array or object) over `maxOutputChars`, and, checked
//     before they run, the builtins whose output multiplies their inputs (`indent`, `join`, `replace`,
//     `tojson(indent=...)`) when their projected output is over the cap;
//   - `range()` longer than `maxIterable`, and more than `maxDepth` nested evaluations (runaway macro recursion).
//
// Assistant spans for training (`renderForTraining`): where the tokens the model should learn to produce lie.
//   1. Templates with transformers' `{% generation %}...{% endgeneration %}` blocks: the tags are replaced by
//      private-use sentinel strings, the output is scanned for them and they are removed ('generation').
//   2. Otherwise by prefixes ('prefix'): for each assistant message i, render messages[0..i) with the generation
//      prompt and messages[0..i]; the span is what the second adds to the first — the reply and its end-of-turn
//      text (`<|im_end|>`, eos). Both renders must be prefixes of the full render, else the template rewrites
//      earlier turns (as reasoning templates do) and method 3 is used.
//   3. Sentinels around each assistant message's string content ('sentinel'): the span is the content alone.
//      The render with the sentinels removed must equal the plain render, else a ChatTemplateError.

import { Environment, Interpreter, parse, tokenize } from '@huggingface/jinja';
import { FormatError, quoteName } from './errors.ts';
import { TOKENIZER_CONFIG_FILE, type Tokenizer } from './tokenizer.ts';
import { textIfPresent, type ModelFiles } from './sources/types.ts';

export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

/** A chat template that cannot be selected, parsed or rendered. */
export class ChatTemplateError extends FormatError {}

/** The template went over a resource limit (steps, time, output size, recursion); see {@link ChatTemplateLimits}. */
export class ChatTemplateLimitError extends ChatTemplateError {}

/** The template called `raise_exception(message)` (e.g. "Conversation roles must alternate"). */
export class ChatTemplateRaisedError extends ChatTemplateError {}

export interface ChatTemplateLimits {
  /** Longest template source accepted (real templates are a few kB to a few tens of kB). */
  maxTemplateChars: number;
  /** Longest string (and most characters held by one array or object) any step may produce, the output included. */
  maxOutputChars: number;
  maxSteps: number;
  maxMillis: number;
  /** Longest `range()` and most nested evaluations. */
  maxIterable: number;
  maxDepth: number;
}

export const DEFAULT_CHAT_TEMPLATE_LIMITS: Readonly<ChatTemplateLimits> = Object.freeze({
  maxTemplateChars: 1_000_000,
  maxOutputChars: 4_000_000,
  maxSteps: 1_000_000,
  maxMillis: 2_000,
  maxIterable: 100_000,
  maxDepth: 400,
});

/** A chat message: a role and content, plus whatever else a template reads (tool_calls, name, ...). Plain JSON data only. */
export interface ChatMessage {
  role: string;
  content?: unknown;
  [key: string]: unknown;
}

export interface RenderOptions {
  /** Append the prompt that starts an assistant turn (for generation). Default false. */
  addGenerationPrompt?: boolean;
  /** Extra template variables (tools, documents, enable_thinking, date_string, ...). */
  variables?: Record<string, unknown>;
  /** The time `strftime_now` reports; default now. */
  now?: Date;
}

/** Characters [start, end) of the rendered text that the model should learn to produce. */
export interface AssistantSpan {
  readonly start: number;
  readonly end: number;
  /** Index into the messages of the assistant message, or -1 when a generation block cannot be matched to one. */
  readonly messageIndex: number;
}

export interface TrainingRender {
  readonly text: string;
  readonly spans: readonly AssistantSpan[];
  readonly method: 'generation' | 'prefix' | 'sentinel';
}

/** Special token texts a template may use. */
export interface TemplateTokens {
  bos_token?: string | null;
  eos_token?: string | null;
  pad_token?: string | null;
  unk_token?: string | null;
}

// ---------------------------------------------------------------------------------------------------------------
// The guarded interpreter

type JinjaNode = Parameters<Interpreter['evaluate']>[0];
type JinjaEnv = Parameters<Interpreter['evaluate']>[1];
type JinjaValue = ReturnType<Interpreter['evaluate']>;

/** The fields of the library's AST nodes and runtime values read here (they are plain public class fields). */
interface Node {
  type: string;
  [field: string]: unknown;
}
interface Value {
  type: string;
  value: unknown;
}

interface Frame {
  node: Node;
  /** Values of the child nodes evaluated so far, by node. */
  inputs: Map<unknown, Value>;
}

class Budget {
  steps = 0;
  readonly deadline: number;
  constructor(
    readonly limits: ChatTemplateLimits,
    readonly file: string,
  ) {
    this.deadline = performance.now() + limits.maxMillis;
  }

  refuse(detail: string): never {
    throw new ChatTemplateLimitError(this.file, `rendering stopped: ${detail}`, { field: 'chat_template' });
  }

  charge(steps: number): void {
    const before = this.steps;
    this.steps += steps;
    if (this.steps > this.limits.maxSteps) this.refuse(`more than ${this.limits.maxSteps} evaluation steps (a runaway loop?)`);
    if (Math.floor(before / 64) !== Math.floor(this.steps / 64) && performance.now() > this.deadline) this.refuse(`more than ${this.limits.maxMillis} ms`);
  }

  checkSize(chars: number, what: string): void {
    if (chars > this.limits.maxOutputChars) this.refuse(`${what} would hold ${chars} characters, over the ${this.limits.maxOutputChars} cap`);
  }
}

/** Steps charged per loop iteration, measured against plain evaluation steps (about 1 µs each on a desktop CPU). */
const ITERATION_STEPS = 8;

const nodeOf = (statement: unknown) => statement as Node;
const isValue = (value: unknown): value is Value => typeof value === 'object' && value !== null && typeof (value as Value).type === 'string';

class GuardedInterpreter extends Interpreter {
  private readonly frames: Frame[] = [];
  private readonly weights = new WeakMap<object, number>();

  constructor(
    env: JinjaEnv,
    private readonly budget: Budget,
  ) {
    super(env);
  }

  override evaluate(statement: JinjaNode, environment: JinjaEnv): JinjaValue {
    this.budget.charge(1);
    if (statement === undefined) return super.evaluate(statement, environment);
    if (this.frames.length >= this.budget.limits.maxDepth) this.budget.refuse(`more than ${this.budget.limits.maxDepth} nested evaluations (runaway recursion?)`);
    const frame: Frame = { node: nodeOf(statement), inputs: new Map() };
    this.frames.push(frame);
    let value: JinjaValue;
    try {
      value = super.evaluate(statement, environment);
    } finally {
      this.frames.pop();
    }
    this.afterEvaluate(frame, value as unknown as Value);
    return value;
  }

  private afterEvaluate(frame: Frame, value: Value): void {
    this.budget.checkSize(this.weightOf(value, new Set()), 'a value');
    const parent = this.frames.at(-1);
    if (parent === undefined) return;
    parent.inputs.set(frame.node, value);
    const p = parent.node;
    if (p.type === 'For' && (frame.node === p.iterable || frame.node === (p.iterable as Node).lhs)) {
      // Each iteration costs steps even with an empty body: the interpreter builds a scope per item (~8 steps' time).
      const n = Array.isArray(value.value) ? value.value.length : value.value instanceof Map ? value.value.size : 0;
      this.budget.charge(n * ITERATION_STEPS);
    } else if (p.type === 'FilterExpression') {
      this.checkFilter(parent);
    } else if (p.type === 'CallExpression' && frame.node === p.callee && frame.node.type === 'MemberExpression') {
      // Arguments are evaluated before the callee: all inputs of `text.replace(old, new)` are known now.
      const property = frame.node.property as Node;
      const object = frame.inputs.get(frame.node.object);
      if (property.type === 'Identifier' && property.value === 'replace' && object?.type === 'StringValue') {
        const args = (p.args as Node[]).map((arg) => parent.inputs.get(arg));
        this.checkReplace(object.value as string, args[0], args[1]);
      }
    }
  }

  /** Projected output of the size-multiplying filters, from the inputs known so far (checked as each arrives). */
  private checkFilter(frame: Frame): void {
    const node = frame.node;
    const operand = frame.inputs.get(node.operand);
    if (operand === undefined) return;
    const filter = node.filter as Node;
    const name = filter.type === 'Identifier' ? filter.value : (filter.callee as Node | undefined)?.value;
    const positional: (Value | undefined)[] = [];
    const keyword = new Map<string, Value | undefined>();
    if (filter.type === 'CallExpression') {
      for (const arg of filter.args as Node[]) {
        if (arg.type === 'KeywordArgumentExpression') keyword.set((arg.key as Node).value as string, frame.inputs.get(arg.value));
        else positional.push(frame.inputs.get(arg));
      }
    }
    const numberOf = (value: Value | undefined, fallback: number) => (value !== undefined && typeof value.value === 'number' ? value.value : fallback);
    if (name === 'indent' && operand.type === 'StringValue') {
      const text = operand.value as string;
      const width = numberOf(positional[0] ?? keyword.get('width'), 4);
      const lines = text.split('\n').length;
      this.budget.checkSize(text.length + lines * Math.max(0, width), 'indent()');
    } else if (name === 'join' && operand.type === 'ArrayValue') {
      const items = operand.value as Value[];
      const separator = positional[0] ?? keyword.get('d');
      const separatorLength = separator?.type === 'StringValue' ? (separator.value as string).length : 0;
      this.budget.checkSize(this.weightOf(operand, new Set()) + items.length * separatorLength, 'join()');
    } else if (name === 'replace' && operand.type === 'StringValue') {
      this.checkReplace(operand.value as string, positional[0], positional[1]);
    } else if (name === 'tojson') {
      const indent = numberOf(keyword.get('indent'), 0);
      if (indent > 0) {
        const { nodes, depth } = this.shapeOf(operand, 0);
        this.budget.checkSize(this.weightOf(operand, new Set()) * 2 + nodes * (depth + 1) * indent, 'tojson(indent=...)');
      }
    }
  }

  private checkReplace(text: string, old: Value | undefined, replacement: Value | undefined): void {
    if (old?.type !== 'StringValue' || replacement?.type !== 'StringValue') return;
    const oldText = old.value as string;
    const newLength = (replacement.value as string).length;
    const occurrences = oldText.length === 0 ? text.length + 1 : text.split(oldText).length - 1;
    this.budget.checkSize(text.length + occurrences * newLength, 'replace()');
  }

  /**
   * Characters held by a value: a string's length, the sum over an array's or object's contents (+1 per entry).
   * Arrays and objects are immutable in the interpreter, so their weight is cached; computing it for a new one
   * costs steps in proportion to its entries (so growing a list one item at a time cannot go quadratic unnoticed).
   * Namespaces are mutable and may be cyclic: never cached, and a cycle counts once.
   */
  private weightOf(value: Value, visiting: Set<object>): number {
    switch (value.type) {
      case 'StringValue':
        return (value.value as string).length;
      case 'ArrayValue':
      case 'TupleValue':
      case 'ObjectValue':
      case 'KeywordArgumentsValue':
      case 'NamespaceValue': {
        const mutable = value.type === 'NamespaceValue';
        const cached = mutable ? undefined : this.weights.get(value);
        if (cached !== undefined) return cached;
        if (visiting.has(value)) return 0;
        visiting.add(value);
        let total = 0;
        let entries = 0;
        if (Array.isArray(value.value)) {
          for (const item of value.value as Value[]) {
            total += 1 + this.weightOf(item, visiting);
            entries++;
          }
        } else if (value.value instanceof Map) {
          for (const [key, item] of value.value as Map<string, Value>) {
            total += 1 + key.length + this.weightOf(item, visiting);
            entries++;
          }
        }
        visiting.delete(value);
        this.budget.charge(entries >> 3);
        if (!mutable) this.weights.set(value, total);
        return total;
      }
      default:
        return 1;
    }
  }

  /** Node count and nesting depth of a value, for tojson's indentation. */
  private shapeOf(value: Value, depth: number): { nodes: number; depth: number } {
    if (depth > 64) return { nodes: 1, depth };
    const children = Array.isArray(value.value) ? (value.value as Value[]) : value.value instanceof Map ? [...(value.value as Map<string, Value>).values()] : [];
    let nodes = 1;
    let deepest = depth;
    for (const child of children) {
      if (!isValue(child)) continue;
      const shape = this.shapeOf(child, depth + 1);
      nodes += shape.nodes;
      deepest = Math.max(deepest, shape.depth);
    }
    return { nodes, depth: deepest };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Globals

class TemplateRaise extends Error {}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/** Python's strftime for the directives chat templates use (%Y %m %d %b %B %H %M %%), in the C locale. */
export function strftime(date: Date, format: string): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return String(format).replace(/%[YmdbBHM%]/g, (directive) => {
    switch (directive) {
      case '%Y':
        return String(date.getFullYear());
      case '%m':
        return pad(date.getMonth() + 1);
      case '%d':
        return pad(date.getDate());
      case '%b':
        return MONTHS[date.getMonth()].slice(0, 3);
      case '%B':
        return MONTHS[date.getMonth()];
      case '%H':
        return pad(date.getHours());
      case '%M':
        return pad(date.getMinutes());
      default:
        return '%';
    }
  });
}

/** Copy caller data into plain JSON values (no functions, class instances or getters reach the template). */
function plainData(value: unknown, where: string, depth = 0): unknown {
  if (depth > 64) throw new TypeError(`${where} is nested more than 64 levels deep`);
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`${where} is ${value}, not a finite number`);
    return value;
  }
  if (Array.isArray(value)) return value.map((item, i) => plainData(item, `${where}[${i}]`, depth + 1));
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) throw new TypeError(`${where} is not a plain object`);
    const copy: Record<string, unknown> = Object.create(null);
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      if (item !== undefined) copy[key] = plainData(item, `${where}.${key}`, depth + 1);
    }
    return copy;
  }
  throw new TypeError(`${where} is a ${typeof value}, not JSON data`);
}

// ---------------------------------------------------------------------------------------------------------------
// Templates

const GENERATION_TAG = /(\s*){%(-?)\s*(end)?generation\s*(-?)%}(\s*)/gs;
const GENERATION_START = '__tabtune_generation_start';
const GENERATION_END = '__tabtune_generation_end';

/**
 * transformers' `{% generation %}` tags become expressions printing two variables. The library's own
 * whitespace preprocessing is applied first (it would otherwise drop the tags), so the output is unchanged.
 */
function rewriteGenerationTags(source: string): string | null {
  if (!/{%-?\s*generation\s*-?%}/.test(source)) return null;
  let text = source.endsWith('\n') ? source.slice(0, -1) : source;
  text = text.replace(/^[ \t]*({[#%-])/gm, '$1').replace(/([#%-]})\n/g, '$1');
  text = text.replace(GENERATION_TAG, (_all, before: string, left: string, end: string | undefined, right: string, after: string) => {
    const marker = `{{ ${end ? GENERATION_END : GENERATION_START} }}`;
    return (left ? '' : before) + marker + (right ? '' : after);
  });
  // tokenize() strips one trailing newline itself: keep a real one from being dropped twice.
  return text.endsWith('\n') ? `${text}{# #}` : text;
}

/** A parsed chat template. Rendering is synchronous and bounded by {@link ChatTemplateLimits}. */
export class ChatTemplate {
  readonly source: string;
  /** The file it came from, for messages: tokenizer_config.json or chat_template.jinja. */
  readonly file: string;
  readonly tokens: Readonly<TemplateTokens>;
  readonly limits: Readonly<ChatTemplateLimits>;
  /** Whether the template marks assistant output with `{% generation %}` blocks. */
  readonly hasGenerationBlocks: boolean;
  private readonly program: ReturnType<typeof parse>;

  constructor(source: string, options: { file?: string; tokens?: TemplateTokens; limits?: Partial<ChatTemplateLimits> } = {}) {
    this.file = options.file ?? CHAT_TEMPLATE_FILE;
    this.limits = Object.freeze({ ...DEFAULT_CHAT_TEMPLATE_LIMITS, ...options.limits });
    this.tokens = Object.freeze({ ...options.tokens });
    if (typeof source !== 'string') throw new ChatTemplateError(this.file, 'chat_template is not a string', { field: 'chat_template' });
    if (source.length > this.limits.maxTemplateChars) {
      throw new ChatTemplateLimitError(this.file, `chat_template is ${source.length} characters, over the ${this.limits.maxTemplateChars} cap`, {
        field: 'chat_template',
      });
    }
    this.source = source;
    const rewritten = rewriteGenerationTags(source);
    this.hasGenerationBlocks = rewritten !== null;
    try {
      this.program = parse(rewritten === null ? tokenize(source, { lstrip_blocks: true, trim_blocks: true }) : tokenize(rewritten));
    } catch (error) {
      const message = error instanceof RangeError ? 'it is nested too deeply' : (error as Error).message;
      throw new ChatTemplateError(this.file, `chat_template cannot be parsed: ${message}`, { field: 'chat_template' }, { cause: error });
    }
  }

  /** Render a conversation. ChatTemplateRaisedError when the template refuses it, ChatTemplateLimitError past a limit. */
  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    return this.run(messages, options, { start: '', end: '' });
  }

  /** Render for training and locate the assistant spans (see the file header for the three methods). */
  renderForTraining(messages: readonly ChatMessage[], options: Omit<RenderOptions, 'addGenerationPrompt'> = {}): TrainingRender {
    const plain = { ...options, addGenerationPrompt: false };
    const text = this.render(messages, plain);
    const assistant = messages.flatMap((m, i) => (m.role === 'assistant' ? [i] : []));
    if (this.hasGenerationBlocks) return this.spansFromGenerationBlocks(messages, plain, text, assistant);
    const byPrefix = this.spansFromPrefixes(messages, options, text, assistant);
    if (byPrefix !== null) return { text, spans: byPrefix, method: 'prefix' };
    return this.spansFromSentinels(messages, plain, text, assistant);
  }

  private spansFromGenerationBlocks(messages: readonly ChatMessage[], options: RenderOptions, text: string, assistant: number[]): TrainingRender {
    const [start, end] = sentinels(this.source, messages, 1);
    const marked = this.run(messages, options, { start: start[0], end: end[0] });
    const { clean, spans } = extractMarked(marked, [{ start: start[0], end: end[0], index: -1 }]);
    if (clean !== text) this.cannotLocate('its {% generation %} blocks change the output');
    const matched = spans.length === assistant.length;
    return { text, spans: spans.map((s, k) => ({ ...s, messageIndex: matched ? assistant[k] : -1 })), method: 'generation' };
  }

  private spansFromPrefixes(messages: readonly ChatMessage[], options: RenderOptions, text: string, assistant: number[]): AssistantSpan[] | null {
    const spans: AssistantSpan[] = [];
    for (const i of assistant) {
      let prompt: string;
      let turn: string;
      try {
        prompt = this.render(messages.slice(0, i), { ...options, addGenerationPrompt: true });
        turn = this.render(messages.slice(0, i + 1), { ...options, addGenerationPrompt: false });
      } catch (error) {
        // A template may refuse a partial conversation (e.g. one that does not end with a user message): try sentinels.
        if (error instanceof ChatTemplateError && !(error instanceof ChatTemplateLimitError)) return null;
        throw error;
      }
      if (!turn.startsWith(prompt) || !text.startsWith(turn)) return null;
      const last = spans.at(-1);
      if (last !== undefined && prompt.length < last.end) return null;
      spans.push({ start: prompt.length, end: turn.length, messageIndex: i });
    }
    return spans;
  }

  private spansFromSentinels(messages: readonly ChatMessage[], options: RenderOptions, text: string, assistant: number[]): TrainingRender {
    const [start, end] = sentinels(this.source, messages, messages.length);
    const markers: { start: string; end: string; index: number }[] = [];
    const wrapped = messages.map((message, i) => {
      if (message.role !== 'assistant' || typeof message.content !== 'string') return message;
      markers.push({ start: start[i], end: end[i], index: i });
      return { ...message, content: start[i] + message.content + end[i] };
    });
    if (markers.length < assistant.length) this.cannotLocate('an assistant message has no string content');
    const { clean, spans } = extractMarked(this.run(wrapped, options, { start: '', end: '' }), markers);
    if (clean !== text || spans.length !== markers.length) this.cannotLocate('it rewrites earlier turns and changes message content');
    return { text, spans, method: 'sentinel' };
  }

  private cannotLocate(why: string): never {
    throw new ChatTemplateError(this.file, `cannot locate the assistant turns for training: ${why}`, { field: 'chat_template' });
  }

  private run(messages: readonly ChatMessage[], options: RenderOptions, generation: { start: string; end: string }): string {
    if (!Array.isArray(messages)) throw new TypeError('messages must be an array');
    messages.forEach((m, i) => {
      if (typeof m !== 'object' || m === null || typeof m.role !== 'string') throw new TypeError(`messages[${i}] has no string role`);
    });
    const budget = new Budget(this.limits, this.file);
    const env = new Environment();
    const now = options.now ?? new Date();
    const maxIterable = this.limits.maxIterable;
    const globals: Record<string, unknown> = {
      ...(plainData(options.variables ?? {}, 'variables') as Record<string, unknown>),
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
      raise_exception: (message: unknown) => {
        throw new TemplateRaise(String(message));
      },
      strftime_now: (format: unknown) => strftime(now, String(format)),
      range: (start: unknown, stop?: unknown, step: unknown = 1) => {
        const [a, b] = stop === undefined || stop === null ? [0, start] : [start, stop];
        if (![a, b, step].every((n) => typeof n === 'number' && Number.isInteger(n)) || step === 0) throw new Error('range() needs integers and a non-zero step');
        const count = Math.max(0, Math.ceil(((b as number) - (a as number)) / (step as number)));
        if (count > maxIterable) budget.refuse(`range() of ${count} items, over the ${maxIterable} cap`);
        return Array.from({ length: count }, (_, k) => (a as number) + k * (step as number));
      },
      messages: plainData(messages, 'messages'),
      add_generation_prompt: options.addGenerationPrompt ?? false,
      [GENERATION_START]: generation.start,
      [GENERATION_END]: generation.end,
    };
    for (const [key, value] of Object.entries(this.tokens)) if (typeof value === 'string') globals[key] = value;
    for (const [key, value] of Object.entries(globals)) {
      env.variables.delete(key);
      env.set(key, value);
    }
    try {
      const result = new GuardedInterpreter(env, budget).run(this.program) as unknown as Value;
      const output = typeof result.value === 'string' ? result.value : '';
      budget.checkSize(output.length, 'the output');
      return output;
    } catch (error) {
      if (error instanceof ChatTemplateError) throw error;
      if (error instanceof TemplateRaise) {
        throw new ChatTemplateRaisedError(this.file, `the template refused the conversation: ${quoteName(error.message)}`, { field: 'chat_template' });
      }
      if (error instanceof RangeError) {
        throw new ChatTemplateLimitError(this.file, `rendering stopped: ${error.message}`, { field: 'chat_template' }, { cause: error });
      }
      const message = error instanceof Error ? error.message : String(error);
      throw new ChatTemplateError(this.file, `rendering failed: ${message}`, { field: 'chat_template' }, { cause: error });
    }
  }
}

/** Start and end sentinel strings (private-use characters and digits, which case filters and trim leave alone) absent from the inputs. */
function sentinels(source: string, messages: readonly ChatMessage[], count: number): [string[], string[]] {
  const haystack = source + JSON.stringify(messages);
  for (let salt = 0; ; salt++) {
    const start = Array.from({ length: count }, (_, i) => `\uE000${salt}.${i}\uE001`);
    const end = Array.from({ length: count }, (_, i) => `\uE002${salt}.${i}\uE003`);
    if (![...start, ...end].some((s) => haystack.includes(s)) && !haystack.includes(`\uE000${salt}.`) && !haystack.includes(`\uE002${salt}.`)) return [start, end];
  }
}

/** Remove marker pairs from `text`, returning the cleaned text and the spans they enclosed (a marker pair may occur several times). */
function extractMarked(text: string, markers: { start: string; end: string; index: number }[]): { clean: string; spans: AssistantSpan[] } {
  const hits: { at: number; length: number; marker: number; opening: boolean }[] = [];
  markers.forEach((m, k) => {
    for (const [needle, opening] of [
      [m.start, true],
      [m.end, false],
    ] as const) {
      for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) hits.push({ at, length: needle.length, marker: k, opening });
    }
  });
  hits.sort((a, b) => a.at - b.at);
  let clean = '';
  let cursor = 0;
  const spans: AssistantSpan[] = [];
  let open: { marker: number; start: number } | null = null;
  for (const hit of hits) {
    clean += text.slice(cursor, hit.at);
    cursor = hit.at + hit.length;
    if (hit.opening) {
      if (open !== null) return { clean: `${clean}\u0000unbalanced`, spans };
      open = { marker: hit.marker, start: clean.length };
    } else {
      if (open === null || open.marker !== hit.marker) return { clean: `${clean}\u0000unbalanced`, spans };
      if (clean.length > open.start) spans.push({ start: open.start, end: clean.length, messageIndex: markers[hit.marker].index });
      open = null;
    }
  }
  clean += text.slice(cursor);
  return { clean: open === null ? clean : `${clean}\u0000unbalanced`, spans };
}

/**
 * The template source to use: chat_template.jinja when present, else tokenizer_config.json's `chat_template`
 * (a string, or a list of {name, template} / a name → template object, from which `name` is picked,
 * default "default"). Null when the model has no chat template.
 */
export function selectChatTemplate(tokenizerConfig: Readonly<Record<string, unknown>>, jinjaFile: string | null, name = 'default'): { source: string; file: string } | null {
  if (jinjaFile !== null) return { source: jinjaFile, file: CHAT_TEMPLATE_FILE };
  const field = tokenizerConfig.chat_template;
  if (field === undefined || field === null) return null;
  if (typeof field === 'string') return { source: field, file: TOKENIZER_CONFIG_FILE };
  const named = new Map<string, unknown>();
  if (Array.isArray(field)) {
    for (const entry of field) {
      if (typeof entry === 'object' && entry !== null && typeof (entry as { name?: unknown }).name === 'string') {
        named.set((entry as { name: string }).name, (entry as { template?: unknown }).template);
      }
    }
  } else if (typeof field === 'object') {
    for (const [key, value] of Object.entries(field as Record<string, unknown>)) named.set(key, value);
  }
  const chosen = named.get(name);
  if (typeof chosen !== 'string') {
    const names = [...named.keys()].map(quoteName).join(', ') || 'none';
    throw new ChatTemplateError(TOKENIZER_CONFIG_FILE, `chat_template has no template named ${quoteName(name)} (available: ${names})`, { field: 'chat_template' });
  }
  return { source: chosen, file: TOKENIZER_CONFIG_FILE };
}

/** The tokenizer's special token texts, as templates expect them (`bos_token`, `eos_token`, ...). */
export function templateTokens(tokenizer: Tokenizer): TemplateTokens {
  const { bos, eos, pad, unk } = tokenizer.special;
  return { bos_token: bos?.text ?? null, eos_token: eos?.text ?? null, pad_token: pad?.text ?? null, unk_token: unk?.text ?? null };
}

/** The model's chat template, or null when it has none. */
export async function loadChatTemplate(
  files: ModelFiles,
  tokenizer: Tokenizer,
  options: { name?: string; limits?: Partial<ChatTemplateLimits> } = {},
): Promise<ChatTemplate | null> {
  const jinja = await textIfPresent(files, CHAT_TEMPLATE_FILE);
  const selected = selectChatTemplate(tokenizer.config, jinja, options.name);
  if (selected === null) return null;
  return new ChatTemplate(selected.source, { file: selected.file, tokens: templateTokens(tokenizer), limits: options.limits });
}
