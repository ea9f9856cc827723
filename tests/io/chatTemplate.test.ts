import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ChatTemplate,
  ChatTemplateError,
  ChatTemplateLimitError,
  ChatTemplateRaisedError,
  loadChatTemplate,
  selectChatTemplate,
  strftime,
  type ChatMessage,
  type ChatTemplateLimits,
} from '../../src/io/chatTemplate.ts';
import { quoteName } from '../../src/io/errors.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { loadTokenizer } from '../../src/io/tokenizer.ts';

// Goldens: Python's jinja2 (configured as transformers configures it) rendered these templates and conversations;
// see tests/fixtures/tokenizers/make_tokenizer_fixtures.py.
const FIXTURES = new URL('../fixtures/tokenizers/', import.meta.url);
interface GoldenCase {
  template: string;
  conversation: string;
  add_generation_prompt: boolean;
  variables: Record<string, unknown>;
  expected?: string;
  raises?: string;
  generation_spans?: [number, number][];
}
const goldens = JSON.parse(readFileSync(new URL('chat_goldens.json', FIXTURES), 'utf8')) as {
  templates: Record<string, { source: string; tokens: Record<string, string> }>;
  conversations: Record<string, ChatMessage[]>;
  cases: GoldenCase[];
};
const template = (name: string, limits = {}) => new ChatTemplate(goldens.templates[name].source, { tokens: goldens.templates[name].tokens, limits });
const conversation = (name: string) => goldens.conversations[name];

function caught(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('rendering matches jinja2', () => {
  it.each(goldens.cases.map((c) => [`${c.template} / ${c.conversation}${c.add_generation_prompt ? ' + generation prompt' : ''}`, c] as const))('%s', (_name, c) => {
    const chat = template(c.template);
    const render = () => chat.render(conversation(c.conversation), { addGenerationPrompt: c.add_generation_prompt, variables: c.variables });
    if (c.raises !== undefined) {
      const error = caught(render);
      expect(error).toBeInstanceOf(ChatTemplateRaisedError);
      expect(error.message).toContain(c.raises);
    } else {
      expect(render()).toBe(c.expected);
    }
  });

  it('loads the template from tokenizer_config.json or chat_template.jinja with the tokenizer\'s special tokens', async () => {
    for (const [dir, file, name] of [
      ['byte_bpe', 'tokenizer_config.json', 'chatml'],
      ['llama', 'chat_template.jinja', 'llama2'],
    ] as const) {
      const files = localDirectory(new URL(`${dir}/`, FIXTURES).pathname);
      const chat = await loadChatTemplate(files, await loadTokenizer(files));
      expect(chat).not.toBeNull();
      expect(chat!.file).toBe(file);
      const golden = goldens.cases.find((c) => c.template === name && c.conversation === 'system_and_turns')!;
      expect(chat!.render(conversation('system_and_turns'), { addGenerationPrompt: golden.add_generation_prompt })).toBe(golden.expected);
    }
  });

  it('strftime_now reports the given time in the C locale', () => {
    const chat = new ChatTemplate("{{ strftime_now('%d %b %Y, %B %H:%M %%') }}");
    expect(chat.render([], { now: new Date(2024, 6, 26, 9, 5) })).toBe('26 Jul 2024, July 09:05 %');
    expect(strftime(new Date(2025, 0, 3), '%Y-%m-%d')).toBe('2025-01-03');
  });
});

describe('assistant spans for training', () => {
  const spanTexts = (text: string, spans: readonly { start: number; end: number }[]) => spans.map((s) => text.slice(s.start, s.end));

  it('by prefixes: the reply and its end-of-turn text (ChatML)', () => {
    const result = template('chatml').renderForTraining(conversation('two_turns'));
    expect(result.method).toBe('prefix');
    expect(result.text).toBe(goldens.cases.find((c) => c.template === 'chatml' && c.conversation === 'two_turns')!.expected);
    expect(spanTexts(result.text, result.spans)).toEqual(['Hello! How can I help?<|im_end|>\n', 'Bye.<|im_end|>\n']);
    expect(result.spans.map((s) => s.messageIndex)).toEqual([1, 3]);
  });

  it('by prefixes: Llama 2 [INST] turns end with eos', () => {
    const result = template('llama2').renderForTraining(conversation('system_and_turns').slice(0, 3));
    expect(result.method).toBe('prefix');
    expect(spanTexts(result.text, result.spans)).toEqual([' 4. </s>']);
    const two = template('llama2').renderForTraining(conversation('two_turns'));
    expect(spanTexts(two.text, two.spans)).toEqual([' Hello! How can I help? </s>', ' Bye. </s>']);
  });

  it('by {% generation %} blocks: the spans jinja2 + transformers record', () => {
    for (const c of goldens.cases.filter((g) => g.template === 'chatml_generation')) {
      const chat = template('chatml_generation');
      expect(chat.hasGenerationBlocks).toBe(true);
      expect(chat.render(conversation(c.conversation), { addGenerationPrompt: c.add_generation_prompt })).toBe(c.expected);
      if (c.add_generation_prompt) continue;
      const result = chat.renderForTraining(conversation(c.conversation));
      expect(result.method).toBe('generation');
      expect(result.text).toBe(c.expected);
      expect(result.spans.map((s) => [s.start, s.end])).toEqual(c.generation_spans);
      expect(result.spans.map((s) => s.messageIndex)).toEqual([1, 3]);
    }
  });

  it('by sentinels when the template rewrites earlier turns: the content alone', () => {
    // The last assistant turn is rendered differently, so prefix renders are not prefixes of the full render.
    const chat = new ChatTemplate(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% if m.role == 'assistant' and loop.last %}[final]{% endif %}</{{ m.role }}>{% endfor %}",
    );
    const messages = conversation('two_turns');
    const result = chat.renderForTraining(messages);
    expect(result.method).toBe('sentinel');
    expect(result.text).toBe(chat.render(messages));
    expect(spanTexts(result.text, result.spans)).toEqual([messages[1].content, messages[3].content]);
  });

  it('refuses, with a clear error, a template that both rewrites turns and alters the content', () => {
    const chat = new ChatTemplate(
      "{% for m in messages %}{{ m.content[1:] }}{% if loop.last %}[final]{% endif %}|{% endfor %}",
      { file: 'tokenizer_config.json' },
    );
    const error = caught(() => chat.renderForTraining(conversation('two_turns')));
    expect(error).toBeInstanceOf(ChatTemplateError);
    expect(error.message).toMatch(/^"tokenizer_config.json": cannot locate the assistant turns/);
  });

  it('a conversation without assistant turns has no spans', () => {
    const result = template('chatml').renderForTraining(conversation('one_user'));
    expect(result.spans).toEqual([]);
  });
});

