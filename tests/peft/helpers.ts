// Test access to the PEFT fixtures of tests/fixtures/peft (made by make_lora_golden.py): the adapter folders
// as file providers, their golden logits, and small helpers shared by the tests/peft files.

import { readdirSync, readFileSync } from 'node:fs';
import { bytesSource, readSafetensors } from '../../src/io/safetensors.ts';
import type { ModelFixture } from '../models/helpers.ts';

export const PEFT_FIXTURES = new URL('../fixtures/peft/', import.meta.url);
export const PEFT_CASES = ['llama-qvd', 'llama-layer1', 'gpt2-rslora'] as const;
export type PeftCase = (typeof PEFT_CASES)[number];

/** The adapter files of a case (adapter_config.json, adapter_model.safetensors), in memory. */
export function adapterFiles(name: PeftCase): Map<string, Uint8Array> {
  const folder = new URL(`${name}/`, PEFT_FIXTURES);
  const files = new Map<string, Uint8Array>();
  for (const file of readdirSync(folder).sort()) {
    if (file.startsWith('adapter_')) files.set(file, new Uint8Array(readFileSync(new URL(file, folder))));
  }
  return files;
}

/** Files in memory as a ModelFileProvider: the model tests' helper. */
export { memoryProvider as filesProvider } from '../models/helpers.ts';

export interface PeftGolden {
  fixture: ModelFixture;
  ids: number[][];
  shape: number[];
  /** Adapted logits [B, T, V] from the float64 reference. */
  logits: Float32Array;
  /** max |adapted − base| over the logits. */
  shift: number;
}

export async function readPeftGolden(name: PeftCase): Promise<PeftGolden> {
  const bytes = new Uint8Array(readFileSync(new URL(`${name}/golden.safetensors`, PEFT_FIXTURES)));
  const { header, tensors } = await readSafetensors(bytesSource(bytes), 'golden.safetensors');
  const logits = tensors.get('logits')!;
  if (logits.dtype !== 'F32') throw new Error('golden logits must be F32');
  return {
    fixture: header.metadata.get('model_fixture') as ModelFixture,
    ids: JSON.parse(header.metadata.get('input_ids')!) as number[][],
    shape: [...logits.shape],
    logits: logits.data,
    shift: Number(header.metadata.get('max_shift_from_base')),
  };
}

/** A JSON config edited by `edit`, as bytes. */
export function editJson(bytes: Uint8Array, edit: (json: Record<string, unknown>) => void): Uint8Array {
  const json = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  edit(json);
  return new TextEncoder().encode(JSON.stringify(json, null, 2));
}
