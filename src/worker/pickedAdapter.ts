// Adapter files picked by the user → the files of one adapter and the library whose layout they follow. Accepted:
//   - one tabtune bundle .safetensors (adapterBundle.ts: the weights file with the config in its metadata);
//   - one .zip holding adapter_config.json and its weights file, at the top or in one folder (the adapter zip
//     download, or a zipped PEFT / AdapterHub folder); macOS resource entries (__MACOSX/, ._*) are ignored;
//   - adapter_config.json and its weights file picked together.
// The layout follows the weights file's name: adapter_model.safetensors is PEFT's (LoRA), adapter.safetensors
// AdapterHub's (bottleneck). Everything else is an AdapterPickError naming the picked file and what is wrong;
// the files' contents are checked against the model later, by the importers (peftFiles.ts, bottleneckFiles.ts).

import { bytesSource } from '../io/byteSource.ts';
import { FormatError, quoteName } from '../io/errors.ts';
import { readSafetensorsHeader } from '../io/safetensors.ts';
import { looksLikeZip, readZip } from '../io/zipFiles.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../peft/adapterErrors.ts';
import { BOTTLENECK_WEIGHTS_FILE } from '../peft/bottleneckFiles.ts';
import { unbundleAdapter, type AdapterLayout } from './adapterBundle.ts';

/** Picked files are refused above this size (adapters are megabytes; this catches a model picked by mistake). */
export const MAX_PICKED_ADAPTER_BYTES = 2 * 1024 ** 3;

/** Picked files that are not an adapter in a form tabtune reads. */
export class AdapterPickError extends FormatError {}

export interface PickedFile {
  name: string;
  bytes: Uint8Array;
}

export interface PickedAdapter {
  layout: AdapterLayout;
  /** What was picked, for messages: the file name, or the names joined. */
  source: string;
  /** adapter_config.json and the weights file (and whatever else sat beside them), by plain file name. */
  files: Map<string, Uint8Array>;
  /** The files came out of a container (a zip or a bundle), so their own names mean little to the user. */
  packed: boolean;
}

const WEIGHTS_OF: Record<AdapterLayout, string> = { peft: ADAPTER_WEIGHTS_FILE, adapterhub: BOTTLENECK_WEIGHTS_FILE };
const HOW_TO_PICK = 'pick a tabtune adapter .safetensors, an adapter .zip, or adapter_config.json together with its weights file';

export async function readPickedAdapter(picked: readonly PickedFile[]): Promise<PickedAdapter> {
  if (picked.length === 0) throw new AdapterPickError('the picked files', `are none: ${HOW_TO_PICK}`, { field: 'files' });
  const names = picked.map((file) => file.name);
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated !== undefined) throw new AdapterPickError(repeated, 'was picked twice', { field: 'files' });
  if (picked.length === 1) return readOne(picked[0]);
  const zip = picked.find((file) => looksLikeZip(file.bytes) || /\.zip$/i.test(file.name));
  if (zip) throw new AdapterPickError(zip.name, 'is a zip archive: pick it on its own, not with other files', { field: 'files' });
  const source = names.join(' + ');
  return { ...fromFolder(new Map(picked.map((file) => [file.name, file.bytes])), source), packed: false };
}

