// `npm run bench [-- --json] [-- --quick]`: kernel throughput on the device this machine has.
// Shapes are the ones training uses (SmolLM-135M-like: hidden 576, MLP 1536, LoRA rank 8, 512 tokens),
// timed as the median of several runs after a warm-up, with GPU timestamps when the adapter has them.

import { acquireNodeGpu } from '../gpu/node.ts';
import { Engine } from '../engine/engine.ts';
import { runMatmulBenchmarks } from './matmulBench.ts';
import { runLoraBenchmarks } from './loraBench.ts';
import { runNf4Benchmarks } from './nf4Bench.ts';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const log = (line: string) => process.stderr.write(`${line}\n`);

const gpu = await acquireNodeGpu();
const engine = new Engine(gpu);
const device = { vendor: gpu.info.vendor, architecture: gpu.info.architecture, description: gpu.info.description, features: gpu.info.features };
log(`device: ${[device.vendor, device.architecture, device.description].filter(Boolean).join(' · ')}`);

// A software adapter (SwiftShader, llvmpipe) runs at about 1 GFLOP/s: only the quick set fits in minutes there.
const software = gpu.info.software;
// Training batches of 512 tokens on a real GPU; 64 in quick mode.
const small = quick || software;
const tokens = small ? 64 : 512;
const matmul = await runMatmulBenchmarks(engine, { quick: small, tokens, log });
const nf4 = await runNf4Benchmarks(engine, { quick: small, tokens, log });
const lora = await runLoraBenchmarks(engine, { quick: small, log });
const report = { date: new Date().toISOString(), device, tokens, timing: gpu.info.features.timestampQuery ? 'gpu-timestamps' : 'wall-clock', matmul, nf4, lora };

if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
else {
  console.log(`\n${'kernel'.padEnd(34)}${'M×N×K'.padEnd(20)}${'ms'.padStart(10)}${'GFLOP/s'.padStart(10)}`);
  for (const row of matmul) {
    console.log(`${row.name.padEnd(34)}${`${row.M}×${row.N}×${row.K}`.padEnd(20)}${row.ms.toFixed(3).padStart(10)}${row.gflops.toFixed(2).padStart(10)}`);
  }
  console.log(`\n${'NF4 vs f32'.padEnd(34)}${'rows'.padStart(6)}${'dq'.padStart(4)}${'f32 GFLOP/s'.padStart(13)}${'nf4 GFLOP/s'.padStart(13)}${'time ratio'.padStart(12)}`);
  for (const row of nf4) {
    console.log(`${row.name.padEnd(34)}${String(row.rows).padStart(6)}${(row.doubleQuant ? 'yes' : 'no').padStart(4)}${row.f32Gflops.toFixed(2).padStart(13)}${row.nf4Gflops.toFixed(2).padStart(13)}${row.timeRatio.toFixed(2).padStart(12)}`);
  }
  console.log(`\n${'LoRA fwd+bwd (6 products)'.padEnd(34)}${'rank'.padStart(6)}${'LoRA ms'.padStart(10)}${'matmul ms'.padStart(11)}${'speed-up'.padStart(10)}`);
  for (const row of lora) {
    console.log(`${`${row.tokens}×${row.inFeatures}→${row.outFeatures}`.padEnd(34)}${String(row.rank).padStart(6)}${row.loraMs.toFixed(3).padStart(10)}${row.matmulMs.toFixed(3).padStart(11)}${row.speedup.toFixed(2).padStart(10)}`);
  }
}
gpu.destroy();
process.exit(0);
