// Files the user picked (`<input type="file" multiple webkitdirectory>`) or dropped (a folder or loose files) in
// the browser. Browser APIs only (no Node). Files are read lazily by slices, so a multi-GB checkpoint is never
// loaded whole. Paths are relative to the picked folder: a top folder shared by every file is removed, so
// `my-model/config.json` is opened as `config.json`.

import { FormatError, quoteName } from '../errors.ts';
import { blobSource, type BlobLike } from '../byteSource.ts';
import { fileNameProblem, MissingFileError, readText, sortNames, type ModelFiles } from './types.ts';

/** A picked file: a File (its `webkitRelativePath` is used when set), or a blob with an explicit path. */
export type PickedFile = (BlobLike & { readonly name: string; readonly webkitRelativePath?: string }) | { readonly path: string; readonly file: BlobLike };

/** Two picked files with the same path. */
export class DuplicateFileError extends FormatError {}

export interface BrowserFiles extends ModelFiles {
  /** Picked files that were left out because their path is not a plain relative name, with the reason. */
  readonly skipped: readonly string[];
}

function pathOf(file: PickedFile): { path: string; blob: BlobLike } {
  if ('path' in file && 'file' in file) return { path: file.path, blob: file.file };
  const picked = file as BlobLike & { name: string; webkitRelativePath?: string };
  return { path: picked.webkitRelativePath || picked.name, blob: picked };
}

/** A ModelFiles source over picked or dropped files. `name` describes them in messages (default: the shared top folder). */
export function browserFiles(picked: Iterable<PickedFile> | ArrayLike<PickedFile>, options: { name?: string } = {}): BrowserFiles {
  const entries = Array.from(picked as ArrayLike<PickedFile>, pathOf).map(({ path, blob }) => ({ path: path.replace(/^\/+/, ''), blob }));
  const firstSegments = new Set(entries.map((e) => (e.path.includes('/') ? e.path.slice(0, e.path.indexOf('/')) : '')));
  const top = firstSegments.size === 1 && !firstSegments.has('') ? [...firstSegments][0] : null;
  const name = options.name ?? (top !== null ? top : `${entries.length} picked files`);

  const files = new Map<string, BlobLike>();
  const skipped: string[] = [];
  for (const { path, blob } of entries) {
    const relative = top !== null ? path.slice(top.length + 1) : path;
    const problem = fileNameProblem(relative);
    if (problem !== null) {
      skipped.push(`${quoteName(relative)} ${problem}`);
      continue;
    }
    if (files.has(relative)) throw new DuplicateFileError(name, `two picked files are both named ${quoteName(relative)}`, { field: 'file name' });
    files.set(relative, blob);
  }

  const get = (file: string): BlobLike => {
    const blob = files.get(file);
    if (blob === undefined) throw new MissingFileError(file, `is not among the files picked from ${quoteName(name)}`, { field: 'file' });
    return blob;
  };

  return {
    name,
    skipped,
    async list() {
      return sortNames(files.keys());
    },
    async open(file) {
      return blobSource(get(file));
    },
    async text(file) {
      return readText(blobSource(get(file)), file);
    },
  };
}

/** What {@link filesFromDataTransfer} needs of the File and Directories Entries API. */
interface EntryLike {
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  readonly fullPath: string;
}
interface FileEntryLike extends EntryLike {
  file(success: (file: File) => void, failure?: (error: unknown) => void): void;
}
interface DirectoryEntryLike extends EntryLike {
  createReader(): { readEntries(success: (entries: EntryLike[]) => void, failure?: (error: unknown) => void): void };
}

/**
 * The files of a drop (folders walked recursively), with their paths, for {@link browserFiles}.
 * Call it synchronously inside the drop handler: the entries must be taken before the event returns.
 */
export function filesFromDataTransfer(items: DataTransferItemList, options: { maxFiles?: number } = {}): Promise<PickedFile[]> {
  const maxFiles = options.maxFiles ?? 100_000;
  const roots: EntryLike[] = [];
  for (let i = 0; i < items.length; i++) {
    const entry = items[i].kind === 'file' ? (items[i].webkitGetAsEntry() as EntryLike | null) : null;
    if (entry !== null) roots.push(entry);
  }
  const out: PickedFile[] = [];
  const visit = async (entry: EntryLike): Promise<void> => {
    if (out.length >= maxFiles) throw new FormatError('dropped files', `more than ${maxFiles} files`, { field: 'file count' });
    if (entry.isFile) {
      const file = await new Promise<File>((ok, fail) => (entry as FileEntryLike).file(ok, fail));
      out.push({ path: entry.fullPath, file });
    } else if (entry.isDirectory) {
      const reader = (entry as DirectoryEntryLike).createReader();
      for (;;) {
        // readEntries returns at most ~100 entries per call; an empty batch ends the folder.
        const batch = await new Promise<EntryLike[]>((ok, fail) => reader.readEntries(ok, fail));
        if (batch.length === 0) break;
        for (const child of batch) await visit(child);
      }
    }
  };
  return (async () => {
    for (const root of roots) await visit(root);
    return out;
  })();
}
