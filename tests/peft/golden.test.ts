// PEFT adapters made by an independent PyTorch reference (tests/fixtures/peft/make_lora_golden.py): importing
// them reproduces the reference's adapted logits; exporting them again gives the bytes PEFT writes; disable,
// merge and unmerge behave as PEFT's do, on the Llama family and on GPT-2's Conv1D (fan_in_fan_out).

import { afterAll, describe, expect, it } from 'vitest';
import { bytesSource, readSafetensors } from '../../src/io/safetensors.ts';
import { loadModel } from '../../src/models/load.ts';
import { tokenTensor } from '../../src/models/model.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../../src/peft/adapterErrors.ts';
import { exportLoraAdapter, importLoraAdapter } from '../../src/peft/peftFiles.ts';
import { DenseLinear } from '../../src/models/linear.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, relativeError } from '../helpers/numeric.ts';
import { fixtureProvider } from '../models/helpers.ts';
import { adapterFiles, filesProvider, PEFT_CASES, readPeftGolden } from './helpers.ts';

const engine = await testEngine();
const seen: string[] = [];
afterAll(() => console.info(seen.join('\n')));

describe.each(PEFT_CASES)('%s', (name) => {
  it('import reproduces the reference logits; export writes PEFT\'s bytes; disable, merge, unmerge', async () => {
    const golden = await readPeftGolden(name);
    const { model } = await loadModel(engine, fixtureProvider(golden.fixture));
    const baseName = `tests/fixtures/models/${golden.fixture}`;
    try {
      await engine.scope(async () => {
        const ids = tokenTensor(engine, golden.ids, model.config.vocabSize);
        const base = (await model.forward(ids).read()) as Float32Array;
        const originalWeights = new Map<string, Float32Array>();
        for (const [path, module] of model.linears().entries()) originalWeights.set(path, (await (module as DenseLinear).weight.read()) as Float32Array);

        const files = adapterFiles(name);
        const { peft, warnings, config } = await importLoraAdapter(model, filesProvider(files), { baseModelName: baseName });
        expect(warnings).toEqual([]);
        expect(config.baseModelNameOrPath).toBe(baseName);

        // Adapted logits against the float64 reference.
        const adapted = (await peft.forward(ids).read()) as Float32Array;
        expect([...peft.forward(ids).shape]).toEqual(golden.shape);
        const error = relativeError(adapted, golden.logits);
        expectClose(adapted, golden.logits, 1e-4, `${name} adapted logits`);
        expect(golden.shift).toBeGreaterThan(1); // the adapter really changes the model
        expect(relativeError(base, golden.logits)).toBeGreaterThan(0.05);

        // Export: the very bytes PEFT (and safetensors' save_file) write.
        const exported = await exportLoraAdapter(peft, { baseModelNameOrPath: baseName });
        expect([...exported.keys()].sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]);
        expect(new TextDecoder().decode(exported.get(ADAPTER_CONFIG_FILE))).toBe(new TextDecoder().decode(files.get(ADAPTER_CONFIG_FILE)));
        const expectedFile = await readSafetensors(bytesSource(files.get(ADAPTER_WEIGHTS_FILE)!), 'expected');
        const actualFile = await readSafetensors(bytesSource(exported.get(ADAPTER_WEIGHTS_FILE)!), 'exported');
        expect([...actualFile.header.metadata]).toEqual([['format', 'pt']]);
        expect(actualFile.header.tensors.map((t) => [t.name, t.dtype, [...t.shape]])).toEqual(expectedFile.header.tensors.map((t) => [t.name, t.dtype, [...t.shape]]));
        for (const t of actualFile.header.tensors) {
          expect(t.name).toMatch(golden.fixture === 'gpt2' ? /^base_model\.model\.transformer\.h\.\d+\.(attn|mlp)\.c_\w+\.lora_[AB]\.weight$/ : /^base_model\.model\.model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.lora_[AB]\.weight$/);
        }
        expect(Buffer.from(exported.get(ADAPTER_WEIGHTS_FILE)!).equals(Buffer.from(files.get(ADAPTER_WEIGHTS_FILE)!))).toBe(true);

        // Disabled: the base model's logits, without reloading.
        const disabled = (await peft.withAdaptersDisabled(() => peft.forward(ids)).read()) as Float32Array;
        expect(relativeError(disabled, base)).toBe(0);

        // Merged: the adapted function from the base weights alone; unmerged: the base again.
        await peft.merge();
        const merged = (await peft.forward(ids).read()) as Float32Array;
        const mergeError = relativeError(merged, adapted);
        expectClose(merged, adapted, 1e-5, `${name} merged vs adapted`);
        peft.unmerge();
        let weightError = 0;
        for (const module of peft.loraModules()) {
          const restored = (await (module.base as DenseLinear).weight.read()) as Float32Array;
          weightError = Math.max(weightError, relativeError(restored, originalWeights.get(module.path)!));
        }
        expect(weightError).toBeLessThan(1e-6);
        const unmerged = (await peft.forward(ids).read()) as Float32Array;
        const unmergeError = relativeError(await peft.withAdaptersDisabled(() => peft.forward(ids)).read(), base);
        expect(unmergeError).toBeLessThan(1e-6);
        expectClose(unmerged, adapted, 1e-5, `${name} after unmerge`);
        seen.push(
          `${name}: adapted vs reference ${error.toExponential(2)}, merged vs adapted ${mergeError.toExponential(2)}, ` +
            `weights after merge+unmerge ${weightError.toExponential(2)}, base logits after unmerge ${unmergeError.toExponential(2)}`,
        );
        engine.clearTape(); // the forwards above recorded (A and B require gradients); nothing is trained here
      });
    } finally {
      model.dispose();
    }
  });
});
