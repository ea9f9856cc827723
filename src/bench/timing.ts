// Median timing of GPU work, sized to the device: a warm-up run measures one call, then each
// sample records enough calls to last about `sampleMs`, and the median of the samples is reported.
// Slow software adapters get fewer, single-call samples so a benchmark never runs for minutes.

import type { Gpu } from '../gpu/runtime.ts';

export interface TimingOptions {
  sampleMs?: number;
  samples?: number;
}

/** Milliseconds per call of `record` (median over samples). */
export async function medianMsPerCall(gpu: Gpu, record: () => void, options: TimingOptions = {}): Promise<number> {
  const sampleMs = options.sampleMs ?? 50;
  const warmup = await gpu.time(record); // also compiles pipelines and fills the buffer pool
  const oneCall = warmup.gpuMs ?? warmup.wallMs;
  const calls = Math.max(1, Math.min(100, Math.round(sampleMs / Math.max(oneCall, 1e-3))));
  const samples = oneCall > 2000 ? 1 : oneCall > 500 ? 3 : (options.samples ?? 7);
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const { gpuMs, wallMs } = await gpu.time(() => {
      for (let call = 0; call < calls; call++) record();
    });
    times.push((gpuMs ?? wallMs) / calls);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
