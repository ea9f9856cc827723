import { describe, expect, it } from 'vitest';
import { quoteName } from '../../src/io/errors.ts';
import { bytesSource, readSafetensorsHeader, type SafetensorsDtype, type SafetensorsHeader } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensorsWriter.ts';
import { parseModelConfig, type ModelConfig } from '../../src/models/config.ts';
import { inspectModel } from '../../src/models/load.ts';
import { expectedTensors, planWeights, WeightMismatchError, WeightTooLargeError, type DeviceLimits } from '../../src/models/weights.ts';
import { fixtureFiles, fixtureProvider, MODEL_FIXTURES, withConfig, type ModelFixture } from './helpers.ts';

const ROOMY: DeviceLimits = { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 32 };

const configOf = (fixture: ModelFixture) => parseModelConfig(fixtureFiles(fixture).get('config.json')!);

/** A real safetensors header for tensors of the given names, shapes and dtypes (zero data). */
async function header(file: string, tensors: [string, readonly number[], SafetensorsDtype?][]): Promise<SafetensorsHeader> {
  const bytes = writeSafetensors(
    tensors.map(([name, shape, dtype = 'F32']) => {
      const count = shape.reduce((a, b) => a * b, 1);
      return { name, shape, dtype, data: dtype === 'U8' ? new Uint8Array(count) : new Float32Array(count) };
    }),
  );
  return readSafetensorsHeader(bytesSource(bytes), file);
}

/** The tensors a config expects, as one header, after `edit` (which may add, drop or change entries). */
async function headersFor(config: ModelConfig, edit: (list: [string, readonly number[], SafetensorsDtype?][]) => void = () => {}) {
  const list: [string, readonly number[], SafetensorsDtype?][] = expectedTensors(config).map((t) => [t.name, t.shape]);
  edit(list);
  return new Map([['model.safetensors', await header('model.safetensors', list)]]);
}

function catchError<T>(run: () => unknown, errorClass: new (...args: never[]) => T): T {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(errorClass);
    return error as T;
  }
  throw new Error(`expected a ${errorClass.name}`);
}

async function catchAsync<T>(run: () => Promise<unknown>, errorClass: new (...args: never[]) => T): Promise<T> {
  try {
    await run();
  } catch (error) {
    expect(error).toBeInstanceOf(errorClass);
    return error as T;
  }
  throw new Error(`expected a ${errorClass.name}`);
}

