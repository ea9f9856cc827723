// AdapterHub-layout files (src/peft/bottleneckFiles.ts): adapters made and evaluated independently in
// PyTorch (tests/fixtures/peft/make_bottleneck_golden.py, float64, after AdapterHub's code path) load
// through importBottleneckAdapter and reproduce the golden logits within 1e-4; export writes the same
// adapter_config.json text and the same tensors as that script; export → import is exact; bad files get
// typed errors naming the file and the field or tensor, and allocate nothing.

import { afterAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.ts';
import { bytesSource, readSafetensors } from '../../src/io/safetensors.ts';
import { writeSafetensors, type SafetensorsTensorInput } from '../../src/io/safetensorsWriter.ts';
import { tokenTensor, type CausalLM } from '../../src/models/model.ts';
import { BottleneckModel, bottleneckConfig } from '../../src/peft/bottleneckModel.ts';
import {
  ADAPTERS_LAYOUT_VERSION,
  BOTTLENECK_CONFIG_FILE,
  BOTTLENECK_WEIGHTS_FILE,
  BottleneckFileError,
  exportBottleneckAdapter,
  importBottleneckAdapter,
  parseBottleneckConfigFile,
} from '../../src/peft/bottleneckFiles.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { withModel } from '../models/helpers.ts';
import { GOLDEN_CASES, adapterFiles, readAdapterGolden } from './bottleneckHelpers.ts';

const TOLERANCE = 1e-4;
const notes: string[] = [];
afterAll(() => console.info(`bottleneck golden logits, max relative error:\n  ${notes.join('\n  ')}`));

const logitsOf = async (engine: Engine, model: CausalLM, ids: number[][]) =>
  engine.scope(async () => Float32Array.from(await engine.noGrad(() => model.forward(tokenTensor(engine, ids, model.config.vocabSize))).read()));

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

async function tensorsOf(bytes: Uint8Array, file = BOTTLENECK_WEIGHTS_FILE) {
  const { tensors } = await readSafetensors(bytesSource(bytes), file);
  return new Map([...tensors].map(([name, t]) => [name, { shape: [...t.shape], data: Array.from(t.data) }]));
}

describe.each(GOLDEN_CASES)('$name', ({ name, fixture }) => {
  it('imports the PyTorch-made adapter and matches its golden logits; export writes the same files back', async () => {
    const golden = await readAdapterGolden(name);
    expect(golden.shift).toBeGreaterThan(1); // the adapter moves the logits a lot: the comparison means something
    const files = adapterFiles(name);
    await withModel(fixture, async (engine, model) => {
      const adapted = BottleneckModel.attach(model);
      try {
        const imported = await importBottleneckAdapter(adapted, files);
        expect(imported.warnings).toEqual([]);
        expect(adapted.activeAdapter).toBe(imported.name);
        const logits = await logitsOf(engine, model, golden.ids);
        const error = relativeError(logits, golden.logits);
        notes.push(`${name}: ${error.toExponential(2)} (logits moved up to ${golden.shift} by the adapter)`);
        expectClose(logits, golden.logits, TOLERANCE, `${name} logits`);

        // Export: the config text json.dump(indent=2, sort_keys=True) wrote, plus the "architecture": null line
        // and a final newline; the tensors under the same keys, in the same order, with the same values.
        const exported = await exportBottleneckAdapter(adapted, { modelName: `tabtune-fixtures/${fixture}` });
        const written = text(exported.get(BOTTLENECK_CONFIG_FILE)!);
        expect(written).toContain('    "architecture": null,\n');
        expect(written.replace('    "architecture": null,\n', '')).toBe(`${text(files.get(BOTTLENECK_CONFIG_FILE)!)}\n`);
        const ours = await tensorsOf(exported.get(BOTTLENECK_WEIGHTS_FILE)!);
        const theirs = await tensorsOf(files.get(BOTTLENECK_WEIGHTS_FILE)!);
        expect([...ours.keys()]).toEqual([...theirs.keys()]);
        for (const [key, tensor] of theirs) expect(ours.get(key), key).toEqual(tensor);

        // Round trip under another name: identical tensors, identical logits.
        await importBottleneckAdapter(adapted, exported, { loadAs: 'copy' });
        expect(adapted.activeAdapter).toBe('copy');
        const original = adapted.tensors(imported.name);
        const copy = adapted.tensors('copy');
        expect(copy.size).toBe(original.size);
        for (const [key, tensor] of original) {
          const copied = copy.get(key.replace(`.adapters.${imported.name}.`, '.adapters.copy.'))!;
          expect(Array.from(await copied.read()), key).toEqual(Array.from(await tensor.read()));
        }
        expect(adapted.config('copy')).toEqual(adapted.config(imported.name));
        expect(Array.from(await logitsOf(engine, model, golden.ids))).toEqual(Array.from(logits));
      } finally {
        adapted.detach();
      }
    });
  });
});

describe('export of a fresh adapter', () => {
  it('writes AdapterHub key names and shapes for GPT-2 and Llama, scaling as a float, and reads back exactly', async () => {
    for (const fixture of ['gpt2', 'llama'] as const) {
      await withModel(fixture, async (_engine, model) => {
        const adapted = BottleneckModel.attach(model);
        try {
          adapted.addAdapter('fresh', bottleneckConfig('houlsby', { initWeights: 'bert', reductionFactor: 8 }), { seed: 9 });
          const files = await exportBottleneckAdapter(adapted);
          const config = JSON.parse(text(files.get(BOTTLENECK_CONFIG_FILE)!));
          const C = model.config.hiddenSize;
          expect(config).toMatchObject({
            name: 'fresh',
            model_type: fixture,
            hidden_size: C,
            model_class: fixture === 'gpt2' ? 'GPT2LMHeadModel' : 'LlamaForCausalLM',
            model_name: null,
            version: ADAPTERS_LAYOUT_VERSION,
          });
          expect(config.config).toMatchObject({
            mh_adapter: true,
            output_adapter: true,
            reduction_factor: 8,
            non_linearity: 'swish',
            original_ln_before: false,
            original_ln_after: true,
            residual_before_ln: true,
            init_weights: 'bert',
            architecture: null,
          });
          expect(text(files.get(BOTTLENECK_CONFIG_FILE)!)).toContain('"scaling": 1.0,');
          const tensors = await tensorsOf(files.get(BOTTLENECK_WEIGHTS_FILE)!);
          const prefix = fixture === 'gpt2' ? 'transformer.h' : 'model.layers';
          const M = C / 8;
          expect(tensors.get(`${prefix}.1.attention_adapters.adapters.fresh.adapter_down.0.weight`)!.shape).toEqual([M, C]);
          expect(tensors.get(`${prefix}.1.output_adapters.adapters.fresh.adapter_up.weight`)!.shape).toEqual([C, M]);
          expect(tensors.get(`${prefix}.0.output_adapters.adapters.fresh.adapter_up.bias`)!.shape).toEqual([C]);
          expect(tensors.size).toBe(8 * model.config.numLayers);
          const { header } = await readSafetensors(bytesSource(files.get(BOTTLENECK_WEIGHTS_FILE)!), BOTTLENECK_WEIGHTS_FILE);
          expect(header.metadata.get('format')).toBe('pt');
          expect(header.tensors.every((t) => t.dtype === 'F32')).toBe(true);
        } finally {
          adapted.detach();
        }
      });
    }
  });
});

describe('adapter_config.json parsing', () => {
  const base = () => JSON.parse(text(adapterFiles('llama-pfeiffer').get(BOTTLENECK_CONFIG_FILE)!));
  const parse = (json: unknown) => parseBottleneckConfigFile(JSON.stringify(json));

  it('reads the wrapper and the BnConfig fields', () => {
    const parsed = parse(base());
    expect(parsed).toMatchObject({ name: 'task', modelType: 'llama', hiddenSize: 32, modelClass: 'LlamaForCausalLM', version: 'adapters.1.3.0' });
    expect(parsed.config).toMatchObject({ mhAdapter: false, outputAdapter: true, reductionFactor: 4, nonLinearity: 'relu', originalLnBefore: true, initWeights: 'bert' });
  });

  it('applies the legacy renames when "version" is missing, lower-cases the non-linearity, accepts preset ids', () => {
    const legacy = base();
    delete legacy.version;
    legacy.config.non_linearity = 'gelu';
    expect(parse(legacy).config.nonLinearity).toBe('gelu_new');
    legacy.config.non_linearity = 'gelu_orig';
    expect(parse(legacy).config.nonLinearity).toBe('gelu');
    const current = base();
    current.config.non_linearity = 'Swish';
    expect(parse(current).config.nonLinearity).toBe('swish');
    expect(parse({ ...base(), config: 'houlsby' }).config).toMatchObject({ mhAdapter: true, nonLinearity: 'swish' });
    const extra = base();
    extra.config.future_option = 3;
    expect(parse(extra).ignoredKeys).toEqual(['future_option']);
  });

  const refused: [string, (json: Record<string, any>) => void, string][] = [
    ['ln_after', (j) => (j.config.ln_after = true), 'config.ln_after'],
    ['ln_before', (j) => (j.config.ln_before = true), 'config.ln_before'],
    ['original_ln_after', (j) => (j.config.original_ln_after = false), 'config.original_ln_after'],
    ['is_parallel', (j) => (j.config.is_parallel = true), 'config.is_parallel'],
    ['use_gating', (j) => (j.config.use_gating = true), 'config.use_gating'],
    ['phm_layer', (j) => (j.config.phm_layer = true), 'config.phm_layer'],
    ['inv_adapter', (j) => (j.config.inv_adapter = 'nice'), 'config.inv_adapter'],
    ['learned scaling', (j) => (j.config.scaling = 'learned'), 'config.scaling'],
    ['post_add', (j) => (j.config.residual_before_ln = 'post_add'), 'config.residual_before_ln'],
    ['leaky relu', (j) => (j.config.non_linearity = 'leakyrelu'), 'config.non_linearity'],
    ['LoRA architecture', (j) => (j.config.architecture = 'lora'), 'config.architecture'],
    ['zero reduction factor', (j) => (j.config.reduction_factor = 0), 'config.reduction_factor'],
    ['bad layer key', (j) => (j.config.reduction_factor = { first: 2 }), 'config.reduction_factor.first'],
    ['negative leave_out', (j) => (j.config.leave_out = [-1]), 'config.leave_out[0]'],
    ['dropout 1', (j) => (j.config.dropout = 1), 'config.dropout'],
    ['name with a dot', (j) => (j.name = 'a.b'), 'name'],
    ['missing mh_adapter', (j) => delete j.config.mh_adapter, 'config.mh_adapter'],
    ['string hidden size', (j) => (j.hidden_size = '32'), 'hidden_size'],
  ];
  it.each(refused)('refuses %s, naming the field', (_what, edit, field) => {
    const json = base();
    edit(json);
    let error: unknown;
    try {
      parse(json);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(BottleneckFileError);
    expect((error as BottleneckFileError).file).toBe(BOTTLENECK_CONFIG_FILE);
    expect((error as BottleneckFileError).field).toBe(field);
  });

  it('refuses text that is not JSON or not an object', () => {
    expect(() => parseBottleneckConfigFile('{"name": "a",')).toThrow(BottleneckFileError);
    expect(() => parseBottleneckConfigFile('[1]')).toThrow(/must hold a JSON object/);
    expect(() => parseBottleneckConfigFile('{"name": "a", "name": "b", "config": {}}')).toThrow(BottleneckFileError);
  });
});

describe('import of bad folders', () => {
  it('names the file and the field or tensor, and allocates nothing', async () => {
    const good = adapterFiles('llama-pfeiffer');
    const { tensors } = await readSafetensors(bytesSource(good.get(BOTTLENECK_WEIGHTS_FILE)!), BOTTLENECK_WEIGHTS_FILE);
    const entries = (): SafetensorsTensorInput[] =>
      [...tensors.values()].map((t) => ({ name: t.name, dtype: 'F32' as const, shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) }));
    const withWeights = (list: SafetensorsTensorInput[]) => new Map([...good, [BOTTLENECK_WEIGHTS_FILE, writeSafetensors(list)]]);
    const withConfig = (edit: (json: Record<string, any>) => void) => {
      const json = JSON.parse(text(good.get(BOTTLENECK_CONFIG_FILE)!));
      edit(json);
      return new Map([...good, [BOTTLENECK_CONFIG_FILE, new TextEncoder().encode(JSON.stringify(json))]]);
    };
    const first = 'model.layers.0.output_adapters.adapters.task.adapter_down.0.weight';

    const cases: [string, Map<string, Uint8Array>, Partial<BottleneckFileError>][] = [
      ['a tensor missing', withWeights(entries().slice(1)), { file: BOTTLENECK_WEIGHTS_FILE, tensor: first }],
      [
        'an extra tensor',
        withWeights([...entries(), { name: 'model.layers.0.output_adapters.adapters.task.gate.weight', dtype: 'F32', shape: [1], data: new Float32Array(1) }]),
        { file: BOTTLENECK_WEIGHTS_FILE, tensor: 'model.layers.0.output_adapters.adapters.task.gate.weight' },
      ],
      [
        'a wrong shape',
        withWeights(entries().map((e) => (e.name === first ? { ...e, shape: [e.shape[1], e.shape[0]] } : e))),
        { file: BOTTLENECK_WEIGHTS_FILE, tensor: first, field: 'shape' },
      ],
      [
        'a NaN',
        withWeights(entries().map((e) => (e.name === first ? { ...e, data: Float32Array.from(e.data as Float32Array, (v, i) => (i === 3 ? NaN : v)) } : e))),
        { file: BOTTLENECK_WEIGHTS_FILE, tensor: first },
      ],
      [
        'a U8 tensor',
        withWeights(entries().map((e) => (e.name === first ? { ...e, dtype: 'U8' as const, data: new Uint8Array(e.data.length) } : e))),
        { file: BOTTLENECK_WEIGHTS_FILE, tensor: first, field: 'dtype' },
      ],
      ['another architecture', withConfig((j) => (j.model_type = 'gpt2')), { file: BOTTLENECK_CONFIG_FILE, field: 'model_type' }],
      ['another hidden size', withConfig((j) => (j.hidden_size = 64)), { file: BOTTLENECK_CONFIG_FILE, field: 'hidden_size' }],
      ['a config implying other shapes', withConfig((j) => (j.config.reduction_factor = 8)), { file: BOTTLENECK_WEIGHTS_FILE, tensor: first, field: 'shape' }],
      ['a config implying more modules', withConfig((j) => (j.config.mh_adapter = true)), { file: BOTTLENECK_WEIGHTS_FILE }],
      ['a renamed adapter', withConfig((j) => (j.name = 'other')), { file: BOTTLENECK_WEIGHTS_FILE, tensor: first }],
      [
        'only the pickle file',
        new Map([[BOTTLENECK_CONFIG_FILE, good.get(BOTTLENECK_CONFIG_FILE)!], ['pytorch_adapter.bin', new Uint8Array(8)]]),
        { field: BOTTLENECK_WEIGHTS_FILE },
      ],
      ['no config', new Map([[BOTTLENECK_WEIGHTS_FILE, good.get(BOTTLENECK_WEIGHTS_FILE)!]]), { field: BOTTLENECK_CONFIG_FILE }],
    ];

    await withModel('llama', async (engine, model) => {
      const adapted = BottleneckModel.attach(model);
      try {
        for (const [what, files, expected] of cases) {
          let error: unknown;
          try {
            await importBottleneckAdapter(adapted, files);
          } catch (caught) {
            error = caught;
          }
          expect(error, what).toBeInstanceOf(BottleneckFileError);
          expect(error, what).toMatchObject(expected);
          expect(adapted.adapterNames, what).toEqual([]);
          expect(engine.memory().adapters, what).toBe(0);
        }
        // A name already in use is refused before anything is read; loadAs gets around it.
        await importBottleneckAdapter(adapted, good);
        await expect(importBottleneckAdapter(adapted, good)).rejects.toThrow(/already has an adapter named "task"/);
        await importBottleneckAdapter(adapted, good, { loadAs: 'task2', setActive: false });
        expect(adapted.activeAdapter).toBe('task');
      } finally {
        adapted.detach();
      }
    });
  });

  it('accepts keys saved from the bare base model (no `model.` prefix) and legacy module names, like AdapterHub', async () => {
    const golden = await readAdapterGolden('llama-pfeiffer');
    const good = adapterFiles('llama-pfeiffer');
    const { tensors } = await readSafetensors(bytesSource(good.get(BOTTLENECK_WEIGHTS_FILE)!), BOTTLENECK_WEIGHTS_FILE);
    const renamed = [...tensors.values()].map((t, i) => ({
      name: i % 2 === 0 ? t.name.replace(/^model\./, '') : t.name.replace('.adapters.task.', '.layer_text_task_adapters.task.'),
      dtype: 'F32' as const,
      shape: [...t.shape],
      data: t.data as Float32Array,
    }));
    const files = new Map([...good, [BOTTLENECK_WEIGHTS_FILE, writeSafetensors(renamed)]]);
    await withModel('llama', async (engine, model) => {
      const adapted = BottleneckModel.attach(model);
      try {
        await importBottleneckAdapter(adapted, files);
        expectClose(await logitsOf(engine, model, golden.ids), golden.logits, TOLERANCE, 'logits');
      } finally {
        adapted.detach();
      }
    });
  });

  it('export refuses NaN weights instead of writing them', async () => {
    await withModel('gpt2', async (_engine, model) => {
      const adapted = BottleneckModel.attach(model);
      try {
        adapted.addAdapter('broken', 'seq_bn');
        const [key, tensor] = [...adapted.tensors()][2];
        adapted.setWeights('broken', new Map([...adapted.tensors()].map(([k, t]) => [k, new Float32Array(t.size).fill(k === key ? NaN : 0)])));
        expect(tensor.size).toBeGreaterThan(0);
        await expect(exportBottleneckAdapter(adapted)).rejects.toMatchObject({ tensor: key, file: BOTTLENECK_WEIGHTS_FILE });
      } finally {
        adapted.detach();
      }
    });
  });
});