async function readOne({ name, bytes }: PickedFile): Promise<PickedAdapter> {
  if (looksLikeZip(bytes) || /\.zip$/i.test(name)) return { ...fromFolder(readZip(bytes, name), name), packed: true };
  if (name === ADAPTER_CONFIG_FILE) {
    throw new AdapterPickError(name, `needs its weights file: pick it together with ${ADAPTER_WEIGHTS_FILE} (LoRA) or ${BOTTLENECK_WEIGHTS_FILE} (bottleneck adapter)`, { field: 'files' });
  }
  if (!/\.safetensors$/i.test(name)) throw new AdapterPickError(name, `is not an adapter file: ${HOW_TO_PICK}`, { field: 'file' });
  let header;
  try {
    header = await readSafetensorsHeader(bytesSource(bytes), name);
  } catch (error) {
    if (!(error instanceof FormatError)) throw error;
    const prefix = `${quoteName(name)}: `;
    const detail = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
    throw new AdapterPickError(name, `is not a safetensors file (${detail})`, { field: error.field ?? 'file' }, { cause: error });
  }
  if (!header.metadata.has('tabtune.bundle')) {
    throw new AdapterPickError(name, `is a safetensors file without tabtune's adapter metadata: pick ${ADAPTER_CONFIG_FILE} together with it, or the adapter .zip`, { field: '__metadata__' });
  }
  let bundle;
  try {
    bundle = unbundleAdapter(bytes);
  } catch (error) {
    throw new AdapterPickError(name, `is a damaged tabtune adapter bundle: ${(error as Error).message}`, { field: '__metadata__' }, { cause: error });
  }
  if (bundle.configFile !== ADAPTER_CONFIG_FILE || bundle.weightsFile !== WEIGHTS_OF[bundle.layout] || typeof bundle.config !== 'string') {
    throw new AdapterPickError(name, `is a tabtune bundle of unexpected files (${quoteName(String(bundle.configFile))}, ${quoteName(String(bundle.weightsFile))}) for layout ${quoteName(bundle.layout)}`, {
      field: '__metadata__',
    });
  }
  const files = new Map([
    [ADAPTER_CONFIG_FILE, new TextEncoder().encode(bundle.config)],
    [bundle.weightsFile, bundle.weights],
  ]);
  return { layout: bundle.layout, source: name, files, packed: true };
}

/** Resource forks and Finder files that macOS adds to zips. */
function isClutter(path: string): boolean {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return path.startsWith('__MACOSX/') || base.startsWith('._') || base === '.DS_Store';
}

/** The adapter in a set of paths: the folder of its one adapter_config.json, and the layout of its weights file. */
function fromFolder(entries: ReadonlyMap<string, Uint8Array>, source: string): Omit<PickedAdapter, 'packed'> {
  const paths = [...entries.keys()].filter((path) => !isClutter(path));
  const configs = paths.filter((path) => path === ADAPTER_CONFIG_FILE || path.endsWith(`/${ADAPTER_CONFIG_FILE}`));
  if (configs.length > 1) {
    throw new AdapterPickError(source, `holds ${configs.length} adapters (${configs.map(quoteName).join(', ')}): one adapter at a time`, { field: ADAPTER_CONFIG_FILE });
  }
  if (configs.length === 0) {
    const weights = paths.find((path) => /(^|\/)(adapter_model|adapter)\.safetensors$/.test(path));
    const why = weights ? `has ${quoteName(weights)} but no ${ADAPTER_CONFIG_FILE} beside it` : `holds no ${ADAPTER_CONFIG_FILE}: ${HOW_TO_PICK}`;
    throw new AdapterPickError(source, why, { field: ADAPTER_CONFIG_FILE });
  }
  const folder = configs[0].slice(0, configs[0].length - ADAPTER_CONFIG_FILE.length); // '' or 'dir/'
  const files = new Map<string, Uint8Array>();
  for (const path of paths) {
    const name = path.slice(folder.length);
    if (path.startsWith(folder) && !name.includes('/')) files.set(name, entries.get(path)!);
  }
  const peft = files.has(ADAPTER_WEIGHTS_FILE);
  const adapterhub = files.has(BOTTLENECK_WEIGHTS_FILE);
  if (peft && adapterhub) {
    throw new AdapterPickError(source, `holds both ${ADAPTER_WEIGHTS_FILE} (PEFT LoRA) and ${BOTTLENECK_WEIGHTS_FILE} (AdapterHub): keep the one that goes with its ${ADAPTER_CONFIG_FILE}`, {
      field: 'files',
    });
  }
  // Without a weights file the importer of the config's kind says what is missing (it knows the pickle names).
  const layout: AdapterLayout = peft ? 'peft' : adapterhub ? 'adapterhub' : configLooksLikeAdapterHub(files.get(ADAPTER_CONFIG_FILE)!) ? 'adapterhub' : 'peft';
  return { layout, source, files };
}

/** AdapterHub's config wraps the adapter's own in "config"; PEFT's has "peft_type". Unparseable: not AdapterHub. */
function configLooksLikeAdapterHub(bytes: Uint8Array): boolean {
  try {
    const json = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    return typeof json === 'object' && json !== null && !('peft_type' in json) && 'config' in json;
  } catch {
    return false;
  }
}
