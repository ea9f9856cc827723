// PEFT adapter files: every "Adapter import" check of QUALITY.md as a typed error naming the file and the field
// or tensor (nothing is attached when one fails), warnings for what does not change the function, export →
// import round trips bit for bit, non-finite weights never written, and Python's json.dumps reproduced.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesSource, readSafetensors } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensorsWriter.ts';
import { DenseLinear } from '../../src/models/linear.ts';
import { loadModel } from '../../src/models/load.ts';
import type { CausalLM } from '../../src/models/model.ts';
import {
  AdapterConfigError,
  AdapterFilesError,
  AdapterTensorError,
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  NonFiniteAdapterError,
  UnsupportedAdapterError,
} from '../../src/peft/adapterErrors.ts';
import { adapterConfigJson, exportLoraAdapter, importLoraAdapter, peftTensorName } from '../../src/peft/peftFiles.ts';
import { attachLora } from '../../src/peft/peftModel.ts';
import { PyFloat, pythonJsonDumps } from '../../src/peft/pythonJson.ts';
import { testEngine } from '../helpers/gpu.ts';
import { randomArray, rng, toF32 } from '../helpers/numeric.ts';
import { fixtureProvider } from '../models/helpers.ts';
import { adapterFiles, editJson, filesProvider } from './helpers.ts';

const engine = await testEngine();
let llama: CausalLM;
beforeAll(async () => {
  llama = (await loadModel(engine, fixtureProvider('llama'))).model;
});
afterAll(() => llama.dispose());

type Failure = Error & { file?: string; field?: string; tensor?: string };

/** Import `files` onto the llama fixture, expecting a failure that leaves the model untouched. */
async function failure(files: Map<string, Uint8Array>, model: CausalLM = llama): Promise<Failure> {
  const adapters = engine.memory().adapters;
  try {
    await importLoraAdapter(model, filesProvider(files, 'adapter dir'));
  } catch (error) {
    expect(model.linears().entries().every(([, m]) => m instanceof DenseLinear)).toBe(true);
    expect(engine.memory().adapters).toBe(adapters);
    return error as Failure;
  }
  throw new Error('expected the import to fail');
}

function withConfig(edit: (json: Record<string, unknown>) => void): Map<string, Uint8Array> {
  const files = adapterFiles('llama-qvd');
  files.set(ADAPTER_CONFIG_FILE, editJson(files.get(ADAPTER_CONFIG_FILE)!, edit));
  return files;
}

async function withTensors(edit: (tensors: Map<string, { shape: number[]; data: Float32Array }>) => void): Promise<Map<string, Uint8Array>> {
  const files = adapterFiles('llama-qvd');
  const { tensors } = await readSafetensors(bytesSource(files.get(ADAPTER_WEIGHTS_FILE)!), ADAPTER_WEIGHTS_FILE);
  const map = new Map([...tensors].map(([name, t]) => [name, { shape: [...t.shape], data: t.data as Float32Array }]));
  edit(map);
  files.set(ADAPTER_WEIGHTS_FILE, writeSafetensors([...map].map(([name, t]) => ({ name, dtype: 'F32' as const, ...t })), { format: 'pt' }));
  return files;
}

const A0 = peftTensorName('model.layers.0.self_attn.q_proj', 'A');
const B0 = peftTensorName('model.layers.0.self_attn.q_proj', 'B');

