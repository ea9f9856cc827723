// The curated catalog's figures and the memory estimate: parameter counts and file sizes computed from the
// configs must equal the published ones, NF4 sizes must equal what quantizeOnGpu allocates, and the refusals
// must name the limit that refuses.

import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../src/models/config.ts';
import { quantizeOnGpu } from '../../src/quant/gpuQuantize.ts';
import { CATALOG, describeCatalog } from '../../src/worker/catalog.ts';
import { estimateInference, nf4WeightParts } from '../../src/worker/memoryEstimate.ts';
import { testEngine } from '../helpers/gpu.ts';

describe('catalog', () => {
  const entries = new Map(describeCatalog(null).map((entry) => [entry.id, entry]));

  it('computes the parameter counts the model cards publish', () => {
    expect(entries.get('HuggingFaceTB/SmolLM2-135M-Instruct')!.parameterCount).toBe(134_515_008);
    expect(entries.get('HuggingFaceTB/SmolLM2-360M-Instruct')!.parameterCount).toBe(361_821_120);
    expect(entries.get('Qwen/Qwen2.5-0.5B-Instruct')!.parameterCount).toBe(494_032_768);
    expect(entries.get('TinyLlama/TinyLlama-1.1B-Chat-v1.0')!.parameterCount).toBe(1_100_048_384);
    expect(entries.get('openai-community/gpt2')!.parameterCount).toBe(124_439_808);
  });

  it('computes download sizes from the stored dtype (GPT-2 also stores its causal masks)', () => {
    expect(entries.get('HuggingFaceTB/SmolLM2-135M-Instruct')!.downloadBytes).toBe(134_515_008 * 2);
    // 124 439 808 f32 parameters + 12 masks of 1024² f32; the hub's file is 548 105 171 bytes with its header.
    expect(entries.get('openai-community/gpt2')!.downloadBytes).toBe(548_090_880);
  });

  it('needs less memory with NF4 linear layers, and every entry is estimated against no device without refusal', () => {
    for (const entry of entries.values()) {
      expect(entry.nf4.totalBytes).toBeLessThan(entry.f32.totalBytes);
      expect(entry.f32.parts[0].bytes).toBeGreaterThanOrEqual(entry.parameterCount * 4);
      expect(entry.f32.refusal).toBeNull();
    }
    expect(entries.size).toBe(CATALOG.length);
  });
});

describe('memory estimate', () => {
  const tiny = parseModelConfig(
    JSON.stringify({ model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 1000, max_position_embeddings: 128 }),
  );

  it('sizes the KV cache for the context it holds', () => {
    const estimate = estimateInference(tiny, 'f32', null);
    // 2 layers · (keys + values) · 128 positions · 4 heads · 16 dims · 4 bytes
    expect(estimate.parts[1]).toEqual({ label: 'KV cache (128 positions)', bytes: 2 * 2 * 128 * 4 * 16 * 4 });
    expect(estimate.largestTensor).toEqual({ name: 'model.embed_tokens.weight', bytes: 1000 * 64 * 4 });
  });

  it('refuses for certain when a tensor exceeds the binding limit, and overridably over the budget', () => {
    const limit = estimateInference(tiny, 'f32', { maxBindingBytes: 100_000, maxBufferBytes: 2 ** 30, memoryBudgetBytes: null });
    expect(limit.refusal).toMatch(/model\.embed_tokens\.weight needs 0\.2 MiB in one buffer, but this device allows at most 0\.1 MiB/);
    expect(limit.refusalOverridable).toBe(false);
    const budget = estimateInference(tiny, 'f32', { maxBindingBytes: 2 ** 30, maxBufferBytes: 2 ** 30, memoryBudgetBytes: 1_000_000 });
    expect(budget.refusal).toMatch(/more than the 1\.0 MiB this device is assumed to have/);
    expect(budget.refusalOverridable).toBe(true);
    const fits = estimateInference(tiny, 'f32', { maxBindingBytes: 2 ** 30, maxBufferBytes: 2 ** 30, memoryBudgetBytes: 2 ** 30 });
    expect(fits.refusal).toBeNull();
  });

  it('counts an NF4 weight as exactly the buffers quantizeOnGpu allocates', async () => {
    const engine = await testEngine();
    for (const [rows, cols] of [
      [64, 64],
      [96, 200],
      [3, 1000],
    ] as const) {
      const held = await engine.scope(async () => {
        const weight = engine.tensor(Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i)), [rows, cols]);
        const q = await quantizeOnGpu(engine, weight, { doubleQuant: true, blocksize: 64 });
        const bytes = q.bytes;
        q.dispose();
        return bytes;
      });
      const parts = nf4WeightParts(rows * cols, 64);
      expect(parts.packed).toBe(held.packed);
      expect(parts.absmaxCodes + parts.absmax2 + parts.tables).toBe(held.state);
    }
  });
});
