// Picked adapter files → the files of one adapter: a tabtune bundle, a zip (at the top, in a folder, with macOS
// clutter), or the two PEFT files; and every wrong pick refused with an AdapterPickError (or the safetensors
// reader's own typed error) naming the picked file.

import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/io/errors.ts';
import { writeSafetensors } from '../../src/io/safetensorsWriter.ts';
import { writeZip } from '../../src/io/zipFiles.ts';
import { bundleAdapter } from '../../src/worker/adapterBundle.ts';
import { AdapterPickError, readPickedAdapter, type PickedFile } from '../../src/worker/pickedAdapter.ts';

const text = (s: string) => new TextEncoder().encode(s);
const PEFT_CONFIG = '{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}';
const HUB_CONFIG = '{"config": {"mh_adapter": false, "output_adapter": true}, "name": "default", "version": "adapters.1.3.0"}';
const WEIGHTS = writeSafetensors([{ name: 'base_model.model.x.lora_A.weight', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }], { format: 'pt' });

const same = (a: Uint8Array | undefined, b: Uint8Array) => expect(Buffer.from(a!).equals(Buffer.from(b))).toBe(true);

async function expectPickError(picked: PickedFile[], file: string, message: RegExp, field?: string): Promise<void> {
  const error = await readPickedAdapter(picked).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AdapterPickError);
  expect((error as AdapterPickError).file).toBe(file);
  expect((error as Error).message).toMatch(message);
  if (field !== undefined) expect((error as AdapterPickError).field).toBe(field);
}

describe('accepted picks', () => {
  it('a tabtune bundle gives the config and the weights file of its layout', async () => {
    const bundle = bundleAdapter({ layout: 'peft', configFile: 'adapter_config.json', config: PEFT_CONFIG, weightsFile: 'adapter_model.safetensors', weights: WEIGHTS });
    const picked = await readPickedAdapter([{ name: 'tabtune-lora-adapter.safetensors', bytes: bundle }]);
    expect(picked).toMatchObject({ layout: 'peft', source: 'tabtune-lora-adapter.safetensors', packed: true });
    expect([...picked.files.keys()]).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(new TextDecoder().decode(picked.files.get('adapter_config.json'))).toBe(PEFT_CONFIG);
    same(picked.files.get('adapter_model.safetensors'), WEIGHTS);

    const hub = bundleAdapter({ layout: 'adapterhub', configFile: 'adapter_config.json', config: HUB_CONFIG, weightsFile: 'adapter.safetensors', weights: WEIGHTS });
    const fromHub = await readPickedAdapter([{ name: 'b.safetensors', bytes: hub }]);
    expect(fromHub.layout).toBe('adapterhub');
    same(fromHub.files.get('adapter.safetensors'), WEIGHTS);
  });

  it('a zip with the files at the top, or in one folder with macOS clutter beside it', async () => {
    const top = writeZip([['adapter_config.json', text(PEFT_CONFIG)], ['adapter_model.safetensors', WEIGHTS]]);
    const picked = await readPickedAdapter([{ name: 'a.zip', bytes: top }]);
    expect(picked).toMatchObject({ layout: 'peft', source: 'a.zip', packed: true });
    same(picked.files.get('adapter_model.safetensors'), WEIGHTS);

    const folder = writeZip([
      ['__MACOSX/my-adapter/._adapter_config.json', text('junk')],
      ['my-adapter/adapter_config.json', text(HUB_CONFIG)],
      ['my-adapter/adapter.safetensors', WEIGHTS],
      ['my-adapter/.DS_Store', text('junk')],
      ['README.md', text('# notes')],
    ]);
    const fromFolder = await readPickedAdapter([{ name: 'renamed.bin', bytes: folder }]); // a zip by its bytes, whatever its name
    expect(fromFolder.layout).toBe('adapterhub');
    expect([...fromFolder.files.keys()].sort()).toEqual(['adapter.safetensors', 'adapter_config.json']);
  });

  it('the two PEFT files picked together', async () => {
    const picked = await readPickedAdapter([
      { name: 'adapter_model.safetensors', bytes: WEIGHTS },
      { name: 'adapter_config.json', bytes: text(PEFT_CONFIG) },
    ]);
    expect(picked).toMatchObject({ layout: 'peft', source: 'adapter_model.safetensors + adapter_config.json', packed: false });
  });

  it('a config without a weights file goes to the importer of its kind (which names what is missing)', async () => {
    const hubOnly = await readPickedAdapter([{ name: 'a.zip', bytes: writeZip([['adapter_config.json', text(HUB_CONFIG)], ['pytorch_adapter.bin', text('pickle')]]) }]);
    expect(hubOnly.layout).toBe('adapterhub');
    const peftOnly = await readPickedAdapter([{ name: 'a.zip', bytes: writeZip([['adapter_config.json', text(PEFT_CONFIG)], ['adapter_model.bin', text('pickle')]]) }]);
    expect(peftOnly.layout).toBe('peft');
  });
});

