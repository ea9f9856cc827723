// Test access to the tiny checkpoints of tests/fixtures/models (made by make_tiny_models.py): a folder or
// in-memory file provider, and the golden logits with their token ids.

import { readdirSync, readFileSync } from 'node:fs';
import type { Engine } from '../../src/engine/engine.ts';
import { bytesSource, readSafetensors } from '../../src/io/safetensors.ts';
import { loadModel, type ModelFileProvider } from '../../src/models/load.ts';
import type { CausalLM } from '../../src/models/model.ts';
import { testEngine } from '../helpers/gpu.ts';

export const FIXTURES = new URL('../fixtures/models/', import.meta.url);
export const MODEL_FIXTURES = ['gpt2', 'gpt2-noprefix-sharded', 'llama', 'qwen2', 'llama3'] as const;
export type ModelFixture = (typeof MODEL_FIXTURES)[number];

/** A fixture's files in memory (they are small), so tests can add, drop or replace files. */
export function fixtureFiles(name: ModelFixture): Map<string, Uint8Array> {
  const folder = new URL(`${name}/`, FIXTURES);
  const files = new Map<string, Uint8Array>();
  for (const file of readdirSync(folder).sort()) {
    if (file !== 'golden.safetensors') files.set(file, new Uint8Array(readFileSync(new URL(file, folder))));
  }
  return files;
}

export function memoryProvider(files: Map<string, Uint8Array>, name = 'test model'): ModelFileProvider {
  return {
    name,
    list: async () => [...files.keys()].sort(),
    open: async (file: string) => {
      const bytes = files.get(file);
      if (!bytes) throw new Error(`no file ${file}`);
      return bytesSource(bytes);
    },
  };
}

export function fixtureProvider(name: ModelFixture): ModelFileProvider {
  return memoryProvider(fixtureFiles(name), name);
}

/** fixture files with config.json edited by `edit`. */
export function withConfig(name: ModelFixture, edit: (config: Record<string, unknown>) => void): ModelFileProvider {
  const files = fixtureFiles(name);
  const config = JSON.parse(new TextDecoder().decode(files.get('config.json')!)) as Record<string, unknown>;
  edit(config);
  files.set('config.json', new TextEncoder().encode(JSON.stringify(config)));
  return memoryProvider(files, name);
}

export interface Golden {
  /** [B][T] token ids. */
  ids: number[][];
  /** [B, T, V] */
  shape: number[];
  logits: Float32Array;
  /** Greedy continuation of row 0 of ids, and the smallest top-1/top-2 logit gap along it. */
  greedy: number[];
  greedyMargin: number;
}

export async function readGolden(name: ModelFixture): Promise<Golden> {
  const bytes = new Uint8Array(readFileSync(new URL(`${name}/golden.safetensors`, FIXTURES)));
  const { header, tensors } = await readSafetensors(bytesSource(bytes), 'golden.safetensors');
  const logits = tensors.get('logits')!;
  if (logits.dtype !== 'F32') throw new Error('golden logits must be F32');
  const meta = header.metadata;
  return {
    ids: JSON.parse(meta.get('input_ids')!) as number[][],
    shape: [...logits.shape],
    logits: logits.data,
    greedy: JSON.parse(meta.get('greedy_tokens')!) as number[],
    greedyMargin: Number(meta.get('greedy_min_margin')),
  };
}

/** Rows [.., t, :] of a [B, T, V] array for t in [from, to), as one [B, to − from, V] array. */
export function sliceTokens(values: ArrayLike<number>, shape: readonly number[], from: number, to: number): Float32Array {
  const [B, T, V] = shape;
  const out = new Float32Array(B * (to - from) * V);
  for (let b = 0; b < B; b++) {
    for (let t = from; t < to; t++) {
      for (let v = 0; v < V; v++) out[(b * (to - from) + (t - from)) * V + v] = values[(b * T + t) * V + v];
    }
  }
  return out;
}

export function argmax(values: ArrayLike<number>, from = 0, to = values.length): number {
  let best = from;
  for (let i = from; i < to; i++) if (values[i] > values[best]) best = i;
  return best - from;
}

/** Load a fixture, run `use` in an engine scope, dispose the model. */
export async function withModel(fixture: ModelFixture, use: (engine: Engine, model: CausalLM) => Promise<void>): Promise<void> {
  const engine = await testEngine();
  const { model } = await loadModel(engine, fixtureProvider(fixture));
  try {
    await engine.scope(() => use(engine, model));
  } finally {
    model.dispose();
  }
}
