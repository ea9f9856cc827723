// `tabtune info` from a folder and from a hub repository served by a local server (HF_ENDPOINT), then from the
// cache with the server gone; it reads config.json and the safetensors headers only and never takes the GPU.

import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesSource, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import { TestHub } from '../helpers/hubServer.ts';
import { runCli, runCliAsync } from './run.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MODELS = 'tests/fixtures/models';

/** What info must say about a fixture, computed here from its files (element counts from the headers). */
async function expectedInfo(fixture: string) {
  const folder = join(ROOT, MODELS, fixture);
  const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8'));
  let parameters = 0;
  let nf4 = 0;
  const dtypes = new Set<string>();
  for (const file of readdirSync(folder).filter((f) => f.endsWith('.safetensors') && f !== 'golden.safetensors')) {
    const header = await readSafetensorsHeader(bytesSource(new Uint8Array(readFileSync(join(folder, file)))), file);
    for (const entry of header.tensors) {
      if (/\.attn\.(masked_)?bias$/.test(entry.name)) continue; // GPT-2's causal-mask buffers are not weights
      const n = entry.shape.reduce((a, b) => a * b, 1);
      parameters += n;
      dtypes.add(entry.dtype);
      // Block projections in NF4: packed u32 words, an f32 absmax per 64 values, the 272-entry f32 table.
      const linear = /(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj|attn\.c_(attn|proj)|mlp\.c_(fc|proj))\.weight$/.test(entry.name);
      nf4 += linear ? Math.ceil(n / 8) * 4 + Math.ceil(n / 64) * 4 + 272 * 4 : n * 4;
    }
  }
  return { config, parameters, nf4, dtypes };
}

const NO_GPU = { TABTUNE_GPU: 'swiftshader', VK_ICD_FILENAMES: '/nonexistent/icd.json' };

describe('tabtune info', () => {
  it('describes a folder checkpoint without the GPU', async () => {
    for (const [fixture, heads, kvHeads] of [['llama', 4, 2], ['gpt2-noprefix-sharded', 4, 4]] as const) {
      const { config, parameters, nf4, dtypes } = await expectedInfo(fixture);
      expect(dtypes).toEqual(new Set(['BF16']));
      const result = await runCliAsync(['info', '--model', `${MODELS}/${fixture}`, '--json'], NO_GPU);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.trim().split('\n')).toHaveLength(1);
      expect(JSON.parse(result.stdout)).toEqual({
        architecture: config.model_type,
        parameterCount: parameters,
        layers: 2,
        hiddenSize: 32,
        heads,
        kvHeads,
        vocabSize: config.vocab_size,
        dtype: 'bfloat16',
        bytesF32: parameters * 4,
        bytesNf4: nf4,
      });
    }
    // The same environment does keep a command that needs the GPU from getting one.
    const gpuCommand = await runCliAsync(['logits', '--model', `${MODELS}/llama`, '--tokens', '1'], NO_GPU);
    expect(gpuCommand.status).toBe(1);
    expect(gpuCommand.stderr).toMatch(/no WebGPU adapter/);
  });

  it('prints a readable summary without --json', () => {
    const { status, stdout } = runCli(['info', '--model', `${MODELS}/llama`]);
    expect(status).toBe(0);
    expect(stdout).toMatch(/llama, 21,984 parameters \(bfloat16\)/);
    expect(stdout).toMatch(/2 layers, hidden size 32, 4 heads \(2 key\/value\), vocabulary 101/);
  });

  describe('from a hub repository', () => {
    const hub = new TestHub();
    hub.addFolder('tiny/llama', join(ROOT, MODELS, 'llama'), { skip: (file) => !['config.json', 'model.safetensors'].includes(file) });
    const cache = mkdtempSync(join(tmpdir(), 'tabtune-info-cache-'));
    let env: Record<string, string>;

    beforeAll(async () => {
      await hub.start();
      env = { ...NO_GPU, HF_ENDPOINT: hub.url, TABTUNE_CACHE: cache };
    });
    afterAll(() => hub.stop());

    it('downloads with progress on stderr, then works from the cache with the server stopped', async () => {
      const local = JSON.parse(runCli(['info', '--model', `${MODELS}/llama`, '--json']).stdout);
      const first = await runCliAsync(['info', '--model', 'tiny/llama', '--json'], env);
      expect(first.status, first.stderr).toBe(0);
      expect(JSON.parse(first.stdout)).toEqual(local);
      expect(first.stderr).toMatch(/tiny\/llama@main: \[\d\/\d\] model\.safetensors 100%/);
      expect(hub.paths).toContain('/tiny/llama/resolve/main/model.safetensors');

      const missing = await runCliAsync(['info', '--model', 'tiny/absent', '--json'], env);
      expect(missing.status).toBe(1);
      expect(missing.stderr.trim().split('\n')).toHaveLength(1);
      expect(missing.stderr).toMatch(/^tabtune info: .*tiny\/absent.*404/);

      // With the server gone, the id with its revision and a URL on the endpoint both name the cached files.
      const url = hub.url;
      await hub.stop();
      const requests = hub.log.length;
      for (const spec of ['tiny/llama@main', `${url}/tiny/llama`]) {
        const again = await runCliAsync(['info', '--model', spec, '--json'], env);
        expect(again.status, again.stderr).toBe(0);
        expect(JSON.parse(again.stdout)).toEqual(local);
      }
      expect(hub.log.length).toBe(requests);
    });
  });
});