describe('weight plans of the fixtures', () => {
  it('every fixture matches its config exactly', async () => {
    for (const fixture of MODEL_FIXTURES) {
      const { config, plan } = await inspectModel(fixtureProvider(fixture), ROOMY);
      const expected = expectedTensors(config);
      expect(plan.tensors.map((t) => t.name).sort(), fixture).toEqual(expected.map((t) => t.name).sort());
      expect(plan.parameterCount).toBe(expected.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0));
      expect(plan.f32Bytes).toBe(plan.parameterCount * 4);
    }
  });

  it('GPT-2 without the transformer. prefix binds the prefixed names and ignores the mask buffers', async () => {
    const { plan } = await inspectModel(fixtureProvider('gpt2-noprefix-sharded'), ROOMY);
    const wte = plan.tensors.find((t) => t.name === 'transformer.wte.weight')!;
    expect(wte.fileName).toBe('wte.weight');
    expect(new Set(plan.tensors.map((t) => t.file))).toEqual(new Set(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']));
    expect([...plan.ignored].sort()).toEqual(['h.0.attn.bias', 'h.0.attn.masked_bias', 'h.1.attn.bias', 'h.1.attn.masked_bias']);
    // Streaming order: file by file, data order within each.
    const order = plan.tensors.map((t) => [t.file, t.entry.byteOffset] as const);
    const sorted = [...order].sort((a, b) => (a[0] === b[0] ? a[1] - b[1] : a[0] < b[0] ? -1 : 1));
    expect(order).toEqual(sorted);
  });

  it('mask buffers with the transformer. prefix are ignored too; a tied head copy is ignored', async () => {
    const gpt2 = configOf('gpt2');
    const headers = await headersFor(gpt2, (list) => {
      list.push(['transformer.h.0.attn.bias', [1, 1, 64, 64], 'U8'], ['transformer.h.0.attn.masked_bias', []], ['lm_head.weight', [97, 32]]);
    });
    expect([...planWeights(gpt2, headers, ROOMY).ignored].sort()).toEqual(['lm_head.weight', 'transformer.h.0.attn.bias', 'transformer.h.0.attn.masked_bias']);
  });
});

describe('names or shapes that do not fit config.json: one error listing everything', () => {
  it('lists missing, unexpected, mis-shaped and non-float tensors together', async () => {
    const llama = configOf('llama');
    const headers = await headersFor(llama, (list) => {
      list.splice(list.findIndex(([name]) => name === 'model.layers.1.mlp.up_proj.weight'), 1);
      list.push(['model.layers.0.self_attn.rotary_emb.inv_freq', [4]]);
      list[list.findIndex(([name]) => name === 'model.norm.weight')] = ['model.norm.weight', [33]];
      list[list.findIndex(([name]) => name === 'lm_head.weight')] = ['lm_head.weight', [101, 32], 'U8'];
    });
    const error = catchError(() => planWeights(llama, headers, ROOMY), WeightMismatchError);
    expect(error.missing).toEqual(['model.layers.1.mlp.up_proj.weight']);
    expect(error.unexpected).toEqual(['model.layers.0.self_attn.rotary_emb.inv_freq']);
    expect(error.misshaped).toEqual([{ name: 'model.norm.weight', file: 'model.safetensors', expected: [32], actual: [33] }]);
    expect(error.mistyped).toEqual([{ name: 'lm_head.weight', file: 'model.safetensors', dtype: 'U8' }]);
    expect(error.file).toBe('model.safetensors');
    expect(error.configFile).toBe('config.json');
    for (const text of [
      '1 missing: "model.layers.1.mlp.up_proj.weight"',
      '1 unexpected: "model.layers.0.self_attn.rotary_emb.inv_freq"',
      '"model.norm.weight" is [33], expected [32]',
      '"lm_head.weight" is U8',
      quoteName('config.json'),
    ]) {
      expect(error.message).toContain(text);
    }
  });

  it('a config with more layers than the file: the missing layer is listed', async () => {
    const error = await catchAsync(() => inspectModel(withConfig('gpt2', (c) => (c.n_layer = 3)), ROOMY), WeightMismatchError);
    expect(error.missing).toHaveLength(12);
    expect(error.missing.every((name) => name.startsWith('transformer.h.2.'))).toBe(true);
    expect(error.unexpected).toEqual([]);
    expect(error.message).toMatch(/^"model.safetensors": the tensors do not fit "config.json": 12 missing: "transformer.h.2.ln_1.weight"/);
  });

  it('fewer layers: the extra ones are unexpected (names as in the file, here without the prefix)', async () => {
    const error = await catchAsync(() => inspectModel(withConfig('gpt2-noprefix-sharded', (c) => (c.n_layer = 1)), ROOMY), WeightMismatchError);
    expect(error.unexpected).toHaveLength(12); // h.1.*: 12 parameters; its mask buffers are still ignored
    expect(error.unexpected.every((name) => name.startsWith('h.1.'))).toBe(true);
    expect(error.file).toBe('model-00001-of-00002.safetensors, model-00002-of-00002.safetensors');
  });

  it('a vocabulary size that differs from the embedding: mis-shaped', async () => {
    const error = await catchAsync(() => inspectModel(withConfig('llama', (c) => (c.vocab_size = 128)), ROOMY), WeightMismatchError);
    expect(error.misshaped.map((t) => t.name)).toEqual(['model.embed_tokens.weight', 'lm_head.weight']);
    expect(error.misshaped[0]).toMatchObject({ expected: [128, 32], actual: [101, 32] });
  });

  it('an untied config over a tied checkpoint: lm_head.weight missing', async () => {
    const error = await catchAsync(() => inspectModel(withConfig('qwen2', (c) => (c.tie_word_embeddings = false)), ROOMY), WeightMismatchError);
    expect(error.missing).toEqual(['lm_head.weight']);
  });

  it('Qwen2 weights under a Llama config: the q/k/v biases are unexpected', async () => {
    const error = await catchAsync(() => inspectModel(withConfig('qwen2', (c) => (c.model_type = 'llama')), ROOMY), WeightMismatchError);
    expect(error.unexpected).toHaveLength(6);
    expect(error.unexpected.every((name) => /self_attn\.[qkv]_proj\.bias$/.test(name))).toBe(true);
  });

  it('GPT-2 names both with and without the prefix: the other form is unexpected', async () => {
    const gpt2 = configOf('gpt2');
    const headers = await headersFor(gpt2, (list) => list.push(['ln_f.weight', [32]]));
    expect(catchError(() => planWeights(gpt2, headers, ROOMY), WeightMismatchError).unexpected).toEqual(['ln_f.weight']);
  });

  it('a GPT-2 file without the prefix that lacks the embedding: only the embedding is missing', async () => {
    const gpt2 = configOf('gpt2');
    const headers = await headersFor(gpt2, (list) => {
      list.splice(0, 1); // transformer.wte.weight
      for (const entry of list) entry[0] = entry[0].replace(/^transformer\./, '');
    });
    const error = catchError(() => planWeights(gpt2, headers, ROOMY), WeightMismatchError);
    expect(error.missing).toEqual(['wte.weight']);
    expect(error.unexpected).toEqual([]);
  });

  it('head_dim changes the projection shapes', async () => {
    const q = expectedTensors(configOf('llama')).find((t) => t.name === 'model.layers.0.self_attn.q_proj.weight')!;
    expect(q.shape).toEqual([32, 32]);
    const llama3 = expectedTensors(configOf('llama3'));
    expect(llama3.find((t) => t.name === 'model.layers.0.self_attn.q_proj.weight')!.shape).toEqual([64, 32]); // 4 heads × 16
    expect(llama3.find((t) => t.name === 'model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([16, 32]); // 1 kv head
    expect(llama3.find((t) => t.name === 'model.layers.0.self_attn.o_proj.weight')!.shape).toEqual([32, 64]);
    expect(llama3.find((t) => t.name === 'model.layers.0.mlp.down_proj.bias')!.shape).toEqual([32]);
  });
});

describe('device limits', () => {
  it('a tensor larger than a binding allows: "needs X bytes, device allows Y", before any upload', async () => {
    const limits = { maxStorageBufferBindingSize: 10_000, maxBufferSize: 2 ** 32 };
    const error = await catchAsync(() => inspectModel(fixtureProvider('gpt2'), limits), WeightTooLargeError);
    // wte [97, 32] and c_attn.weight [32, 96] as f32; wpe [64, 32] is 8192 bytes and fits.
    expect(error.tensors.map((t) => [t.name, t.bytes])).toEqual([
      ['transformer.wte.weight', 12416],
      ['transformer.h.0.attn.c_attn.weight', 12288],
      ['transformer.h.1.attn.c_attn.weight', 12288],
    ]);
    expect(error.message).toContain('tensor "transformer.wte.weight" needs 12416 bytes');
    expect(error.message).toContain('the device allows 10000 bytes (maxStorageBufferBindingSize)');
    expect(error.allowed).toBe(10_000);
  });

  it('the buffer pool rounds sizes up: the rounded size must fit maxBufferSize', async () => {
    const limits = { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 12_416 };
    const error = await catchAsync(() => inspectModel(fixtureProvider('gpt2'), limits), WeightTooLargeError);
    expect(error.limit).toBe('maxBufferSize');
    expect(error.tensors[0]).toMatchObject({ name: 'transformer.wte.weight', bytes: 16384 });
  });
});
