// The `--adapter DIR` and `--quant nf4` options shared by the commands that run a model: which kind of
// adapter a folder holds (PEFT LoRA or AdapterHub bottleneck), and attaching it to a loaded model.

import { stat } from 'node:fs/promises';
import { quoteName } from '../io/errors.ts';
import { localDirectory } from '../io/sources/localDirectory.ts';
import type { CausalLM } from '../models/model.ts';
import { BottleneckModel } from '../peft/bottleneckModel.ts';
import { importBottleneckAdapter } from '../peft/bottleneckFiles.ts';
import { importLoraAdapter } from '../peft/peftFiles.ts';
import { progress, UsageError, type OptionSpec } from './usage.ts';

export type AdapterKind = 'lora' | 'bottleneck';

/** The parseOptions entries of the two options. */
export const ADAPTER_OPTIONS = { adapter: { type: 'string' }, quant: { type: 'string' } } satisfies OptionSpec;

/** --quant: only NF4 (with double quantization, as QLoRA trains) is offered. */
export function quantOption(command: string, value: string | undefined): 'nf4' | undefined {
  if (value !== undefined && value !== 'nf4') throw new UsageError(`${command}: --quant must be nf4, got '${value}'`);
  return value;
}

/** What kind of adapter a folder holds, from its files (before anything is parsed in depth). */
export async function adapterKind(command: string, dir: string): Promise<AdapterKind> {
  const stats = await stat(dir).catch(() => null);
  if (!stats?.isDirectory()) throw new UsageError(`${command}: --adapter ${quoteName(dir)}: no such folder`);
  const folder = localDirectory(dir);
  const names = await folder.list();
  if (names.includes('adapter.safetensors') || names.includes('pytorch_adapter.bin')) return 'bottleneck';
  if (names.includes('adapter_config.json')) {
    const source = await folder.open('adapter_config.json');
    const text = new TextDecoder().decode(await source.read(0, Math.min(source.size, 1 << 20)));
    // AdapterHub's wrapper has "config" with "architecture": "bottleneck"; PEFT's has "peft_type".
    if (/"architecture"\s*:\s*"bottleneck"/.test(text) && !/"peft_type"/.test(text)) return 'bottleneck';
  }
  return 'lora';
}

/** Attach the adapter in `dir` to `model`; returns the model to run (a PeftModel for LoRA, the same model with hooks for a bottleneck adapter). */
export async function attachAdapterFolder(command: string, model: CausalLM, dir: string, baseModelName: string): Promise<CausalLM> {
  const kind = await adapterKind(command, dir);
  if (kind === 'bottleneck') {
    const imported = await importBottleneckAdapter(BottleneckModel.attach(model), localDirectory(dir));
    progress(`attached bottleneck adapter '${imported.name}' from ${dir}`);
    return model;
  }
  const imported = await importLoraAdapter(model, localDirectory(dir), { baseModelName });
  for (const warning of imported.warnings) progress(`warning: ${warning}`);
  progress(`attached LoRA adapter from ${dir}`);
  imported.peft.eval();
  return imported.peft;
}