describe('refused picks', () => {
  it('a text file renamed .safetensors: the safetensors reader names the file', async () => {
    const error = await readPickedAdapter([{ name: 'notes.safetensors', bytes: text('These are my notes about the adapter, not an adapter.\n') }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FormatError);
    expect((error as FormatError).file).toBe('notes.safetensors');
    expect(error).toBeInstanceOf(AdapterPickError);
    expect((error as Error).message).toMatch(/^"notes\.safetensors": is not a safetensors file \(header length \d+ is over the \d+-byte cap; refused without reading it\)$/);
  });

  it('a plain safetensors file, a config alone, another kind of file, nothing', async () => {
    await expectPickError([{ name: 'adapter_model.safetensors', bytes: WEIGHTS }], 'adapter_model.safetensors', /without tabtune's adapter metadata: pick adapter_config\.json together with it/, '__metadata__');
    await expectPickError([{ name: 'adapter_config.json', bytes: text(PEFT_CONFIG) }], 'adapter_config.json', /needs its weights file/);
    await expectPickError([{ name: 'model.onnx', bytes: text('onnx') }], 'model.onnx', /is not an adapter file: pick a tabtune adapter \.safetensors/);
    await expectPickError([], 'the picked files', /are none/);
  });

  it('a damaged bundle, and one naming unexpected files', async () => {
    const bundle = bundleAdapter({ layout: 'peft', configFile: 'adapter_config.json', config: PEFT_CONFIG, weightsFile: 'adapter_model.safetensors', weights: WEIGHTS });
    // Same-length edits of the header's JSON, byte for byte (the data section is not text).
    const relabel = (from: string, to: string) => {
      const at = Buffer.from(bundle).indexOf(from);
      expect(at).toBeGreaterThan(0);
      const out = bundle.slice();
      out.set(text(to), at);
      return out;
    };
    await expectPickError([{ name: 'x.safetensors', bytes: relabel('"tabtune.layout":"peft"', '"tabtune.layout":"lora"') }], 'x.safetensors', /damaged tabtune adapter bundle: unknown adapter layout "lora"/);
    await expectPickError(
      [{ name: 'x.safetensors', bytes: relabel('"tabtune.weights_file":"adapter_model.safetensors"', '"tabtune.weights_file":"adapter_other.safetensors"') }],
      'x.safetensors',
      /unexpected files/,
    );
  });

  it('zips with no adapter, two adapters, or two weights files; a zip picked with other files', async () => {
    await expectPickError([{ name: 'a.zip', bytes: writeZip([['adapter_model.safetensors', WEIGHTS]]) }], 'a.zip', /has "adapter_model\.safetensors" but no adapter_config\.json beside it/, 'adapter_config.json');
    await expectPickError([{ name: 'a.zip', bytes: writeZip([['notes.txt', text('hi')]]) }], 'a.zip', /holds no adapter_config\.json/);
    const two = writeZip([
      ['one/adapter_config.json', text(PEFT_CONFIG)],
      ['one/adapter_model.safetensors', WEIGHTS],
      ['two/adapter_config.json', text(PEFT_CONFIG)],
      ['two/adapter_model.safetensors', WEIGHTS],
    ]);
    await expectPickError([{ name: 'a.zip', bytes: two }], 'a.zip', /holds 2 adapters \("one\/adapter_config\.json", "two\/adapter_config\.json"\)/);
    const both = writeZip([['adapter_config.json', text(PEFT_CONFIG)], ['adapter_model.safetensors', WEIGHTS], ['adapter.safetensors', WEIGHTS]]);
    await expectPickError([{ name: 'a.zip', bytes: both }], 'a.zip', /holds both adapter_model\.safetensors \(PEFT LoRA\) and adapter\.safetensors/);
    await expectPickError(
      [
        { name: 'a.zip', bytes: writeZip([['adapter_config.json', text(PEFT_CONFIG)]]) },
        { name: 'adapter_config.json', bytes: text(PEFT_CONFIG) },
      ],
      'a.zip',
      /pick it on its own/,
    );
    await expectPickError(
      [
        { name: 'adapter_config.json', bytes: text(PEFT_CONFIG) },
        { name: 'adapter_config.json', bytes: text(PEFT_CONFIG) },
      ],
      'adapter_config.json',
      /picked twice/,
    );
  });

  it('a damaged zip is named by the zip reader', async () => {
    const zip = writeZip([['adapter_config.json', text(PEFT_CONFIG)], ['adapter_model.safetensors', WEIGHTS]]);
    const error = await readPickedAdapter([{ name: 'cut.zip', bytes: zip.subarray(0, zip.byteLength - 30) }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FormatError);
    expect((error as FormatError).file).toBe('cut.zip');
    expect((error as Error).message).toMatch(/not a zip archive/);
  });
});
