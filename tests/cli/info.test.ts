// `tabtune info` from a folder and from a hub repository served by a local server (HF_ENDPOINT), then from the
// cache with the server gone; it reads config.json and the safetensors headers only and never takes the GPU.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesSource, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import { runCli } from './run.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MODELS = 'tests/fixtures/models';

type Result = { status: number; stdout: string; stderr: string };

/** The CLI in a child process that does not block this one (which serves the hub). */
function runCliAsync(args: string[], env: Record<string, string>): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status: status ?? -1, stdout, stderr }));
  });
}

/** A hub with one repository, `tiny/llama` at `main`: the listing API and `/{repo}/resolve/{rev}/{file}`. */
class FixtureHub {
  readonly requests: string[] = [];
  private server: Server | null = null;
  url = '';

  constructor(private readonly files: Map<string, Uint8Array>) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      this.requests.push(path);
      const send = (status: number, body: string | Uint8Array) => {
        res.writeHead(status, { 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (path === '/api/models/tiny/llama/revision/main') {
        const siblings = [...this.files].map(([rfilename, bytes]) => ({ rfilename, size: bytes.byteLength }));
        return send(200, JSON.stringify({ id: 'tiny/llama', siblings }));
      }
      const match = /^\/tiny\/llama\/resolve\/main\/(.+)$/.exec(path);
      const bytes = match ? this.files.get(match[1]) : undefined;
      if (bytes === undefined) return send(404, 'Entry not found');
      send(200, bytes);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

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
    const folder = join(ROOT, MODELS, 'llama');
    const files = new Map(['config.json', 'model.safetensors'].map((f) => [f, new Uint8Array(readFileSync(join(folder, f)))]));
    const hub = new FixtureHub(files);
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
      expect(hub.requests).toContain('/tiny/llama/resolve/main/model.safetensors');

      const missing = await runCliAsync(['info', '--model', 'tiny/absent', '--json'], env);
      expect(missing.status).toBe(1);
      expect(missing.stderr.trim().split('\n')).toHaveLength(1);
      expect(missing.stderr).toMatch(/^tabtune info: .*tiny\/absent.*404/);

      // With the server gone, the id with its revision and a URL on the endpoint both name the cached files.
      const url = hub.url;
      await hub.stop();
      const requests = hub.requests.length;
      for (const spec of ['tiny/llama@main', `${url}/tiny/llama`]) {
        const again = await runCliAsync(['info', '--model', spec, '--json'], env);
        expect(again.status, again.stderr).toBe(0);
        expect(JSON.parse(again.stdout)).toEqual(local);
      }
      expect(hub.requests.length).toBe(requests);
    });
  });
});