describe('importLoraAdapter refuses, with a typed error naming the file and the field or tensor', () => {
  it('a pickle .bin, without ever opening it; a missing config', async () => {
    const opened: string[] = [];
    const files = new Map([[ADAPTER_CONFIG_FILE, adapterFiles('llama-qvd').get(ADAPTER_CONFIG_FILE)!], ['adapter_model.bin', new Uint8Array([0x80, 0x02])]]);
    const provider = filesProvider(files, 'adapter dir');
    const open = provider.open;
    provider.open = (name) => (opened.push(name), open(name));
    const error = await importLoraAdapter(llama, provider).catch((e: Failure) => e);
    expect(error).toBeInstanceOf(AdapterFilesError);
    expect((error as Failure).message).toContain('"adapter_model.bin" but no adapter_model.safetensors: pickle files are never opened');
    expect(opened).toEqual([]);
    const noConfig = adapterFiles('llama-qvd');
    noConfig.delete(ADAPTER_CONFIG_FILE);
    expect((await failure(noConfig)).field).toBe(ADAPTER_CONFIG_FILE);
  });

  it.each<[string, (json: Record<string, unknown>) => void, typeof AdapterConfigError, string, string]>([
    ['peft_type', (j) => (j.peft_type = 'PREFIX_TUNING'), UnsupportedAdapterError, 'peft_type', 'only "LORA"'],
    ['task_type', (j) => (j.task_type = 'SEQ_CLS'), UnsupportedAdapterError, 'task_type', 'CAUSAL_LM'],
    ['r = 0', (j) => (j.r = 0), AdapterConfigError, 'r', 'must be positive'],
    ['r larger than the layer', (j) => (j.r = 17), AdapterConfigError, 'r', 'r = 17 is larger than model.layers.0.self_attn.v_proj allows (min(in 32, out 16) = 16)'],
    ['r fractional', (j) => (j.r = 4.5), AdapterConfigError, 'r', 'must be an integer'],
    ['lora_alpha 0', (j) => (j.lora_alpha = 0), AdapterConfigError, 'lora_alpha', 'is 0'],
    ['lora_alpha a string', (j) => (j.lora_alpha = '8'), AdapterConfigError, 'lora_alpha', 'must be a number'],
    ['lora_dropout 1', (j) => (j.lora_dropout = 1), AdapterConfigError, 'lora_dropout', '[0, 1)'],
    ['target modules absent from the model', (j) => (j.target_modules = ['c_attn', 'query_key_value']), AdapterConfigError, 'target_modules', 'match none of the model'],
    ['use_dora', (j) => (j.use_dora = true), UnsupportedAdapterError, 'use_dora', 'not supported'],
    ['modules_to_save', (j) => (j.modules_to_save = ['lm_head']), UnsupportedAdapterError, 'modules_to_save', 'not supported'],
    ['rank_pattern', (j) => (j.rank_pattern = { q_proj: 8 }), UnsupportedAdapterError, 'rank_pattern', 'not supported'],
    ['alpha_pattern', (j) => (j.alpha_pattern = { q_proj: 8 }), UnsupportedAdapterError, 'alpha_pattern', 'not supported'],
    ['layer_replication', (j) => (j.layer_replication = [[0, 2]]), UnsupportedAdapterError, 'layer_replication', 'not supported'],
    ['bias', (j) => (j.bias = 'lora_only'), UnsupportedAdapterError, 'bias', 'only "none"'],
    ['PiSSA init', (j) => (j.init_lora_weights = 'pissa'), UnsupportedAdapterError, 'init_lora_weights', 'residual base model'],
  ])('config: %s', async (_, edit, ErrorClass, field, text) => {
    const error = await failure(withConfig(edit));
    expect(error).toBeInstanceOf(ErrorClass);
    expect([error.file, error.field]).toEqual([ADAPTER_CONFIG_FILE, field]);
    expect(error.message).toContain(text);
  });

  it('config: lora_alpha NaN (Python\'s json writes the literal) and malformed JSON', async () => {
    const files = adapterFiles('llama-qvd');
    files.set(ADAPTER_CONFIG_FILE, new TextEncoder().encode(new TextDecoder().decode(files.get(ADAPTER_CONFIG_FILE)).replace('"lora_alpha": 8', '"lora_alpha": NaN')));
    const error = await failure(files);
    expect(error).toBeInstanceOf(AdapterConfigError);
    expect([error.field, error.message]).toEqual(['lora_alpha', expect.stringContaining('is NaN')]);
    files.set(ADAPTER_CONFIG_FILE, new TextEncoder().encode('{"peft_type": "LORA", "r": 4, "r": 8}'));
    expect((await failure(files)).message).toContain('not valid JSON');
  });

  it.each<[string, (t: Map<string, { shape: number[]; data: Float32Array }>) => void, typeof AdapterTensorError, string, string]>([
    ['lora_A not [r, in]', (t) => (t.get(A0)!.shape = [32, 4]), AdapterTensorError, A0, 'is [32, 4], expected lora_A [4, 32] ([r, in] with r = 4)'],
    ['lora_B not [out, r]', (t) => Object.assign(t.get(B0)!, { shape: [16, 4], data: t.get(B0)!.data.slice(0, 64) }), AdapterTensorError, B0, 'expected lora_B [32, 4]'],
    ['an A without its B', (t) => t.delete(B0), AdapterTensorError, A0, 'has no lora_B partner'],
    ['NaN in a weight', (t) => (t.get(B0)!.data[5] = Number.NaN), NonFiniteAdapterError, B0, 'holds NaN at element 5'],
    ['a module the model lacks', (t) => t.set(peftTensorName('model.layers.5.self_attn.q_proj', 'A'), { shape: [4, 32], data: new Float32Array(128) }), AdapterTensorError, peftTensorName('model.layers.5.self_attn.q_proj', 'A'), 'has no LoRA-capable linear'],
    ['the output head', (t) => t.set(peftTensorName('lm_head', 'A'), { shape: [4, 32], data: new Float32Array(128) }), AdapterTensorError, peftTensorName('lm_head', 'A'), 'has no LoRA-capable linear'],
    ['a module target_modules does not select', (t) => t.set(peftTensorName('model.layers.0.self_attn.k_proj', 'A'), { shape: [4, 32], data: new Float32Array(128) }), AdapterTensorError, peftTensorName('model.layers.0.self_attn.k_proj', 'A'), 'do not select'],
    ['a DoRA magnitude vector', (t) => t.set('base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector', { shape: [32], data: new Float32Array(32) }), AdapterConfigError, 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector', 'DoRA'],
    ['a selected module without weights', (t) => (t.delete(A0), t.delete(B0)), AdapterTensorError, A0, 'another base model'],
  ])('weights: %s', async (_, edit, ErrorClass, tensor, text) => {
    const error = await failure(await withTensors(edit));
    expect(error).toBeInstanceOf(ErrorClass);
    expect([error.file, error.tensor]).toEqual([ADAPTER_WEIGHTS_FILE, tensor]);
    expect(error.message).toContain(text);
  });

  it('an adapter made for another base model', async () => {
    const { model: qwen2 } = await loadModel(engine, fixtureProvider('qwen2'));
    try {
      // Qwen2's fixture has down_proj [32 → 32] and v_proj [32 → 32] where llama's has [48 → 32] and [32 → 16].
      const error = await failure(adapterFiles('llama-qvd'), qwen2);
      expect(error).toBeInstanceOf(AdapterTensorError);
      expect(error.tensor).toBe(peftTensorName('model.layers.0.mlp.down_proj', 'A'));
      expect(error.message).toContain('is [4, 48], expected lora_A [4, 32]');
    } finally {
      qwen2.dispose();
    }
    const error = await failure(adapterFiles('gpt2-rslora'));
    expect([error.constructor, error.field]).toEqual([AdapterConfigError, 'target_modules']);
  });
});

describe('importLoraAdapter warns without failing', () => {
  it('when the base model name differs, on unknown keys and on a fan_in_fan_out that does not fit the layers', async () => {
    const files = withConfig((j) => {
      j.some_future_option = 3;
      j.fan_in_fan_out = true;
      j.revision = null;
    });
    const { peft, warnings } = await importLoraAdapter(llama, filesProvider(files), { baseModelName: 'someone/other-model' });
    try {
      expect(warnings).toEqual([
        'adapter_config.json: unknown key "some_future_option" ignored',
        'the adapter was trained on "tests/fixtures/models/llama", but the loaded model is "someone/other-model"',
        expect.stringContaining('fan_in_fan_out is true'),
      ]);
      expect(peft.adapterConfig().paths.length).toBe(6);
    } finally {
      peft.unload();
    }
  });
});

describe('exportLoraAdapter', () => {
  it('export → import gives identical tensors; the config says what was attached', async () => {
    const peft = attachLora(llama, { r: 3, alpha: 12.5, dropout: 0.1, useRslora: true, targetModules: String.raw`.*\.(k_proj|up_proj)` }, { seed: 7 });
    try {
      const random = rng(3);
      for (const [name, tensor] of peft.trainableParameters()) if (name.includes('lora_B')) engine.gpu.upload(tensor.buffer, toF32(randomArray(tensor.size, random)));
      const files = await exportLoraAdapter(peft, { baseModelNameOrPath: 'HuggingFaceTB/SmolLM2-135M' });
      const config = JSON.parse(new TextDecoder().decode(files.get(ADAPTER_CONFIG_FILE)));
      expect(config).toEqual({
        alpha_pattern: {},
        base_model_name_or_path: 'HuggingFaceTB/SmolLM2-135M',
        bias: 'none',
        fan_in_fan_out: false,
        inference_mode: true,
        init_lora_weights: true,
        layers_pattern: null,
        layers_to_transform: null,
        lora_alpha: 12.5,
        lora_dropout: 0.1,
        modules_to_save: null,
        peft_type: 'LORA',
        r: 3,
        rank_pattern: {},
        target_modules: String.raw`.*\.(k_proj|up_proj)`,
        task_type: 'CAUSAL_LM',
        use_dora: false,
        use_rslora: true,
      });
      const imported = await importLoraAdapter(peft, filesProvider(files), { adapterName: 'copy', baseModelName: 'HuggingFaceTB/SmolLM2-135M' });
      expect(imported.warnings).toEqual([]);
      expect(imported.peft).toBe(peft);
      const original = peft.trainableParameters('default');
      const copy = peft.trainableParameters('copy');
      expect(copy.size).toBe(8);
      for (const [name, tensor] of original) {
        const twin = copy.get(name.replace('.default.', '.copy.'))!;
        expect(Buffer.from(((await twin.read()) as Float32Array).buffer).equals(Buffer.from(((await tensor.read()) as Float32Array).buffer)), name).toBe(true);
      }
      expect(peft.adapterConfig('copy')).toEqual({ ...peft.adapterConfig('default') });
    } finally {
      peft.unload();
    }
  });

  it('refuses to write NaN or Inf, naming the tensor', async () => {
    const peft = attachLora(llama, { r: 2, alpha: 4, targetModules: ['o_proj'], layersToTransform: [1] });
    try {
      const [name, B] = [...peft.trainableParameters()][1];
      expect(name).toBe('base_model.model.model.layers.1.self_attn.o_proj.lora_B.default.weight');
      engine.gpu.upload(B.buffer, Float32Array.from({ length: B.size }, (_, i) => (i === 3 ? Number.POSITIVE_INFINITY : 0)));
      const error = await exportLoraAdapter(peft).catch((e: Failure) => e);
      expect(error).toBeInstanceOf(NonFiniteAdapterError);
      expect([(error as Failure).file, (error as Failure).tensor]).toEqual([ADAPTER_WEIGHTS_FILE, 'base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight']);
      expect(adapterConfigJson(peft.adapterConfig())).toContain('"layers_to_transform": [\n    1\n  ]');
    } finally {
      peft.unload();
    }
  });
});

describe('pythonJsonDumps', () => {
  it('matches json.dumps(indent=2, sort_keys=True)', () => {
    const value = { b: [1, new PyFloat(0), new PyFloat(1e-5), new PyFloat(0.1)], a: { y: null, x: true }, 'é€😀': 'naïve "q" \n\u0001\u007f', e: [], d: {} };
    // Python: print(json.dumps({"b": [1, 0.0, 1e-05, 0.1], "a": {"y": None, "x": True}, "é€😀": "naïve \"q\" \n\x01\x7f", "e": [], "d": {}}, indent=2, sort_keys=True))
    expect(pythonJsonDumps(value)).toBe(
      [
        '{',
        '  "a": {',
        '    "x": true,',
        '    "y": null',
        '  },',
        '  "b": [',
        '    1,',
        '    0.0,',
        '    1e-05,',
        '    0.1',
        '  ],',
        '  "d": {},',
        '  "e": [],',
        '  "\\u00e9\\u20ac\\ud83d\\ude00": "na\\u00efve \\"q\\" \\n\\u0001\u007f"',
        '}',
      ].join('\n'),
    );
    expect(() => pythonJsonDumps(0.5)).toThrow(/PyFloat/);
  });
});
