// Importing an adapter from picked files (pickedAdapter.ts) in place of the attached one, to continue training
// it or to compare it in the playground. PEFT LoRA files are checked by importLoraAdapter, AdapterHub bottleneck
// files by importBottleneckAdapter, each against the loaded model (targets, shapes, dtypes, finiteness, ...).
//
// Nothing changes until the files have passed every check: they are first imported beside the attached adapter
// (a second named adapter of the same kind, or LoRA wrappers beside a bottleneck hook and the reverse) and that
// trial copy is dropped; only then is the attached adapter detached and the files imported onto the bare model, under
// the name a fresh attach uses, so the result is what attachMethod would have left with these weights.
//
// A LoRA file goes onto the f32 weights, or onto NF4 layers when the page's method is QLoRA (the model is then
// quantized after the trial, as attachMethod does) or when the model is NF4 already. The returned settings are
// the page's with the file's values (rank, alpha, dropout, rsLoRA, target modules; reduction factor, placement)
// and are the adapter's key, so a train call sending them continues this adapter instead of attaching a new one.

import { FormatError, quoteName } from '../../io/errors.ts';
import type { ModelFileProvider } from '../../models/load.ts';
import { bytesSource } from '../../io/byteSource.ts';
import { importBottleneckAdapter } from '../../peft/bottleneckFiles.ts';
import { BottleneckModel } from '../../peft/bottleneckModel.ts';
import { LoraConfigError } from '../../peft/loraLinear.ts';
import { importLoraAdapter } from '../../peft/peftFiles.ts';
import { quantizeLinears } from '../../peft/qlora.ts';
import { defaultTargetModules } from '../../peft/targets.ts';
import { engineState, quantizedBase, requireLoaded, type LoadedModel } from '../engineState.ts';
import { BadRequestError } from '../failures.ts';
import { AdapterPickError, MAX_PICKED_ADAPTER_BYTES, readPickedAdapter, type PickedAdapter, type PickedFile } from '../pickedAdapter.ts';
import type { ImportAdapterRequest, MethodSettings, Result } from '../protocol.ts';
import { adoptBottleneck, adoptLora, detachAdapter, QLORA_QUANTIZATION } from './method.ts';
import { endKeptSession } from './trainingSession.ts';

/** The name attachMethod gives its adapter; an imported one gets it too. */
const ADAPTER_NAME = 'default';
/** The trial copy's name: not ADAPTER_NAME, which the attached adapter has. */
const TRIAL_NAME = 'tabtune-import-trial';

export async function importAdapterCall(payload: ImportAdapterRequest): Promise<Result<'importAdapter'>> {
  const current = requireLoaded();
  if (!Array.isArray(payload.files)) throw new BadRequestError('no files were picked');
  const method = payload.settings?.method;
  if (method !== 'lora' && method !== 'qlora' && method !== 'adapter') throw new BadRequestError('the page\'s method settings must name lora, qlora or adapter');
  const picked = await readFiles(payload.files);
  const adapter = await readPickedAdapter(picked);
  try {
    return adapter.layout === 'peft' ? await importLora(current, adapter, payload.settings) : await importBottleneck(current, adapter, payload.settings);
  } catch (error) {
    throw namedAfter(adapter, error);
  }
}

async function readFiles(files: readonly File[]): Promise<PickedFile[]> {
  const picked: PickedFile[] = [];
  for (const file of files) {
    if (typeof file?.name !== 'string' || typeof file.arrayBuffer !== 'function') throw new BadRequestError('a picked file is not a File');
    if (file.size > MAX_PICKED_ADAPTER_BYTES) {
      throw new AdapterPickError(file.name, `is ${file.size} bytes, more than an adapter file can be (${MAX_PICKED_ADAPTER_BYTES}); is it a model?`, { field: 'file size' });
    }
    picked.push({ name: file.name, bytes: new Uint8Array(await file.arrayBuffer()) });
  }
  return picked;
}

function provider(adapter: PickedAdapter): ModelFileProvider {
  return {
    name: adapter.source,
    list: () => [...adapter.files.keys()].sort(),
    open: (name) => {
      const bytes = adapter.files.get(name);
      if (!bytes) throw new AdapterPickError(adapter.source, `has no ${quoteName(name)}`, { field: name });
      return bytesSource(bytes);
    },
  };
}

/**
 * Errors about files inside a zip or bundle also name what the user picked; the libraries' own checks that
 * are not FormatErrors (a LoRA hyperparameter, a bottleneck option) become bad-input failures.
 */
function namedAfter(adapter: PickedAdapter, error: unknown): unknown {
  if (error instanceof FormatError) {
    if (!adapter.packed || error.file === adapter.source) return error;
    return new AdapterPickError(adapter.source, error.message, { field: error.field, tensor: error.tensor }, { cause: error });
  }
  if (error instanceof LoraConfigError) return new AdapterPickError(adapter.source, `${error.field}: ${error.message}`, { field: error.field }, { cause: error });
  if (error instanceof Error && error.name === 'BottleneckError') return new AdapterPickError(adapter.source, error.message, { field: 'config' }, { cause: error });
  return error;
}