describe('templates are data: internals unreachable, resources bounded', () => {
  const messages: ChatMessage[] = [{ role: 'user', content: 'hi' }];
  const small = { maxOutputChars: 100_000, maxSteps: 200_000 };
  const expectLimit = (source: string, says: RegExp, limits: Partial<ChatTemplateLimits> = small) => {
    const error = caught(() => new ChatTemplate(source, { limits }).render(messages));
    expect(error).toBeInstanceOf(ChatTemplateLimitError);
    expect(error.message).toMatch(says);
    expect((error as ChatTemplateError).field).toBe('chat_template');
  };

  it('object internals render as undefined and nothing is executed', () => {
    const probes = [
      '{{ messages.constructor }}',
      '{{ messages.__proto__ }}',
      "{{ ''.__class__ }}",
      '{{ messages[0].constructor }}',
      '{{ range.constructor }}',
      '{{ namespace.__proto__ }}',
    ];
    for (const probe of probes) expect(new ChatTemplate(probe).render(messages), probe).toBe('');
    const attack = "{{ ''.constructor.constructor('globalThis.__pwned = 1')() }}";
    expect(caught(() => new ChatTemplate(attack).render(messages))).toBeInstanceOf(ChatTemplateError);
    expect((globalThis as { __pwned?: unknown }).__pwned).toBeUndefined();
  });

  it('`__proto__` keys in messages are plain data', () => {
    const parsed = JSON.parse('[{"role": "user", "content": "x", "__proto__": {"polluted": true}}]') as ChatMessage[];
    expect(new ChatTemplate("{{ messages[0]['__proto__']['polluted'] }}|{{ messages[0].polluted }}").render(parsed)).toBe('true|');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('runaway loops stop at the step budget (empty bodies count too)', () => {
    expectLimit('{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}', /more than 200000 evaluation steps/);
    expectLimit('{% for i in range(5000) %}{% for j in range(5000) %}{{ i }}{% endfor %}{% endfor %}', /more than 200000 evaluation steps/);
    // With the default limits: the step budget, or on a slow machine the time backstop, whichever comes first.
    expectLimit('{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}', /more than 1000000 evaluation steps|more than 2000 ms/, {});
    // A large range also counts against the size cap (each item is held).
    expectLimit('{% for i in range(60000) %}{% endfor %}', /a value would hold 120000 characters/);
  });

  it('range() over the cap is refused before it is built', () => {
    expectLimit('{% for i in range(1000000000) %}x{% endfor %}', /range\(\) of 1000000000 items/);
    expectLimit('{{ range(0, 10000000000, 2) | length }}', /range\(\) of 5000000000 items/);
  });

  it('output that doubles is stopped at the size cap', () => {
    expectLimit("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}", /over the 100000 cap/);
    expectLimit("{% set ns = namespace(a=['x']) %}{% for i in range(64) %}{% set ns.a = ns.a + ns.a %}{% endfor %}{{ ns.a | length }}", /over the 100000 cap/);
  });

  it('size-multiplying builtins are refused before they run', () => {
    const manyLines = "{% set ns = namespace(s='\\n') %}{% for i in range(14) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}";
    expectLimit(`${manyLines}{{ ns.s | indent(100) }}`, /indent\(\) would hold/);
    const longText = "{% set ns = namespace(s='a') %}{% for i in range(15) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}";
    expectLimit(`${longText}{{ ns.s.replace('a', ns.s) }}`, /replace\(\) would hold/);
    expectLimit(`${longText}{{ ns.s | replace('a', ns.s) }}`, /replace\(\) would hold/);
    expectLimit(`${longText}{{ range(1000) | join(ns.s) }}`, /join\(\) would hold/);
    expectLimit("{{ {'a': {'b': {'c': [1, 2, 3, 4]}}} | tojson(indent=100000) }}", /tojson\(indent=...\) would hold/);
    // Within the cap the same builtins work.
    expect(new ChatTemplate("{{ 'a\\nb' | indent(2) }}|{{ 'aXa'.replace('a', 'bb') }}|{{ ['x', 'y'] | join('-') }}").render(messages)).toBe('a\n  b|bbXbb|x-y');
  });

  it('runaway recursion stops at the depth cap', () => {
    expectLimit('{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}', /nested evaluations|stopped/);
  });

  it('a template over the size cap is refused before parsing', () => {
    const error = caught(() => new ChatTemplate('x'.repeat(2_000), { limits: { maxTemplateChars: 1_000 }, file: 'chat_template.jinja' }));
    expect(error).toBeInstanceOf(ChatTemplateLimitError);
    expect(error.message).toBe(`${quoteName('chat_template.jinja')}: chat_template is 2000 characters, over the 1000 cap`);
  });

  it('syntax errors, failing renders and raise_exception are typed and name the file', () => {
    const parse = caught(() => new ChatTemplate('{% for m in messages %}{{ m', { file: 'tokenizer_config.json' }));
    expect(parse).toBeInstanceOf(ChatTemplateError);
    expect(parse.message).toMatch(/^"tokenizer_config.json": chat_template cannot be parsed/);
    const failing = caught(() => new ChatTemplate('{{ messages[5].content + 1 }}').render(messages));
    expect(failing).toBeInstanceOf(ChatTemplateError);
    expect(failing.message).toMatch(/rendering failed/);
    const raised = caught(() => new ChatTemplate("{{ raise_exception('no system role') }}").render(messages));
    expect(raised).toBeInstanceOf(ChatTemplateRaisedError);
    expect(raised.message).toContain('"no system role"');
  });

  it('messages must be plain data', () => {
    expect(() => new ChatTemplate('{{ messages }}').render([{ role: 'user', content: () => 1 }])).toThrow(TypeError);
    expect(() => new ChatTemplate('{{ messages }}').render([{ role: 'user', content: new Date() }])).toThrow(TypeError);
    expect(() => new ChatTemplate('{{ messages }}').render([{ content: 'no role' } as unknown as ChatMessage])).toThrow(TypeError);
  });
});

describe('choosing the template', () => {
  it('chat_template.jinja wins; named lists and maps are supported', () => {
    expect(selectChatTemplate({ chat_template: 'A' }, 'B')).toEqual({ source: 'B', file: 'chat_template.jinja' });
    expect(selectChatTemplate({ chat_template: 'A' }, null)).toEqual({ source: 'A', file: 'tokenizer_config.json' });
    expect(selectChatTemplate({}, null)).toBeNull();
    const list = { chat_template: [{ name: 'default', template: 'D' }, { name: 'tool_use', template: 'T' }] };
    expect(selectChatTemplate(list, null)?.source).toBe('D');
    expect(selectChatTemplate(list, null, 'tool_use')?.source).toBe('T');
    expect(selectChatTemplate({ chat_template: { default: 'D', rag: 'R' } }, null, 'rag')?.source).toBe('R');
    const missing = caught(() => selectChatTemplate(list, null, 'rag'));
    expect(missing).toBeInstanceOf(ChatTemplateError);
    expect(missing.message).toContain('no template named "rag" (available: "default", "tool_use")');
  });
});
