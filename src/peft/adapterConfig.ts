// Parsing and checking PEFT's adapter_config.json for a LoRA adapter. Values out of range and options
// that would compute a different function than plain LoRA (DoRA, modules_to_save, rank/alpha patterns,
// an init that changed the base weights, ...) are refused by name; keys that only matter when PEFT
// creates an adapter are ignored; unknown keys are dropped with a warning, as PEFT does.

import { decodeUtf8Strict, describeJson, JsonNumber, parseStrictJson, StrictJsonError, type JsonObject, type JsonValue } from '../io/strictJson.ts';
import { AdapterConfigError, UnsupportedAdapterError } from './adapterErrors.ts';
import type { LoraConfig } from './peftModel.ts';

export interface ParsedAdapterConfig {
  lora: Required<Pick<LoraConfig, 'r' | 'alpha' | 'dropout' | 'useRslora'>> &
    Pick<LoraConfig, 'targetModules' | 'excludeModules' | 'layersToTransform' | 'layersPattern'>;
  baseModelNameOrPath: string | null;
  fanInFanOut: boolean;
  warnings: string[];
}

const MAX_CONFIG_BYTES = 1 << 20;

/** Read when creating an adapter only (or metadata): no effect on a loaded adapter's function. */
const IGNORED = new Set([
  'auto_mapping',
  'revision',
  'inference_mode',
  'task_type',
  'eva_config',
  'corda_config',
  'loftq_config',
  'megatron_core',
  'runtime_config',
  'qalora_group_size',
  'ensure_weight_tying',
]);

/** Options tabtune does not implement: refused when set to anything but their "off" value. */
const UNSUPPORTED: Record<string, (value: JsonValue) => boolean> = {
  use_dora: (v) => v === true,
  modules_to_save: (v) => v !== null && !(Array.isArray(v) && v.length === 0),
  rank_pattern: (v) => v !== null && !(v instanceof Map && v.size === 0),
  alpha_pattern: (v) => v !== null && !(v instanceof Map && v.size === 0),
  layer_replication: (v) => v !== null,
  lora_bias: (v) => v === true,
  use_qalora: (v) => v === true,
  trainable_token_indices: (v) => v !== null,
  target_parameters: (v) => v !== null && !(Array.isArray(v) && v.length === 0),
  megatron_config: (v) => v !== null,
  alora_invocation_tokens: (v) => v !== null,
  arrow_config: (v) => v !== null,
};

const PARSED = new Set([
  'peft_type',
  'base_model_name_or_path',
  'r',
  'lora_alpha',
  'lora_dropout',
  'use_rslora',
  'bias',
  'fan_in_fan_out',
  'target_modules',
  'exclude_modules',
  'layers_to_transform',
  'layers_pattern',
  'init_lora_weights',
]);

