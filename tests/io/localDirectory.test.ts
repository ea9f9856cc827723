import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileReadError, ShardIndexError } from '../../src/io/errors.ts';
import { browserFiles, DuplicateFileError, filesFromDataTransfer } from '../../src/io/sources/browserFiles.ts';
import { localDirectory } from '../../src/io/sources/localDirectory.ts';
import { findWeightFiles, MissingFileError, TextFileError, UnsafeFileNameError, fileNameProblem, type ModelFiles } from '../../src/io/sources/types.ts';

let root: string;
const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tabtune-local-'));
  const model = join(root, 'model');
  await mkdir(join(model, 'sub', 'deeper'), { recursive: true });
  await mkdir(join(model, '.git'));
  await writeFile(join(model, 'config.json'), '{"model_type": "llama"}');
  await writeFile(join(model, 'with-bom.json'), new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"a": 1}')]));
  await writeFile(join(model, 'latin1.txt'), new Uint8Array([0x63, 0x61, 0x66, 0xe9]));
  await writeFile(join(model, 'weights.bin'), bytes(1000));
  await writeFile(join(model, 'sub', 'deeper', 'x.json'), '[]');
  await writeFile(join(model, '.git', 'HEAD'), 'ref');
  await writeFile(join(root, 'blob'), 'linked');
  await symlink(join(root, 'blob'), join(model, 'linked.txt')); // as in the huggingface_hub cache's snapshot folders
  await symlink(join(root, 'missing'), join(model, 'dangling.txt'));

  const sharded = join(root, 'sharded');
  await mkdir(sharded);
  await writeFile(
    join(sharded, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { a: 'model-00002-of-00002.safetensors', b: 'model-00001-of-00002.safetensors' } }),
  );
  const evil = join(root, 'evil');
  await mkdir(evil);
  await writeFile(join(evil, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../../etc/passwd.safetensors' } }));
  const single = join(root, 'single');
  await mkdir(single);
  await writeFile(join(single, 'model.safetensors'), bytes(16));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

describe('localDirectory', () => {
  it('lists files recursively, sorted, following links and skipping dot folders and dangling links', async () => {
    const files = localDirectory(join(root, 'model'));
    expect(files.name).toBe(join(root, 'model'));
    expect(await files.list()).toEqual(['config.json', 'latin1.txt', 'linked.txt', 'sub/deeper/x.json', 'weights.bin', 'with-bom.json']);
    expect(await localDirectory(join(root, 'model'), { maxDepth: 2 }).list()).not.toContain('sub/deeper/x.json');
  });

  it('reads byte ranges and text', async () => {
    const files = localDirectory(join(root, 'model'));
    const source = await files.open('weights.bin');
    expect(source.size).toBe(1000);
    expect(await source.read(10, 5)).toEqual(bytes(1000).subarray(10, 15));
    expect(await source.read(995, 100)).toEqual(bytes(1000).subarray(995));
    expect(await files.text('config.json')).toBe('{"model_type": "llama"}');
    expect(await files.text('with-bom.json')).toBe('{"a": 1}');
    expect(await files.text('sub/deeper/x.json')).toBe('[]');
    expect(await files.text('linked.txt')).toBe('linked');
  });

  it('typed errors: missing file or folder, unsafe names, not a file, not UTF-8', async () => {
    const files = localDirectory(join(root, 'model'));
    const missing = await rejection(files.open('tokenizer.json'));
    expect(missing).toBeInstanceOf(MissingFileError);
    expect((missing as MissingFileError).file).toBe(join(root, 'model', 'tokenizer.json'));
    for (const name of ['../blob', 'sub/../../blob', '/etc/passwd', 'sub//x', 'a\\b', 'C:/x', 'https://x/y', '', 'a\u0000b']) {
      const error = await rejection(files.text(name));
      expect(error, name).toBeInstanceOf(UnsafeFileNameError);
      expect((error as UnsafeFileNameError).field).toBe('file name');
    }
    const folder = await rejection(files.open('sub'));
    expect(folder).toBeInstanceOf(FileReadError);
    expect(folder.message).toMatch(/not a regular file/);
    const latin1 = await rejection(files.text('latin1.txt'));
    expect(latin1).toBeInstanceOf(TextFileError);
    expect(latin1.message).toMatch(/not valid UTF-8/);
    expect(await rejection(localDirectory(join(root, 'nope')).list())).toBeInstanceOf(MissingFileError);
    expect(await rejection(localDirectory(join(root, 'model'), { maxFiles: 2 }).list())).toBeInstanceOf(FileReadError);
  });
});

describe('findWeightFiles', () => {
  it('reads the shard index first and returns its shards in order', async () => {
    const found = await findWeightFiles(localDirectory(join(root, 'sharded')));
    expect(found.files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(found.index?.weightMap.get('a')).toBe('model-00002-of-00002.safetensors');
  });

  it('falls back to model.safetensors, and names what is missing', async () => {
    expect(await findWeightFiles(localDirectory(join(root, 'single')))).toEqual({ files: ['model.safetensors'], index: null });
    const error = await rejection(findWeightFiles(localDirectory(join(root, 'model'))));
    expect(error).toBeInstanceOf(MissingFileError);
    expect(error.message).toMatch(/neither model.safetensors.index.json nor model.safetensors/);
  });

  it('refuses shard names that escape the folder before opening them', async () => {
    const opened: string[] = [];
    const inner = localDirectory(join(root, 'evil'));
    const spy: ModelFiles = { ...inner, open: (name) => (opened.push(name), inner.open(name)), text: (name) => (opened.push(name), inner.text(name)) };
    const error = await rejection(findWeightFiles(spy));
    expect(error).toBeInstanceOf(ShardIndexError);
    expect(error.message).toMatch(/"\.\.\/\.\.\/etc\/passwd\.safetensors".*refused/);
    expect(opened).toEqual(['model.safetensors.index.json']);
  });
});

describe('browserFiles (picked or dropped files; Node\'s File stands in for the browser\'s)', () => {
  const picked = (path: string, content: string | Uint8Array<ArrayBuffer>) => {
    const file = new File([content], path.split('/').at(-1)!);
    Object.defineProperty(file, 'webkitRelativePath', { value: path });
    return file;
  };

  it('a picked folder: the shared top folder is removed, files read by slices', async () => {
    const files = browserFiles([picked('tiny-llama/config.json', '{"a":1}'), picked('tiny-llama/model.safetensors', bytes(64)), picked('tiny-llama/sub/t.json', '1')]);
    expect(files.name).toBe('tiny-llama');
    expect(await files.list()).toEqual(['config.json', 'model.safetensors', 'sub/t.json']);
    expect(await files.text('config.json')).toBe('{"a":1}');
    const source = await files.open('model.safetensors');
    expect(source.size).toBe(64);
    expect(await source.read(60, 10)).toEqual(bytes(64).subarray(60));
    expect(await rejection(files.text('tokenizer.json'))).toBeInstanceOf(MissingFileError);
  });

  it('loose files keep their names; unsafe names are skipped and reported; duplicates refused', async () => {
    const loose = browserFiles([new File(['x'], 'config.json'), { path: 'weird\u0001name', file: new Blob(['y']) }]);
    expect(await loose.list()).toEqual(['config.json']);
    expect(loose.skipped).toEqual(['"weird\\u0001name" has control characters']);
    expect(() => browserFiles([{ path: 'a/x.json', file: new Blob(['1']) }, { path: 'a/x.json', file: new Blob(['2']) }])).toThrow(DuplicateFileError);
  });

  it('a dropped folder is walked through the entries API, in batches', async () => {
    const fileEntry = (fullPath: string, content: string) => ({ isFile: true, isDirectory: false, fullPath, file: (ok: (f: File) => void) => ok(new File([content], fullPath.split('/').at(-1)!)) });
    const batches = [[fileEntry('/m/config.json', '{}'), fileEntry('/m/a.txt', 'a')], [fileEntry('/m/b.txt', 'b')], []];
    const folder = { isFile: false, isDirectory: true, fullPath: '/m', createReader: () => ({ readEntries: (ok: (e: unknown[]) => void) => ok(batches.shift() ?? []) }) };
    const items = Object.assign([{ kind: 'file', webkitGetAsEntry: () => folder }], { length: 1 }) as unknown as DataTransferItemList;
    const files = browserFiles(await filesFromDataTransfer(items));
    expect(files.name).toBe('m');
    expect(await files.list()).toEqual(['a.txt', 'b.txt', 'config.json']);
    expect(await files.text('b.txt')).toBe('b');
  });

  it('file name rules', () => {
    expect(fileNameProblem('model-00001-of-00002.safetensors')).toBeNull();
    expect(fileNameProblem('onnx/model.onnx')).toBeNull();
    expect(fileNameProblem('./x')).toMatch(/"\." segment/);
    expect(fileNameProblem('x'.repeat(300))).toMatch(/longer than 255/);
  });
});
