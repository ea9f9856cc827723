// Sharded checkpoints: `model.safetensors.index.json` = {"metadata": {"total_size": n}, "weight_map": {tensor: file}}.
// Shard names come from the network or a user's folder and become file names or URLs, so they are checked
// before anything is downloaded or opened: a plain file name in the same folder, ending in `.safetensors`.

import { DuplicateNameError, ShardIndexError, quoteName } from './errors.ts';
import type { SafetensorsHeader } from './safetensors.ts';
import { JsonNumber, StrictJsonError, decodeUtf8Strict, describeJson, parseStrictJson, type JsonValue } from './strictJson.ts';

export const SHARD_INDEX_FILE = 'model.safetensors.index.json';

/** Index files of real models are a few hundred kB; anything past this is refused before parsing. */
export const SHARD_INDEX_MAX_BYTES = 64 * 1024 * 1024;

export interface ShardIndex {
  readonly file: string;
  /** `metadata.total_size` when present: the summed byte size of all tensors. */
  readonly totalSize: number | undefined;
  /** tensor name → shard file name. */
  readonly weightMap: ReadonlyMap<string, string>;
  /** The distinct shard files, sorted (for hub names `model-00001-of-00003.safetensors` … this is their number order). */
  readonly shards: readonly string[];
  /** shard file → the tensors it holds according to the index, in index order. */
  readonly tensorsByShard: ReadonlyMap<string, readonly string[]>;
}

/** Why a shard name is unsafe or unusable, or null when it is a plain `.safetensors` file name. */
export function shardNameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (name.length > 255) return 'is longer than 255 characters';
  if (/^[a-z][a-z0-9+.-]*:/i.test(name)) return 'is a URL or a drive path';
  if (name.includes('/') || name.includes('\\')) return 'has a path separator';
  if (name.includes('..')) return "contains '..'";
  if (name.startsWith('.')) return "starts with '.'";
  if (!/^[A-Za-z0-9._+-]+$/.test(name)) return 'has characters other than letters, digits, ".", "_", "+" and "-"';
  if (!name.endsWith('.safetensors')) return 'does not end in .safetensors';
  return null;
}

/**
 * Parse and check an index file. Refused (ShardIndexError or DuplicateNameError, naming the file and the field or
 * tensor): invalid UTF-8 or JSON, a top level that is not an object, a missing or empty weight_map, shard names
 * that are not plain `.safetensors` file names (`..`, `/`, `\`, URLs, absolute paths), a tensor mapped twice,
 * non-string shard names, a total_size that is not a non-negative safe integer.
 */
