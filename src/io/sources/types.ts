// Where a model's files come from: a local directory (Node), files picked or dropped in the browser, or a hub
// repository. Every source offers the same three operations on file names relative to the model's root
// (`config.json`, `tokenizer.json`, `model-00001-of-00002.safetensors`, `subfolder/file.json`), so the loaders
// never care where the bytes live. Errors are the typed FormatError family and name the file.

import { FileReadError, FormatError, quoteName } from '../errors.ts';
import type { ByteSource } from '../byteSource.ts';
import { decodeUtf8Strict } from '../strictJson.ts';
import { parseShardIndex, SHARD_INDEX_FILE, type ShardIndex } from '../shardIndex.ts';

/** A model's files, wherever they are. */
export interface ModelFiles {
  /** For messages: a directory path, `org/name@revision`, or a description of the picked files. */
  readonly name: string;
  /** Every file name, relative to the model's root, `/`-separated, sorted. */
  list(): Promise<string[]>;
  /** Random access to one file (a hub file is downloaded to the cache first). MissingFileError when absent. */
  open(name: string): Promise<ByteSource>;
  /** A whole file as strict UTF-8 text, capped at {@link MAX_TEXT_FILE_BYTES}. MissingFileError when absent. */
  text(name: string): Promise<string>;
}

/** JSON and template files of real models are at most a few tens of MB (the largest tokenizer.json files are ~35 MB). */
export const MAX_TEXT_FILE_BYTES = 128 * 1024 * 1024;

/** The source has no file of that name (a hub 404 is one too). Optional files are probed by catching this. */
export class MissingFileError extends FileReadError {}

/** A file name that is not a plain relative path (`..`, absolute, backslashes, control characters, a URL). */
export class UnsafeFileNameError extends FormatError {}

/** A text file that is not UTF-8 or is too large to be read as text. */
export class TextFileError extends FormatError {}

/** Why `name` cannot be a relative file name inside a model's folder, or null when it can. */
export function fileNameProblem(name: string): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'is empty';
  if (name.length > 1024) return 'is longer than 1024 characters';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'has control characters';
  if (name.includes('\\')) return 'has a backslash';
  if (/^[a-z][a-z0-9+.-]*:/i.test(name)) return 'is a URL or a drive path';
  if (name.startsWith('/')) return 'is an absolute path';
  for (const part of name.split('/')) {
    if (part.length === 0) return 'has an empty path segment';
    if (part === '.' || part === '..') return `has a ${quoteName(part)} segment`;
    if (part.length > 255) return 'has a path segment longer than 255 characters';
  }
  return null;
}

/** Throw UnsafeFileNameError (naming the source) unless `name` is a plain relative file name. */
export function checkFileName(source: string, name: string): void {
  const problem = fileNameProblem(name);
  if (problem !== null) {
    throw new UnsafeFileNameError(source, `file name ${quoteName(String(name))} ${problem}; refused`, { field: 'file name' });
  }
}

/** Read a whole source as strict UTF-8 (shared by the ModelFiles implementations). */
export async function readText(source: ByteSource, file: string): Promise<string> {
  if (source.size > MAX_TEXT_FILE_BYTES) {
    throw new TextFileError(file, `is ${source.size} bytes, over the ${MAX_TEXT_FILE_BYTES}-byte cap for a text file`, { field: 'file size' });
  }
  const bytes = await source.read(0, source.size);
  if (bytes.byteLength !== source.size) {
    throw new FileReadError(file, `read ${bytes.byteLength} of ${source.size} bytes: the file changed or was cut short`, { field: 'file' });
  }
  // A UTF-8 byte order mark is allowed (some editors write one) and dropped.
  const start = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const text = decodeUtf8Strict(bytes.subarray(start));
  if (text === null) throw new TextFileError(file, 'is not valid UTF-8', { field: 'file' });
  return text;
}

/** `files.text(name)`, or null when the source has no such file; other errors propagate. */
export async function textIfPresent(files: ModelFiles, name: string): Promise<string | null> {
  try {
    return await files.text(name);
  } catch (error) {
    if (error instanceof MissingFileError) return null;
    throw error;
  }
}

/** The safetensors files that hold a model's weights. */
export interface WeightFiles {
  /** `model.safetensors`, or the shards of the index in order. */
  readonly files: readonly string[];
  /** The parsed index when the checkpoint is sharded. */
  readonly index: ShardIndex | null;
}

/**
 * Find the weight files without listing the source: `model.safetensors.index.json` is read first and its shard
 * names are checked (parseShardIndex refuses `..`, `/`, URLs) before any shard is opened or downloaded; without
 * an index, `model.safetensors`. MissingFileError when neither exists.
 */
export async function findWeightFiles(files: ModelFiles): Promise<WeightFiles> {
  const indexText = await textIfPresent(files, SHARD_INDEX_FILE);
  if (indexText !== null) {
    const index = parseShardIndex(indexText, SHARD_INDEX_FILE);
    return { files: index.shards, index };
  }
  try {
    await files.open('model.safetensors');
  } catch (error) {
    if (error instanceof MissingFileError) {
      throw new MissingFileError(files.name, `has neither ${SHARD_INDEX_FILE} nor model.safetensors (only safetensors weights are supported)`, {
        field: 'weights',
      });
    }
    throw error;
  }
  return { files: ['model.safetensors'], index: null };
}

/** Sort names by UTF-16 code units (stable across locales). */
export function sortNames(names: Iterable<string>): string[] {
  return [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
