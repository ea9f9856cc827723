// PEFT's target selection on the module paths of the fixture architectures: names (exact or "." suffix),
// a regex that must match the whole path, "all-linear", layers_to_transform / layers_pattern (list form
// only, as in PEFT), exclude_modules, per-architecture defaults, and typed errors naming the patterns.

import { describe, expect, it } from 'vitest';
import { layerIndex, NoTargetModulesError, selectTargets, TargetSelectionError } from '../../src/peft/targets.ts';

const llama = [0, 1, 2].flatMap((i) =>
  ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'].map((n) => `model.layers.${i}.${n}`),
);
const gpt2 = [0, 1].flatMap((i) => ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'].map((n) => `transformer.h.${i}.${n}`));

describe('selectTargets', () => {
  it('defaults per architecture: q_proj, v_proj for the Llama family, c_attn for GPT-2', () => {
    for (const type of ['llama', 'mistral', 'qwen2'] as const) {
      const { paths, targetModules } = selectTargets(llama, type);
      expect(targetModules).toEqual(['q_proj', 'v_proj']);
      expect(paths).toEqual(llama.filter((p) => /\.(q|v)_proj$/.test(p)));
    }
    expect(selectTargets(gpt2, 'gpt2')).toEqual({ paths: ['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn'], targetModules: ['c_attn'] });
  });

  it('a list matches names exactly or as a "." suffix, never as a bare substring', () => {
    expect(selectTargets(gpt2, 'gpt2', { targetModules: ['c_proj'] }).paths).toEqual([
      'transformer.h.0.attn.c_proj',
      'transformer.h.0.mlp.c_proj',
      'transformer.h.1.attn.c_proj',
      'transformer.h.1.mlp.c_proj',
    ]);
    expect(selectTargets(gpt2, 'gpt2', { targetModules: ['mlp.c_proj'] }).paths).toEqual(['transformer.h.0.mlp.c_proj', 'transformer.h.1.mlp.c_proj']);
    expect(selectTargets(gpt2, 'gpt2', { targetModules: ['transformer.h.1.attn.c_attn'] }).paths).toEqual(['transformer.h.1.attn.c_attn']);
    expect(() => selectTargets(gpt2, 'gpt2', { targetModules: ['proj'] })).toThrow(NoTargetModulesError); // "c_proj" does not end in ".proj"
    // Saved as PEFT saves a set: sorted, without duplicates.
    expect(selectTargets(llama, 'llama', { targetModules: ['v_proj', 'q_proj', 'v_proj'] }).targetModules).toEqual(['q_proj', 'v_proj']);
  });

  it('a string is a regex that must match the whole path', () => {
    const { paths, targetModules } = selectTargets(llama, 'llama', { targetModules: String.raw`.*\.layers\.[12]\.self_attn\.(q|k)_proj` });
    expect(targetModules).toBe(String.raw`.*\.layers\.[12]\.self_attn\.(q|k)_proj`);
    expect(paths).toEqual(['model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.k_proj', 'model.layers.2.self_attn.q_proj', 'model.layers.2.self_attn.k_proj']);
    expect(() => selectTargets(llama, 'llama', { targetModules: 'q_proj' })).toThrow(NoTargetModulesError); // not a full match
    expect(selectTargets(llama, 'llama', { targetModules: 'model.layers.0.mlp.up_proj|.*down_proj' }).paths).toEqual(['model.layers.0.mlp.up_proj', 'model.layers.0.mlp.down_proj', 'model.layers.1.mlp.down_proj', 'model.layers.2.mlp.down_proj']);
    expect(() => selectTargets(llama, 'llama', { targetModules: '(' })).toThrow(TargetSelectionError);
  });

  it('"all-linear" is every linear module, saved as their names; the output head is not a module here', () => {
    const { paths, targetModules } = selectTargets(gpt2, 'gpt2', { targetModules: 'all-linear' });
    expect(paths).toEqual(gpt2);
    expect(targetModules).toEqual(['c_attn', 'c_fc', 'c_proj']);
    expect(selectTargets(llama, 'llama', { targetModules: 'ALL-LINEAR' }).paths).toEqual(llama);
  });

  it('layers_to_transform keeps the listed layer indices (list targets only, as PEFT), with layers_pattern', () => {
    expect(selectTargets(llama, 'llama', { layersToTransform: [0, 2] }).paths).toEqual([
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.self_attn.v_proj',
      'model.layers.2.self_attn.q_proj',
      'model.layers.2.self_attn.v_proj',
    ]);
    expect(selectTargets(gpt2, 'gpt2', { targetModules: 'all-linear', layersToTransform: 1 }).paths).toEqual(gpt2.filter((p) => p.includes('.h.1.')));
    expect(selectTargets(llama, 'llama', { targetModules: ['q_proj'], layersToTransform: [1], layersPattern: 'layers' }).paths).toEqual(['model.layers.1.self_attn.q_proj']);
    expect(() => selectTargets(llama, 'llama', { targetModules: ['q_proj'], layersToTransform: [1], layersPattern: ['h'] })).toThrow(NoTargetModulesError);
    // A regex is not restricted by layers_to_transform in PEFT.
    expect(selectTargets(llama, 'llama', { targetModules: '.*q_proj', layersToTransform: [1] }).paths.length).toBe(3);
    expect(() => selectTargets(llama, 'llama', { layersToTransform: [-1] })).toThrow(TargetSelectionError);
    expect(selectTargets(llama, 'llama', { layersToTransform: [] }).paths.length).toBe(6); // empty: every layer
    expect(layerIndex('transformer.h.12.attn.c_attn')).toBe(12);
    expect(layerIndex('lm_head')).toBeNull();
  });

  it('exclude_modules removes modules first', () => {
    expect(selectTargets(gpt2, 'gpt2', { targetModules: 'all-linear', excludeModules: ['mlp.c_proj', 'c_fc'] }).paths).toEqual([
      'transformer.h.0.attn.c_attn',
      'transformer.h.0.attn.c_proj',
      'transformer.h.1.attn.c_attn',
      'transformer.h.1.attn.c_proj',
    ]);
  });

  it('nothing matched: a NoTargetModulesError naming the patterns, the layers and some module paths', () => {
    try {
      selectTargets(llama, 'llama', { targetModules: ['c_attn', 'query'], layersToTransform: [5] });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(NoTargetModulesError);
      const message = (error as Error).message;
      expect(message).toContain('target modules ["c_attn", "query"] in layers [5] match none of the model\'s 21 linear modules');
      expect(message).toContain('"model.layers.0.self_attn.q_proj"');
      expect((error as NoTargetModulesError).patterns).toEqual(['c_attn', 'query']);
    }
    expect(() => selectTargets(llama, 'llama', { targetModules: [] })).toThrow(TargetSelectionError);
    expect(() => selectTargets(llama, 'llama', { targetModules: '' })).toThrow(TargetSelectionError);
  });
});
