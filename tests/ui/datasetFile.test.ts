// Dataset files dropped or chosen in the data panel: UTF-8 text is read; empty, oversized, non-UTF-8 and binary
// files are refused with a message that names the file.

import { describe, expect, it } from 'vitest';
import { DatasetFileError, decodeDatasetFile, MAX_DATASET_FILE_BYTES, readDatasetFile } from '../../src/ui/datasetFile.ts';

const utf8 = (text: string) => new TextEncoder().encode(text);

function refusal(run: () => unknown): DatasetFileError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DatasetFileError);
    return error as DatasetFileError;
  }
  throw new Error('expected a DatasetFileError');
}

describe('decodeDatasetFile', () => {
  it('reads UTF-8 text as it is (JSON lines, accents, CRLF)', () => {
    const text = '{"prompt": "Café?", "completion": " oui"}\r\n{"text": "naïve — ok"}\n';
    expect(decodeDatasetFile('data.jsonl', utf8(text))).toBe(text);
  });

  it('refuses an empty or white-space-only file', () => {
    expect(refusal(() => decodeDatasetFile('empty.txt', new Uint8Array(0))).message).toBe('"empty.txt": is empty');
    expect(refusal(() => decodeDatasetFile('blank.txt', utf8('\uFEFF \n\n\t'))).message).toBe('"blank.txt": has no text, only white space');
  });

  it('refuses bytes that are not UTF-8, naming the file', () => {
    const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13);
    const error = refusal(() => decodeDatasetFile('picture.png', png));
    expect(error.message).toBe('"picture.png": is not UTF-8 text (a binary file?): datasets are .txt or .jsonl text');
    expect(error.file).toBe('picture.png');
    // Latin-1 "café" is not UTF-8 either.
    expect(refusal(() => decodeDatasetFile('latin1.txt', Uint8Array.of(0x63, 0x61, 0x66, 0xe9))).message).toContain('"latin1.txt": is not UTF-8 text');
  });

  it('refuses a file with NUL bytes even when it decodes as UTF-8', () => {
    expect(refusal(() => decodeDatasetFile('data.bin', Uint8Array.of(0x61, 0x00, 0x62))).message).toBe(
      '"data.bin": contains NUL bytes, so it is a binary file, not text: datasets are .txt or .jsonl text',
    );
  });

  it('refuses a file over the size cap before reading it', async () => {
    expect(MAX_DATASET_FILE_BYTES).toBe(32 * 2 ** 20);
    const big = new File([new Uint8Array(MAX_DATASET_FILE_BYTES + 1)], 'huge.jsonl');
    await expect(readDatasetFile(big)).rejects.toThrow('"huge.jsonl": is 33,554,433 bytes (32.0 MiB), over the 32 MiB limit for a dataset file');
    const ok = new File([utf8('hello\n')], 'small.txt');
    await expect(readDatasetFile(ok)).resolves.toBe('hello\n');
  });
});
