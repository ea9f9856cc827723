// Which linear modules a LoRA adapter wraps, chosen exactly as PEFT's check_target_module_exists does.
// Module paths are the Hugging Face ones of the *ForCausalLM class (`model.layers.3.self_attn.q_proj`,
// `transformer.h.0.attn.c_attn`), i.e. the keys of model.linears(); the output head is never one of them.
//   - a list of names: a path equal to an entry, or ending in "." + entry ("q_proj" matches
//     "model.layers.0.self_attn.q_proj"); layers_to_transform then keeps only those layer indices;
//   - a string: a regular expression that must match the whole path (layers_to_transform does not apply,
//     as in PEFT);
//   - "all-linear": the list of the last names of every linear module (the head is not among them).
// exclude_modules (same forms) removes paths first. Defaults per architecture when nothing is given.

import type { ModelType } from '../models/config.ts';

export type TargetModules = string | readonly string[];

export interface TargetSpec {
  /** null or absent: the architecture's default (PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
  targetModules?: TargetModules | null;
  excludeModules?: TargetModules | null;
  /** Layer indices to adapt (an integer or a list); null or an empty list: every layer. */
  layersToTransform?: number | readonly number[] | null;
  /** The name before the layer index (`layers`, `h`); null: any name. */
  layersPattern?: string | readonly string[] | null;
}

export const ALL_LINEAR = 'all-linear';

const DEFAULT_TARGETS: Record<ModelType, readonly string[]> = {
  llama: ['q_proj', 'v_proj'],
  mistral: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
  gpt2: ['c_attn'],
};

/** A target specification that is malformed or selects nothing; `patterns` are the ones that were tried. */
export class TargetSelectionError extends Error {
  constructor(
    message: string,
    readonly patterns: TargetModules | null,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** No linear module matched: the message names the patterns and a few of the module paths. */
export class NoTargetModulesError extends TargetSelectionError {}

export function defaultTargetModules(modelType: ModelType): string[] {
  return [...DEFAULT_TARGETS[modelType]];
}

export interface TargetSelection {
  /** The wrapped module paths, in model order. */
  paths: string[];
  /** target_modules as PEFT saves it: the list (sorted, as PEFT turns it into a set) or the regex string. */
  targetModules: TargetModules;
}

/**
 * The module paths among `linearPaths` that `spec` selects. Throws TargetSelectionError on a malformed
 * spec and NoTargetModulesError when nothing matches.
 */
export function selectTargets(linearPaths: readonly string[], modelType: ModelType, spec: TargetSpec = {}): TargetSelection {
  const targetModules = resolveTargetModules(linearPaths, modelType, spec.targetModules ?? null);
  const matchTarget = moduleMatcher(targetModules, 'target_modules');
  const matchExcluded = spec.excludeModules ? moduleMatcher(checkModules(spec.excludeModules, 'exclude_modules'), 'exclude_modules') : null;
  const layers = checkLayers(spec.layersToTransform ?? null);
  const patterns = checkLayersPattern(spec.layersPattern ?? null);

  const paths = linearPaths.filter((path) => {
    if (matchExcluded && matchExcluded(path) !== 'none') return false;
    const how = matchTarget(path);
    if (how === 'none') return false;
    // PEFT restricts layers only for list entries matched as a suffix.
    if (how !== 'suffix' || layers === null) return true;
    const index = layerIndex(path, patterns);
    return index !== null && layers.has(index);
  });
  if (paths.length === 0) {
    const shown = linearPaths.slice(0, 6).map((p) => JSON.stringify(p)).join(', ');
    const restriction = layers ? ` in layers [${[...layers].join(', ')}]` : '';
    throw new NoTargetModulesError(
      `target modules ${describeModules(targetModules)}${restriction} match none of the model's ${linearPaths.length} linear modules (${shown}${linearPaths.length > 6 ? ', …' : ''})`,
      targetModules,
    );
  }
  return { paths, targetModules };
}

/** The layer index in a module path: the number after the last `<name>.` (or after one of `patterns`). */
export function layerIndex(path: string, patterns: readonly string[] | null = null): number | null {
  const candidates = patterns && patterns.length ? patterns.map((p) => new RegExp(`^.*\\.${escapeRegex(p)}\\.(\\d+)\\.`)) : [/^.*\.[^.]*\.(\d+)\./];
  for (const pattern of candidates) {
    const match = pattern.exec(path);
    if (match) return Number(match[1]);
  }
  return null;
}

/** "all-linear" → the last names of the modules; null → the defaults; otherwise the spec, checked. */
function resolveTargetModules(linearPaths: readonly string[], modelType: ModelType, targets: TargetModules | null): TargetModules {
  if (targets === null) return defaultTargetModules(modelType);
  const checked = checkModules(targets, 'target_modules');
  if (typeof checked === 'string' && checked.toLowerCase() === ALL_LINEAR) {
    return [...new Set(linearPaths.map((path) => path.slice(path.lastIndexOf('.') + 1)))].sort();
  }
  return typeof checked === 'string' ? checked : [...new Set(checked)].sort();
}

function checkModules(modules: TargetModules, field: string): TargetModules {
  if (typeof modules === 'string') {
    if (modules.length === 0) throw new TargetSelectionError(`${field}: an empty string selects nothing`, modules);
    return modules;
  }
  if (!Array.isArray(modules) || modules.length === 0 || modules.some((m) => typeof m !== 'string' || m.length === 0)) {
    throw new TargetSelectionError(`${field} must be a regex string, "${ALL_LINEAR}" or a non-empty list of module names, got ${JSON.stringify(modules)}`, null);
  }
  return modules;
}

type MatchKind = 'none' | 'exact' | 'suffix' | 'regex';

function moduleMatcher(modules: TargetModules, field: string): (path: string) => MatchKind {
  if (typeof modules === 'string') {
    let regex: RegExp;
    try {
      regex = new RegExp(`^(?:${modules})$`);
    } catch (error) {
      throw new TargetSelectionError(`${field}: ${JSON.stringify(modules)} is not a valid regular expression (${(error as Error).message})`, modules);
    }
    return (path) => (regex.test(path) ? 'regex' : 'none');
  }
  const names = new Set(modules);
  return (path) => (names.has(path) ? 'exact' : modules.some((name) => path.endsWith(`.${name}`)) ? 'suffix' : 'none');
}

function checkLayers(layers: number | readonly number[] | null): Set<number> | null {
  if (layers === null) return null;
  const list = typeof layers === 'number' ? [layers] : layers;
  if (!Array.isArray(list) || list.some((i) => !Number.isSafeInteger(i) || i < 0)) {
    throw new TargetSelectionError(`layers_to_transform must be a non-negative integer or a list of them, got ${JSON.stringify(layers)}`, null);
  }
  return list.length === 0 ? null : new Set(list);
}

function checkLayersPattern(pattern: string | readonly string[] | null): string[] | null {
  if (pattern === null) return null;
  const list = typeof pattern === 'string' ? [pattern] : [...pattern];
  if (list.some((p) => typeof p !== 'string' || p.length === 0)) {
    throw new TargetSelectionError(`layers_pattern must be a name or a list of names, got ${JSON.stringify(pattern)}`, null);
  }
  return list.length ? list : null;
}

function describeModules(modules: TargetModules): string {
  return typeof modules === 'string' ? `regex ${JSON.stringify(modules)}` : `[${modules.map((m) => JSON.stringify(m)).join(', ')}]`;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
