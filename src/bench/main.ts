// `npm run bench [-- --json] [-- --quick] [-- --only matmul,nf4,lora,attention,train,profile]`: kernel throughput and
// end-to-end training steps on the device this machine has. Shapes are the ones training uses (SmolLM-135M-like:
// hidden 576, MLP 1536, LoRA rank 8, 9/3 attention heads of 64, 512 tokens), kernels timed as the median of
// several runs after a warm-up, with GPU timestamps when the adapter has them; training steps by wall clock over
// several steps after warm-up steps. `profile` (only when asked for) times every kernel of one training step.

import { acquireNodeGpu } from '../gpu/node.ts';
import { Engine } from '../engine/engine.ts';
import { runMatmulBenchmarks } from './matmulBench.ts';
import { runAttentionBenchmarks } from './attentionBench.ts';
import { runLoraBenchmarks } from './loraBench.ts';
import { runNf4Benchmarks } from './nf4Bench.ts';
import { runTrainBenchmarks, runTrainProfiles } from './trainBench.ts';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const onlyAt = process.argv.indexOf('--only');
const SUITES = ['matmul', 'nf4', 'lora', 'attention', 'train'];
const ON_REQUEST = ['profile'];
const suites = new Set(onlyAt >= 0 ? (process.argv[onlyAt + 1] ?? '').split(',') : SUITES);
for (const suite of suites) {
  if (!SUITES.includes(suite) && !ON_REQUEST.includes(suite)) {
    process.stderr.write(`bench: unknown suite ${JSON.stringify(suite)}; choose from ${[...SUITES, ...ON_REQUEST].join(', ')}\n`);
    process.exit(1);
  }
}
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
// The training steps' utilisation is measured against the best matmul rate of this run (a real-GPU ceiling).
const matmul = suites.has('matmul') || suites.has('train') ? await runMatmulBenchmarks(engine, { quick: small, tokens, log }) : [];
const nf4 = suites.has('nf4') ? await runNf4Benchmarks(engine, { quick: small, tokens, log }) : [];
const lora = suites.has('lora') ? await runLoraBenchmarks(engine, { quick: small, log }) : [];
const attention = suites.has('attention') ? await runAttentionBenchmarks(engine, { quick: small, tokens, log }) : [];
const ceilingGflops = matmul.length ? Math.max(...matmul.map((row) => row.gflops)) : null;
const train = suites.has('train') ? await runTrainBenchmarks(engine, { quick: small, ceilingGflops, log }) : [];
const profile = suites.has('profile') ? await runTrainProfiles(engine, { quick: small, log }) : [];
const report = { date: new Date().toISOString(), device, tokens, timing: gpu.info.features.timestampQuery ? 'gpu-timestamps' : 'wall-clock', matmul, nf4, lora, attention, ceilingGflops, train, profile };

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
  console.log(`\n${'attention (B×T, heads/kv heads, D)'.padEnd(34)}${'fwd ms'.padStart(10)}${'GFLOP/s'.padStart(10)}${'fwd+bwd ms'.padStart(12)}${'GFLOP/s'.padStart(10)}`);
  for (const row of attention) {
    const name = `${row.kernel}${row.chosen ? '*' : ''} ${row.B}×${row.T}, ${row.H}/${row.KVH}, ${row.D}`;
    console.log(`${name.padEnd(34)}${row.forwardMs.toFixed(3).padStart(10)}${row.forwardGflops.toFixed(2).padStart(10)}${row.trainMs.toFixed(3).padStart(12)}${row.trainGflops.toFixed(2).padStart(10)}`);
  }
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  console.log(`\n${'training step'.padEnd(34)}${'ms/step'.padStart(10)}${'tokens/s'.padStart(10)}${'MFU'.padStart(7)}${'submits'.padStart(9)}${'passes'.padStart(8)}${'peak MiB (frozen/quant/adapter/grad/opt/act)'.padStart(48)}`);
  for (const row of train) {
    const m = row.peakMemory;
    const parts = [m.frozenWeights, m.quantState, m.adapters, m.gradients, m.optimizerState, m.activations].map(mib).join('/');
    const mfu = row.mfu === null ? '—' : `${(100 * row.mfu).toFixed(0)}%`;
    console.log(`${`${row.method} ${row.batch}×${row.seqLen} ${row.model}`.padEnd(34)}${row.msPerStep.toFixed(1).padStart(10)}${row.tokensPerSecond.toFixed(0).padStart(10)}${mfu.padStart(7)}${String(row.perStep.submits).padStart(9)}${String(row.perStep.passes).padStart(8)}${`${mib(m.total)} (${parts})`.padStart(48)}`);
  }
  for (const run of profile) {
    console.log(`\n${`kernels of one ${run.method} step, ${run.batch}×${run.seqLen} ${run.model}`.padEnd(48)}${'calls'.padStart(7)}${'ms'.padStart(9)}${'share'.padStart(8)}`);
    for (const k of run.kernels.slice(0, 20)) {
      console.log(`${k.kernel.padEnd(48)}${String(k.dispatches).padStart(7)}${k.ms.toFixed(2).padStart(9)}${`${((100 * k.ms) / run.kernelMs).toFixed(1)}%`.padStart(8)}`);
    }
    console.log(`${'all kernels'.padEnd(48)}${String(run.kernels.reduce((n, k) => n + k.dispatches, 0)).padStart(7)}${run.kernelMs.toFixed(2).padStart(9)}${run.untimed ? `  (+${run.untimed} untimed)` : ''}`);
  }
}
gpu.destroy();
process.exit(0);
