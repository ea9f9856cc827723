// The worker's dataset tokenization is done once per (model, text, sequence length): the data panel's
// inspection and the run that follows share it, and any change of the three tokenizes again.

import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadChatTemplate } from '../../../src/io/chatTemplate.ts';
import { localDirectory } from '../../../src/io/sources/localDirectory.ts';
import { loadTokenizer } from '../../../src/io/tokenizer.ts';
import { loadModel } from '../../../src/models/load.ts';
import { parseDataset, tokenizeDataset } from '../../../src/train/data.ts';
import { tokenize } from '../../../src/worker/calls/dataset.ts';
import type { LoadedModel } from '../../../src/worker/engineState.ts';
import { BadRequestError } from '../../../src/worker/failures.ts';
import { testEngine } from '../../helpers/gpu.ts';

const DEMO = fileURLToPath(new URL('../../../public/demo/', import.meta.url));
const TEXT = 'In the beginning God created the heaven and the earth.\n\nAnd God said, Let there be light: and there was light.';

let loaded: LoadedModel;
beforeAll(async () => {
  const engine = await testEngine();
  const files = localDirectory(DEMO);
  const tokenizer = await loadTokenizer(files);
  const { model, plan } = await loadModel(engine, files);
  loaded = { model, tokenizer, chatTemplate: await loadChatTemplate(files, tokenizer), summary: null as never, quantized: false, files, plan };
});
afterAll(() => loaded?.model.dispose());

it('tokenizes a text once for the same model and sequence length, and again when any of them changes', () => {
  const first = tokenize(loaded, TEXT, 16);
  const expected = tokenizeDataset(parseDataset(TEXT), { tokenizer: loaded.tokenizer, chatTemplate: loaded.chatTemplate, maxTokens: 17, modelVocabSize: loaded.model.config.vocabSize });
  expect(first.examples.map((e) => [...e.ids])).toEqual(expected.examples.map((e) => [...e.ids]));
  expect(tokenize(loaded, `${TEXT}`, 16)).toBe(first); // an equal string, not only the same one
  const shorter = tokenize(loaded, TEXT, 8);
  expect(shorter).not.toBe(first);
  expect(shorter.stats.examples).toBeGreaterThan(first.stats.examples); // windows of 9 tokens
  expect(tokenize(loaded, TEXT, 16)).not.toBe(first); // only the last one is kept
  const other = { ...loaded };
  expect(tokenize(other, TEXT, 16)).not.toBe(tokenize(loaded, TEXT, 16));
  expect(() => tokenize(loaded, TEXT, 0)).toThrow(BadRequestError);
});
