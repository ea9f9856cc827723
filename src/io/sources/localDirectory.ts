// A model folder on disk (Node: CLI and tests), e.g. a `git clone` of a hub repository or a snapshot folder of
// the huggingface_hub cache (whose files are symlinks into a blobs folder: links are followed). Names given to
// open/text are checked to be plain relative paths first, so `..` or an absolute path never reaches the disk.
// Each read opens, reads and closes the file: nothing to close afterwards, and no handle is leaked.

import { open, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FileReadError, quoteName } from '../errors.ts';
import { checkRange, readAtMost, type ByteSource } from '../byteSource.ts';
import { checkFileName, MissingFileError, readText, sortNames, type ModelFiles } from './types.ts';

export interface LocalDirectoryOptions {
  /** Most files list() walks before it gives up (default 100 000). */
  maxFiles?: number;
  /** Deepest folder level list() enters (default 8). */
  maxDepth?: number;
}

function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
}

function isMissing(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** A ByteSource over a file of known size; every read opens the file anew. */
function fileSource(path: string, size: number): ByteSource {
  return {
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange(size, offset, length);
      let handle;
      try {
        handle = await open(path, 'r');
      } catch (error) {
        throw new FileReadError(path, `cannot open the file (${reasonOf(error)})`, { field: 'file' }, { cause: error });
      }
      try {
        return await readAtMost(handle, offset, Math.min(length, size - offset));
      } finally {
        await handle.close();
      }
    },
  };
}

/** The files of the folder `root` as a ModelFiles source. */
export function localDirectory(root: string, options: LocalDirectoryOptions = {}): ModelFiles {
  const base = resolve(root);
  const maxFiles = options.maxFiles ?? 100_000;
  const maxDepth = options.maxDepth ?? 8;

  async function openFile(name: string): Promise<{ path: string; source: ByteSource }> {
    checkFileName(base, name);
    const path = join(base, ...name.split('/'));
    let stats;
    try {
      stats = await stat(path);
    } catch (error) {
      if (isMissing(error)) throw new MissingFileError(path, `no such file in ${quoteName(base)}`, { field: 'file' }, { cause: error });
      throw new FileReadError(path, `cannot read the file (${reasonOf(error)})`, { field: 'file' }, { cause: error });
    }
    if (!stats.isFile()) throw new FileReadError(path, 'is not a regular file', { field: 'file' });
    return { path, source: fileSource(path, stats.size) };
  }

  return {
    name: base,
    async list() {
      const names: string[] = [];
      const walk = async (folder: string, prefix: string, depth: number): Promise<void> => {
        let entries: string[];
        try {
          entries = await readdir(folder);
        } catch (error) {
          if (isMissing(error) && depth === 0) throw new MissingFileError(base, 'no such folder', { field: 'folder' }, { cause: error });
          throw new FileReadError(folder, `cannot list the folder (${reasonOf(error)})`, { field: 'folder' }, { cause: error });
        }
        for (const entry of entries) {
          if (entry.startsWith('.')) continue; // .git, .cache, .gitattributes: not model files
          const path = join(folder, entry);
          let stats;
          try {
            stats = await stat(path); // follows symlinks
          } catch {
            continue; // a dangling link
          }
          if (stats.isDirectory()) {
            if (depth + 1 < maxDepth) await walk(path, `${prefix}${entry}/`, depth + 1);
          } else if (stats.isFile()) {
            names.push(`${prefix}${entry}`);
            if (names.length > maxFiles) throw new FileReadError(base, `holds more than ${maxFiles} files; is this a model folder?`, { field: 'folder' });
          }
        }
      };
      await walk(base, '', 0);
      return sortNames(names);
    },
    async open(name) {
      return (await openFile(name)).source;
    },
    async text(name) {
      const { path, source } = await openFile(name);
      return readText(source, path);
    },
  };
}