export function parseAdapterConfig(bytes: Uint8Array, file: string): ParsedAdapterConfig {
  const fail = (field: string, detail: string, ErrorClass = AdapterConfigError): never => {
    throw new ErrorClass(file, `${field ? `${field} ` : ''}${detail}`, { field: field || 'file' });
  };
  if (bytes.length > MAX_CONFIG_BYTES) fail('', `is larger than ${MAX_CONFIG_BYTES} bytes`);
  let text = decodeUtf8Strict(bytes);
  if (text === null) return fail('', 'is not valid UTF-8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  // Python's json writes NaN / Infinity literals, which JSON does not allow: name the key.
  const nonFinite = /"((?:[^"\\]|\\.)*)"\s*:\s*(-?(?:NaN|Infinity))/.exec(text);
  if (nonFinite) fail(nonFinite[1], `is ${nonFinite[2]}; it must be a finite number`);
  let json: JsonValue;
  try {
    json = parseStrictJson(text);
  } catch (error) {
    if (!(error instanceof StrictJsonError)) throw error;
    return fail(error.key ?? error.path.join('.'), `is not valid JSON: ${error.message}`);
  }
  if (!(json instanceof Map)) return fail('', `must hold a JSON object, not ${describeJson(json)}`);
  const config = json as JsonObject;
  const get = (key: string): JsonValue | undefined => config.get(key);

  const peftType = get('peft_type');
  if (peftType === undefined) fail('peft_type', 'is missing');
  if (peftType !== 'LORA') fail('peft_type', `is ${describe(peftType!)}; only "LORA" adapters can be imported`, UnsupportedAdapterError);
  const taskType = get('task_type');
  if (taskType !== undefined && taskType !== null && taskType !== 'CAUSAL_LM') {
    fail('task_type', `is ${describe(taskType)}; only CAUSAL_LM adapters fit a causal language model`, UnsupportedAdapterError);
  }
  for (const [key, isSet] of Object.entries(UNSUPPORTED)) {
    const value = get(key);
    if (value !== undefined && isSet(value)) fail(key, `is ${describe(value)}: this option is not supported`, UnsupportedAdapterError);
  }
  const init = get('init_lora_weights');
  if (typeof init === 'string' && /^(pissa|olora|corda|loftq)/i.test(init)) {
    fail('init_lora_weights', `is ${describe(init)}: that init changes the base weights, so the adapter needs its residual base model`, UnsupportedAdapterError);
  }

  const r = integer(get('r'), (detail) => fail('r', detail));
  if (r <= 0) fail('r', `is ${r}; the rank must be positive`);
  const alpha = get('lora_alpha') === undefined ? 8 : finite(get('lora_alpha')!, (detail) => fail('lora_alpha', detail));
  if (alpha === 0) fail('lora_alpha', 'is 0; the adapter would do nothing');
  const dropout = get('lora_dropout') === undefined ? 0 : finite(get('lora_dropout')!, (detail) => fail('lora_dropout', detail));
  if (!(dropout >= 0 && dropout < 1)) fail('lora_dropout', `is ${dropout}; it must be in [0, 1)`);
  const useRslora = boolean(get('use_rslora'), false, (detail) => fail('use_rslora', detail));
  const fanInFanOut = boolean(get('fan_in_fan_out'), false, (detail) => fail('fan_in_fan_out', detail));
  const bias = get('bias') ?? 'none';
  if (bias !== 'none') fail('bias', `is ${describe(bias)}; only "none" is supported (no trained biases)`, UnsupportedAdapterError);
  const base = get('base_model_name_or_path') ?? null;
  if (base !== null && typeof base !== 'string') fail('base_model_name_or_path', `must be a string or null, got ${describe(base)}`);

  const warnings = [...config.keys()]
    .filter((key) => !PARSED.has(key) && !IGNORED.has(key) && !(key in UNSUPPORTED))
    .map((key) => `${file}: unknown key ${JSON.stringify(key)} ignored`);

  return {
    lora: {
      r,
      alpha,
      dropout,
      useRslora,
      targetModules: modules(get('target_modules'), (detail) => fail('target_modules', detail)),
      excludeModules: modules(get('exclude_modules'), (detail) => fail('exclude_modules', detail)),
      layersToTransform: layers(get('layers_to_transform'), (detail) => fail('layers_to_transform', detail)),
      layersPattern: names(get('layers_pattern'), (detail) => fail('layers_pattern', detail)),
    },
    baseModelNameOrPath: base as string | null,
    fanInFanOut,
    warnings,
  };
}

type Fail = (detail: string) => never;

function describe(value: JsonValue): string {
  return typeof value === 'string' ? JSON.stringify(value) : value instanceof JsonNumber ? value.text : describeJson(value);
}

function finite(value: JsonValue, fail: Fail): number {
  if (!(value instanceof JsonNumber)) return fail(`must be a number, got ${describe(value)}`);
  if (!Number.isFinite(value.value)) return fail(`is ${value.text}; it must be a finite number`);
  return value.value;
}

function integer(value: JsonValue | undefined, fail: Fail): number {
  if (value === undefined) return fail('is missing');
  const number = finite(value, fail);
  if (!Number.isSafeInteger(number)) return fail(`must be an integer, got ${describe(value)}`);
  return number;
}

function boolean(value: JsonValue | undefined, fallback: boolean, fail: Fail): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') return fail(`must be true or false, got ${describe(value)}`);
  return value;
}

/** null, a string (regex or "all-linear") or a list of names. */
function modules(value: JsonValue | undefined, fail: Fail): string | string[] | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value as string[];
  return fail(`must be a string, a list of strings or null, got ${describe(value)}`);
}

function names(value: JsonValue | undefined, fail: Fail): string | string[] | null {
  return modules(value, fail);
}

function layers(value: JsonValue | undefined, fail: Fail): number | number[] | null {
  if (value === undefined || value === null) return null;
  const one = (item: JsonValue) => {
    const index = integer(item, fail);
    if (index < 0) fail(`holds ${index}; layer indices are non-negative`);
    return index;
  };
  if (Array.isArray(value)) return value.map(one);
  return one(value);
}
