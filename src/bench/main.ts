// `npm run bench [-- --json] [-- --quick]`: kernel throughput on the device this machine has.
// Shapes are the ones training uses (SmolLM-135M-like: hidden 576, MLP 1536, LoRA rank 8, 512 tokens),
// timed as the median of several runs after a warm-up, with GPU timestamps when the adapter has them.

import { acquireNodeGpu } from '../gpu/node.ts';
import { Engine } from '../engine/engine.ts';
import { runMatmulBenchmarks } from './matmulBench.ts';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const log = (line: string) => process.stderr.write(`${line}\n`);

const gpu = await acquireNodeGpu();
const engine = new Engine(gpu);
const device = { vendor: gpu.info.vendor, architecture: gpu.info.architecture, description: gpu.info.description, features: gpu.info.features };
log(`device: ${[device.vendor, device.architecture, device.description].filter(Boolean).join(' · ')}`);

// A software adapter (SwiftShader, llvmpipe) runs at about 1 GFLOP/s: only the quick set fits in minutes there.
const software = /swiftshader|llvmpipe|lavapipe/i.test(`${device.architecture} ${device.description}`);
const matmul = await runMatmulBenchmarks(engine, { quick: quick || software, log });
const report = { date: new Date().toISOString(), device, timing: gpu.info.features.timestampQuery ? 'gpu-timestamps' : 'wall-clock', matmul };

if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
else {
  console.log(`\n${'kernel'.padEnd(34)}${'M×N×K'.padEnd(20)}${'ms'.padStart(10)}${'GFLOP/s'.padStart(10)}`);
  for (const row of matmul) {
    console.log(`${row.name.padEnd(34)}${`${row.M}×${row.N}×${row.K}`.padEnd(20)}${row.ms.toFixed(3).padStart(10)}${row.gflops.toFixed(2).padStart(10)}`);
  }
}
gpu.destroy();
process.exit(0);