export function parseShardIndex(input: string | Uint8Array | ArrayBuffer, fileName: string = SHARD_INDEX_FILE): ShardIndex {
  const length = typeof input === 'string' ? input.length : input.byteLength;
  if (length > SHARD_INDEX_MAX_BYTES) {
    throw new ShardIndexError(fileName, `index file size ${length} bytes is over the ${SHARD_INDEX_MAX_BYTES}-byte cap`, { field: 'file size' });
  }
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    const decoded = decodeUtf8Strict(input instanceof Uint8Array ? input : new Uint8Array(input));
    if (decoded === null) throw new ShardIndexError(fileName, 'index is not valid UTF-8', { field: 'index' });
    text = decoded;
  }

  let root: JsonValue;
  try {
    root = parseStrictJson(text);
  } catch (error) {
    if (!(error instanceof StrictJsonError)) throw error;
    if (error.kind === 'syntax') throw new ShardIndexError(fileName, `index is not valid JSON: ${error.detail}`, { field: 'index' });
    const key = error.key as string;
    if (error.path.length === 1 && error.path[0] === 'weight_map') {
      throw new DuplicateNameError(fileName, `tensor ${quoteName(key)} is mapped twice in weight_map`, { field: 'weight_map', tensor: key });
    }
    const field = [...error.path, key].join('.');
    throw new DuplicateNameError(fileName, `duplicate key ${quoteName(field)} in the index`, { field });
  }
  if (!(root instanceof Map)) throw new ShardIndexError(fileName, `index is ${describeJson(root)}, not a JSON object`, { field: 'index' });

  let totalSize: number | undefined;
  const metadata = root.get('metadata');
  if (metadata !== undefined && metadata !== null) {
    if (!(metadata instanceof Map)) {
      throw new ShardIndexError(fileName, `metadata is ${describeJson(metadata)}, not an object`, { field: 'metadata' });
    }
    const total = metadata.get('total_size');
    if (total !== undefined && total !== null) {
      // Informational: accepted as any number whose value is a non-negative safe integer (some writers emit 1.5e9 or 123.0).
      if (!(total instanceof JsonNumber) || !Number.isSafeInteger(total.value) || total.value < 0 || total.text.startsWith('-')) {
        throw new ShardIndexError(fileName, `metadata.total_size is ${describeJson(total)}, not a non-negative safe integer`, {
          field: 'metadata.total_size',
        });
      }
      totalSize = total.value;
    }
  }

  const weightMapValue = root.get('weight_map');
  if (weightMapValue === undefined) throw new ShardIndexError(fileName, 'index has no weight_map', { field: 'weight_map' });
  if (!(weightMapValue instanceof Map)) {
    throw new ShardIndexError(fileName, `weight_map is ${describeJson(weightMapValue)}, not an object`, { field: 'weight_map' });
  }
  if (weightMapValue.size === 0) throw new ShardIndexError(fileName, 'weight_map is empty', { field: 'weight_map' });

  const weightMap = new Map<string, string>();
  const tensorsByShard = new Map<string, string[]>();
  for (const [tensor, shard] of weightMapValue) {
    if (typeof shard !== 'string') {
      throw new ShardIndexError(fileName, `weight_map entry of tensor ${quoteName(tensor)} is ${describeJson(shard)}, not a file name`, {
        field: 'weight_map',
        tensor,
      });
    }
    const problem = shardNameProblem(shard);
    if (problem !== null) {
      throw new ShardIndexError(fileName, `weight_map maps tensor ${quoteName(tensor)} to shard name ${quoteName(shard)}, which ${problem}; refused`, {
        field: 'weight_map',
        tensor,
      });
    }
    weightMap.set(tensor, shard);
    const list = tensorsByShard.get(shard);
    if (list) list.push(tensor);
    else tensorsByShard.set(shard, [tensor]);
  }
  const shards = [...tensorsByShard.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.freeze({ file: fileName, totalSize, weightMap, shards: Object.freeze(shards), tensorsByShard });
}

/**
 * Check the headers of all shards against the index before any tensor data is read: every shard present, every
 * indexed tensor in the shard the index names, no tensor in two shards or in a shard the index does not map it to.
 */
export function checkShardHeaders(index: ShardIndex, headers: ReadonlyMap<string, SafetensorsHeader>): void {
  for (const shard of index.shards) {
    if (!headers.has(shard)) {
      throw new ShardIndexError(index.file, `shard ${quoteName(shard)} named in weight_map is missing`, { field: 'weight_map' });
    }
  }
  const seenIn = new Map<string, string>();
  for (const [shard, header] of headers) {
    if (!index.tensorsByShard.has(shard)) {
      throw new ShardIndexError(index.file, `shard ${quoteName(shard)} is not named in the index's weight_map`, { field: 'weight_map' });
    }
    for (const entry of header.tensors) {
      const other = seenIn.get(entry.name);
      if (other !== undefined) {
        const mapped = index.weightMap.get(entry.name);
        const where = mapped === undefined ? 'which weight_map does not list' : `while weight_map maps it to ${quoteName(mapped)}`;
        throw new DuplicateNameError(index.file, `tensor ${quoteName(entry.name)} is in two shards, ${quoteName(other)} and ${quoteName(shard)}, ${where}`, {
          tensor: entry.name,
          field: 'weight_map',
        });
      }
      seenIn.set(entry.name, shard);
      const mapped = index.weightMap.get(entry.name);
      if (mapped !== shard) {
        const where = mapped === undefined ? 'which weight_map does not list' : `which weight_map maps to ${quoteName(mapped)}`;
        throw new ShardIndexError(index.file, `shard ${quoteName(shard)} holds tensor ${quoteName(entry.name)}, ${where}`, {
          tensor: entry.name,
          field: 'weight_map',
        });
      }
    }
  }
  for (const [tensor, shard] of index.weightMap) {
    if (seenIn.get(tensor) !== shard) {
      throw new ShardIndexError(index.file, `weight_map maps tensor ${quoteName(tensor)} to shard ${quoteName(shard)}, which does not hold it`, {
        tensor,
        field: 'weight_map',
      });
    }
  }
}
