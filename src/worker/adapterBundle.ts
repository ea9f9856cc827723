// An adapter's two files (a JSON config and a safetensors weights file) as ONE download, without a zip library:
// the weights file itself, with the config carried in its header's `__metadata__` (string → string, as the
// safetensors format allows). Any safetensors reader loads the tensors unchanged; the files come back out with
// `unbundleAdapter`.
//
// Bundle format (version 1): a safetensors file whose `__metadata__` holds, besides the weights file's own
// entries (e.g. "format": "pt"):
//   "tabtune.bundle":       "1"
//   "tabtune.layout":       "peft" (adapter_config.json + adapter_model.safetensors) or "adapterhub"
//                           (adapter_config.json + adapter.safetensors)
//   "tabtune.config_file":  the config's file name, e.g. "adapter_config.json"
//   "tabtune.config":       the config file's text, byte for byte
//   "tabtune.weights_file": the weights file's name, e.g. "adapter_model.safetensors"
// The tensor entries and data bytes are those of the weights file (data offsets are relative to the data
// section, so a longer header moves nothing); the header is padded with spaces to a multiple of 8 bytes.

export type AdapterLayout = 'peft' | 'adapterhub';

export const BUNDLE_VERSION = '1';

export interface AdapterFiles {
  layout: AdapterLayout;
  configFile: string;
  config: string;
  weightsFile: string;
  weights: Uint8Array;
}

function readHeader(file: Uint8Array): { header: Record<string, unknown>; dataStart: number } {
  if (file.byteLength < 8) throw new Error('not a safetensors file: shorter than its 8-byte header length');
  const length = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
  if (length > file.byteLength - 8) throw new Error('not a safetensors file: the header runs past the end');
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + length))) as unknown;
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new Error('not a safetensors file: the header is not a JSON object');
  return { header: header as Record<string, unknown>, dataStart: 8 + length };
}

/** One safetensors file holding the weights file's tensors and the config in its metadata. */
export function bundleAdapter(files: AdapterFiles): Uint8Array {
  const { header, dataStart } = readHeader(files.weights);
  const own = (header.__metadata__ ?? {}) as Record<string, string>;
  const metadata: Record<string, string> = {
    ...own,
    'tabtune.bundle': BUNDLE_VERSION,
    'tabtune.layout': files.layout,
    'tabtune.config_file': files.configFile,
    'tabtune.config': files.config,
    'tabtune.weights_file': files.weightsFile,
  };
  const { __metadata__: _dropped, ...tensors } = header;
  const json = new TextEncoder().encode(JSON.stringify({ __metadata__: metadata, ...tensors }));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const data = files.weights.subarray(dataStart);
  const out = new Uint8Array(8 + padded + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + padded);
  out.set(data, 8 + padded);
  return out;
}

/** The two files back out of a bundle (the weights file with the bundle's entries removed from its metadata). */
export function unbundleAdapter(bundle: Uint8Array): AdapterFiles {
  const { header, dataStart } = readHeader(bundle);
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  if (metadata['tabtune.bundle'] !== BUNDLE_VERSION) throw new Error(`not a tabtune adapter bundle (version ${JSON.stringify(metadata['tabtune.bundle'] ?? null)})`);
  const layout = metadata['tabtune.layout'];
  if (layout !== 'peft' && layout !== 'adapterhub') throw new Error(`unknown adapter layout ${JSON.stringify(layout)}`);
  const own: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata)) if (!key.startsWith('tabtune.')) own[key] = value;
  const { __metadata__: _dropped, ...tensors } = header;
  const json = new TextEncoder().encode(JSON.stringify(Object.keys(own).length ? { __metadata__: own, ...tensors } : tensors));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const data = bundle.subarray(dataStart);
  const weights = new Uint8Array(8 + padded + data.byteLength);
  new DataView(weights.buffer).setBigUint64(0, BigInt(padded), true);
  weights.set(json, 8);
  weights.fill(0x20, 8 + json.byteLength, 8 + padded);
  weights.set(data, 8 + padded);
  return { layout, configFile: metadata['tabtune.config_file'], config: metadata['tabtune.config'], weightsFile: metadata['tabtune.weights_file'], weights };
}
