// The one-file adapter download: a safetensors file whose metadata carries the config; both files come back out.

import { expect, it } from 'vitest';
import { bytesSource, readSafetensors, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensorsWriter.ts';
import { bundleAdapter, unbundleAdapter } from '../../src/worker/adapterBundle.ts';

it('bundles the config into the weights file metadata and gets both files back', async () => {
  const a = new Float32Array([1, 2, 3, 4, 5, 6]);
  const b = new Float32Array([-1.5, 0.25, 7]);
  const weights = writeSafetensors(
    [
      { name: 'x.lora_A.weight', dtype: 'F32', shape: [2, 3], data: a },
      { name: 'x.lora_B.weight', dtype: 'F32', shape: [3, 1], data: b },
    ],
    { format: 'pt' },
  );
  const config = '{"peft_type": "LORA", "r": 2, "note": "quotes \\" and ünïcode"}';
  const bundle = bundleAdapter({ layout: 'peft', configFile: 'adapter_config.json', config, weightsFile: 'adapter_model.safetensors', weights });
  const header = await readSafetensorsHeader(bytesSource(bundle), 'bundle.safetensors');
  expect(header.headerLength % 8).toBe(0);
  expect(header.metadata.get('format')).toBe('pt');
  expect(header.metadata.get('tabtune.bundle')).toBe('1');
  expect(header.metadata.get('tabtune.config')).toBe(config);
  const { tensors } = await readSafetensors(bytesSource(bundle), 'bundle.safetensors');
  expect(Array.from(tensors.get('x.lora_A.weight')!.data as Float32Array)).toEqual(Array.from(a));
  expect(Array.from(tensors.get('x.lora_B.weight')!.data as Float32Array)).toEqual(Array.from(b));
  const back = unbundleAdapter(bundle);
  expect(back).toMatchObject({ layout: 'peft', configFile: 'adapter_config.json', config, weightsFile: 'adapter_model.safetensors' });
  expect(Array.from(back.weights)).toEqual(Array.from(weights));
  expect(() => unbundleAdapter(weights)).toThrow(/not a tabtune adapter bundle/);
});