// ---------------------------------------------------------------------------------------------------------------
// LoRA / QLoRA (PEFT files)

async function importLora(current: LoadedModel, adapter: PickedAdapter, page: MethodSettings): Promise<Result<'importAdapter'>> {
  const files = provider(adapter);
  const warnings: string[] = [];
  const qlora = page.method === 'qlora' || current.quantized;
  if (current.quantized && page.method !== 'qlora') {
    const { why, remedy } = quantizedBase(current);
    warnings.push(`${why}: the adapter was put on them (QLoRA); ${remedy} for LoRA on f32 weights`);
  }
  const baseModelName = current.summary.name;

  await trialLora(current, files, baseModelName);
  endKeptSession(); // a paused run trains the adapter being replaced
  detachAdapter();
  if (qlora && !current.quantized) {
    await quantizeLinears(current.model, QLORA_QUANTIZATION);
    current.quantized = true;
  }
  const imported = await importLoraAdapter(current.model, files, { adapterName: ADAPTER_NAME, baseModelName });
  warnings.push(...imported.warnings);
  const peft = imported.peft;
  const config = peft.adapterConfig();
  const defaultTargets = defaultTargetModules(current.model.config.modelType);
  const settings: MethodSettings = {
    ...page,
    method: qlora ? 'qlora' : 'lora',
    r: config.r,
    alpha: config.alpha,
    dropout: config.dropout,
    useRslora: config.useRslora,
    targetModules: targetModulesSetting(config.targetModules, config.paths, defaultTargets),
  };
  return { attached: adoptLora(current.model, peft, settings), layout: 'peft', source: adapter.source, warnings };
}

/** Check the files against the model by importing them beside the attached adapter, then drop that copy. */
async function trialLora(current: LoadedModel, files: ModelFileProvider, baseModelName: string): Promise<void> {
  const attached = engineState.adapted?.peft;
  if (attached) {
    const active = attached.activeAdapter;
    await importLoraAdapter(attached, files, { adapterName: TRIAL_NAME, baseModelName });
    attached.deleteAdapter(TRIAL_NAME);
    if (active !== null) attached.setAdapter(active);
  } else {
    const { peft } = await importLoraAdapter(current.model, files, { adapterName: TRIAL_NAME, baseModelName });
    peft.unload();
  }
}

/**
 * MethodSettings.targetModules for what the file selects: null when it is the architecture's default set,
 * else the module names (a regex or "all-linear" becomes the names of the modules it selected).
 */
export function targetModulesSetting(targetModules: string | readonly string[], paths: readonly string[], defaults: readonly string[]): string[] | null {
  const names = typeof targetModules === 'string' ? [...new Set(paths.map((path) => path.slice(path.lastIndexOf('.') + 1)))] : [...targetModules];
  const sameAsDefault = names.length === defaults.length && defaults.every((name) => names.includes(name));
  return sameAsDefault ? null : names;
}

// ---------------------------------------------------------------------------------------------------------------
// Bottleneck adapters (AdapterHub files)

async function importBottleneck(current: LoadedModel, adapter: PickedAdapter, page: MethodSettings): Promise<Result<'importAdapter'>> {
  if (current.quantized) {
    const { why, remedy } = quantizedBase(current);
    throw new BadRequestError(`${why}: ${remedy} to import a bottleneck adapter`);
  }
  const files = provider(adapter);

  // Trial beside the attached adapter: a bottleneck model takes a second named adapter; otherwise a bottleneck
  // hook is attached for the trial (LoRA wrappers and the residual hook do not touch each other).
  const attached = engineState.adapted?.bottleneck;
  if (attached) {
    await importBottleneckAdapter(attached, files, { loadAs: TRIAL_NAME, setActive: false });
    attached.deleteAdapter(TRIAL_NAME);
  } else {
    const trial = BottleneckModel.attach(current.model);
    try {
      await importBottleneckAdapter(trial, files, { loadAs: TRIAL_NAME });
    } finally {
      trial.detach();
    }
  }

  endKeptSession();
  detachAdapter();
  const bottleneck = BottleneckModel.attach(current.model);
  let imported;
  try {
    imported = await importBottleneckAdapter(bottleneck, files);
  } catch (error) {
    bottleneck.detach();
    throw error;
  }
  const { config } = imported;
  const rf = typeof config.reductionFactor === 'number' ? config.reductionFactor : (config.reductionFactor.default ?? Object.values(config.reductionFactor)[0] ?? page.reductionFactor);
  const settings: MethodSettings = {
    ...page,
    method: 'adapter',
    dropout: config.dropout,
    reductionFactor: Math.max(1, Math.round(rf)),
    placement: config.mhAdapter ? 'houlsby' : 'pfeiffer',
  };
  return { attached: adoptBottleneck(current.model, bottleneck, settings), layout: 'adapterhub', source: adapter.source, warnings: imported.warnings };
}
