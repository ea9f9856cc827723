// Shared by tests/peft/bottleneck*.test.ts: a float64 CPU reference of one bottleneck adapter module
// (forward and analytic backward), and access to the golden adapter fixtures of
// tests/fixtures/peft/make_bottleneck_golden.py.

import { readdirSync, readFileSync } from 'node:fs';
import type { BottleneckNonLinearity } from '../../src/peft/bottleneck.ts';
import { normalCdfReference } from '../../src/engine/reference/activation.ts';
import { bytesSource, readSafetensors } from '../../src/io/safetensors.ts';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** act(v) and act'(v) by AdapterHub's names. */
export function activationReference(name: BottleneckNonLinearity): { f: (v: number) => number; df: (v: number) => number } {
  switch (name) {
    case 'relu':
      return { f: (v) => Math.max(v, 0), df: (v) => (v > 0 ? 1 : 0) };
    case 'gelu':
      return {
        f: (v) => v * normalCdfReference(v),
        df: (v) => normalCdfReference(v) + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI),
      };
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
      return {
        f: (v) => 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v ** 3))),
        df: (v) => {
          const t = Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v ** 3));
          return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v);
        },
      };
    case 'swish':
    case 'silu':
      return { f: (v) => v * sigmoid(v), df: (v) => sigmoid(v) * (1 + v * (1 - sigmoid(v))) };
  }
}

export interface AdapterWeights {
  downWeight: Float64Array; // [M, C]
  downBias: Float64Array; // [M]
  upWeight: Float64Array; // [C, M]
  upBias: Float64Array; // [C]
}

/** delta [R, C] = s · (W_up · act(W_down · x + b_down) + b_up) for x [R, C]; also the pre-activation d [R, M]. */
export function bottleneckReference(x: ArrayLike<number>, w: AdapterWeights, R: number, C: number, M: number, s: number, act: BottleneckNonLinearity) {
  const { f } = activationReference(act);
  const d = new Float64Array(R * M);
  const a = new Float64Array(R * M);
  const out = new Float64Array(R * C);
  for (let r = 0; r < R; r++) {
    for (let m = 0; m < M; m++) {
      let sum = w.downBias[m];
      for (let c = 0; c < C; c++) sum += x[r * C + c] * w.downWeight[m * C + c];
      d[r * M + m] = sum;
      a[r * M + m] = f(sum);
    }
    for (let c = 0; c < C; c++) {
      let sum = w.upBias[c];
      for (let m = 0; m < M; m++) sum += a[r * M + m] * w.upWeight[c * M + m];
      out[r * C + c] = s * sum;
    }
  }
  return { out, d, a };
}

/** Gradients of Σ delta · dOut. */
export function bottleneckBackwardReference(
  x: ArrayLike<number>,
  w: AdapterWeights,
  dOut: ArrayLike<number>,
  R: number,
  C: number,
  M: number,
  s: number,
  act: BottleneckNonLinearity,
) {
  const { df } = activationReference(act);
  const { d, a } = bottleneckReference(x, w, R, C, M, s, act);
  const dx = new Float64Array(R * C);
  const dDownWeight = new Float64Array(M * C);
  const dDownBias = new Float64Array(M);
  const dUpWeight = new Float64Array(C * M);
  const dUpBias = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    const dd = new Float64Array(M);
    for (let c = 0; c < C; c++) {
      const du = s * dOut[r * C + c];
      dUpBias[c] += du;
      for (let m = 0; m < M; m++) {
        dUpWeight[c * M + m] += du * a[r * M + m];
        dd[m] += du * w.upWeight[c * M + m];
      }
    }
    for (let m = 0; m < M; m++) {
      const g = dd[m] * df(d[r * M + m]);
      dDownBias[m] += g;
      for (let c = 0; c < C; c++) {
        dDownWeight[m * C + c] += g * x[r * C + c];
        dx[r * C + c] += g * w.downWeight[m * C + c];
      }
    }
  }
  return { dx, dDownWeight, dDownBias, dUpWeight, dUpBias };
}

export const PEFT_FIXTURES = new URL('../fixtures/peft/bottleneck/', import.meta.url);

export const GOLDEN_CASES = [
  { name: 'gpt2-houlsby', fixture: 'gpt2' },
  { name: 'gpt2-noprefix-pfeiffer', fixture: 'gpt2-noprefix-sharded' },
  { name: 'llama-pfeiffer', fixture: 'llama' },
  { name: 'llama-houlsby', fixture: 'llama' },
  { name: 'qwen2-gelu', fixture: 'qwen2' },
  { name: 'llama3-custom', fixture: 'llama3' },
] as const;

/** The adapter files of a golden case (adapter_config.json, adapter.safetensors), in memory. */
export function adapterFiles(caseName: string): Map<string, Uint8Array> {
  const folder = new URL(`${caseName}/`, PEFT_FIXTURES);
  const files = new Map<string, Uint8Array>();
  for (const file of readdirSync(folder).sort()) {
    if (file !== 'golden.safetensors') files.set(file, new Uint8Array(readFileSync(new URL(file, folder))));
  }
  return files;
}

export async function readAdapterGolden(caseName: string): Promise<{ ids: number[][]; shape: number[]; logits: Float32Array; shift: number }> {
  const bytes = new Uint8Array(readFileSync(new URL(`${caseName}/golden.safetensors`, PEFT_FIXTURES)));
  const { header, tensors } = await readSafetensors(bytesSource(bytes), 'golden.safetensors');
  const logits = tensors.get('logits')!;
  if (logits.dtype !== 'F32') throw new Error('golden logits must be F32');
  return {
    ids: JSON.parse(header.metadata.get('input_ids')!) as number[][],
    shape: [...logits.shape],
    logits: logits.data,
    shift: Number(header.metadata.get('max_shift_from_base')),
  };
}
