import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors, readSafetensorsHeader, readTensorBytes } from '../../src/io/safetensors.ts';
import { withNodeFileSource } from '../../src/io/nodeFileSource.ts';
import { findBnbLayers, quantStateFromBnbTensors, type TensorRecord } from '../../src/quant/bnbLayout.ts';
import { quantize4bit } from '../../src/quant/quantize.ts';
import { runCli } from './run.ts';

const MODELS = 'tests/fixtures/models';

async function readAll(path: string) {
  return withNodeFileSource(path, async (source) => readSafetensors(source, path));
}

/** Every tensor's raw bytes, as bnbLayout's records. */
async function records(path: string): Promise<Map<string, TensorRecord>> {
  return withNodeFileSource(path, async (source) => {
    const header = await readSafetensorsHeader(source, path);
    const map = new Map<string, TensorRecord>();
    for (const entry of header.tensors) {
      map.set(entry.name, { dtype: entry.dtype, shape: [...entry.shape], bytes: await readTensorBytes(source, header, entry.name) });
    }
    return map;
  });
}

describe('tabtune quantize', () => {
  for (const [model, doubleQuant, quantType] of [['llama', true, 'nf4'], ['gpt2', false, 'fp4']] as const) {
    it(`writes every linear weight of ${model} in the bitsandbytes Linear4bit layout (${quantType}${doubleQuant ? ', double quant' : ''})`, async () => {
      const out = join(mkdtempSync(join(tmpdir(), 'tabtune-q-')), 'model-4bit.safetensors');
      const args = ['quantize', '--model', `${MODELS}/${model}`, '--out', out, '--quant-type', quantType, '--json'];
      const { status, stdout, stderr } = runCli(doubleQuant ? [...args, '--double-quant'] : args);
      expect(status, stderr).toBe(0);
      const summary = JSON.parse(stdout);
      expect(summary).toMatchObject({ out, quantType, blocksize: 64, doubleQuant });

      const source = await readAll(`${MODELS}/${model}/model.safetensors`);
      const quantized = await records(out);
      const originalBytes = await records(`${MODELS}/${model}/model.safetensors`);
      const layers = findBnbLayers(quantized.keys());
      expect(layers.length).toBe(summary.quantizedLinears);
      expect(layers.length).toBe(model === 'llama' ? 2 * 7 : 2 * 4);
      for (const layer of layers) {
        const prefix = layer.prefix;
        const suffixes = ['weight', 'weight.absmax', 'weight.quant_map', `weight.quant_state.bitsandbytes__${quantType}`];
        if (doubleQuant) suffixes.push('weight.nested_absmax', 'weight.nested_quant_map');
        for (const suffix of suffixes) expect(quantized.has(prefix + suffix), prefix + suffix).toBe(true);
        // The codes are those of the CPU reference quantizer applied to the original weight
        // (GPT-2's Conv1D [in, out] is quantized as the Linear [out, in] bitsandbytes makes of it).
        const state = quantStateFromBnbTensors(prefix, quantized);
        const original = source.tensors.get(`${prefix}weight`)!;
        let data = original.data as Float32Array;
        let shape = [...original.entry.shape];
        if (model === 'gpt2') {
          const [rows, cols] = shape;
          const t = new Float32Array(data.length);
          for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = data[r * cols + c];
          data = t;
          shape = [cols, rows];
        }
        const expected = quantize4bit(`${prefix}weight`, data, shape, { quantType, blocksize: 64, doubleQuant });
        expect(state.shape).toEqual(shape);
        expect(Buffer.from(state.packed).equals(Buffer.from(expected.packed))).toBe(true);
      }
      // Everything else is copied byte for byte.
      for (const name of source.tensors.keys()) {
        if (layers.some((layer) => name === `${layer.prefix}weight`)) continue;
        const copy = quantized.get(name)!;
        expect(copy, name).toBeDefined();
        expect(Buffer.from(copy.bytes).equals(Buffer.from(originalBytes.get(name)!.bytes))).toBe(true);
      }
    });
  }

  it('refuses a bad block size by name and writes nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tabtune-q-'));
    const { status, stderr } = runCli(['quantize', '--model', `${MODELS}/llama`, '--out', join(dir, 'x.safetensors'), '--blocksize', '48']);
    expect(status).toBe(1);
    expect(stderr).toContain('block size 48 is not a power of two between 32 and 4096');
    expect(stderr).not.toContain('    at ');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('reports a missing model folder as a one-line error', () => {
    const { status, stderr } = runCli(['quantize', '--model', 'no/such/folder', '--out', 'x.safetensors']);
    expect(status).toBe(1);
    expect(stderr).toMatch(/no such folder/);
    expect(existsSync('x.safetensors')).toBe(false);
  });
});
