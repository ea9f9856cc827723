// A dataset file the user dropped on the data panel or chose: read as strict UTF-8 text, or refused with a message
// naming the file (empty, over the size cap, not UTF-8, or binary). Format detection (.jsonl vs plain text) is left
// to the worker's parser, which goes by the content, not the name.

import { FormatError } from '../io/errors.ts';
import { decodeUtf8Strict } from '../io/strictJson.ts';
import { formatBytes } from './format.ts';

/** The file picker's filter (a drop may bring any file: the content decides). */
export const DATASET_FILE_ACCEPT = '.txt,.jsonl,.json,.text';
/** Larger files are refused before reading: the whole text travels to the worker on every inspection. */
export const MAX_DATASET_FILE_BYTES = 32 * 2 ** 20;

/** A dataset file refused before parsing; the message starts with the quoted file name. */
export class DatasetFileError extends FormatError {}

function tooLarge(name: string, size: number): DatasetFileError {
  const limit = `${MAX_DATASET_FILE_BYTES / 2 ** 20} MiB`;
  return new DatasetFileError(name, `is ${size.toLocaleString('en')} bytes (${formatBytes(size)}), over the ${limit} limit for a dataset file`, { field: 'file' });
}

/** The text of a dataset file's bytes, or a DatasetFileError. */
export function decodeDatasetFile(name: string, bytes: Uint8Array): string {
  if (bytes.byteLength === 0) throw new DatasetFileError(name, 'is empty', { field: 'file' });
  if (bytes.byteLength > MAX_DATASET_FILE_BYTES) throw tooLarge(name, bytes.byteLength);
  const text = decodeUtf8Strict(bytes);
  if (text === null) throw new DatasetFileError(name, 'is not UTF-8 text (a binary file?): datasets are .txt or .jsonl text', { field: 'file' });
  // NUL is valid UTF-8 but never part of a text dataset: a binary file that happens to decode.
  if (text.includes('\u0000')) throw new DatasetFileError(name, 'contains NUL bytes, so it is a binary file, not text: datasets are .txt or .jsonl text', { field: 'file' });
  if (text.trim() === '') throw new DatasetFileError(name, 'has no text, only white space', { field: 'file' });
  return text;
}

/** Read a dropped or chosen file; the size is checked before any byte is read. */
export async function readDatasetFile(file: File): Promise<string> {
  if (file.size > MAX_DATASET_FILE_BYTES) throw tooLarge(file.name, file.size);
  return decodeDatasetFile(file.name, new Uint8Array(await file.arrayBuffer()));
}
