// The bottleneck adapter module (src/peft/bottleneck.ts) against its float64 reference: forward and every
// gradient for each non-linearity and several shapes (one row; token counts that take the split-K path of
// the LoRA product kernels; widths that take the big-tile GEMM), the reference against finite
// differences, the initialisations, the config presets and the typed errors.

import { afterAll, describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../src/engine/errors.ts';
import type { Tensor } from '../../src/engine/tensor.ts';
import {
  BOTTLENECK_NON_LINEARITIES,
  BottleneckAdapter,
  BottleneckError,
  projection,
  uploadInto,
  type BottleneckNonLinearity,
} from '../../src/peft/bottleneck.ts';
import {
  BOTTLENECK_PRESETS,
  bottleneckConfig,
  planBottleneck,
  pythonFloorDivide,
  reductionFactorOf,
} from '../../src/peft/bottleneckModel.ts';
import { parseModelConfig } from '../../src/models/config.ts';
import { testEngine } from '../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, relativeError, rng, toF32 } from '../helpers/numeric.ts';
import { bottleneckBackwardReference, bottleneckReference, type AdapterWeights } from './bottleneckHelpers.ts';

const engine = await testEngine();
const seen: string[] = [];
afterAll(() => console.info(`max relative errors vs the float64 reference:\n  ${seen.join('\n  ')}`));

interface Case {
  lead: number[];
  C: number;
  M: number;
  scaling: number;
  act: BottleneckNonLinearity;
}

// R = 1, 7, 70 (dW over 70 rows splits K), 65 (C = M = 64: y = a · W_upᵀ runs on the big-tile GEMM).
const cases: Case[] = [
  { lead: [1], C: 32, M: 2, scaling: 1, act: 'relu' },
  { lead: [7], C: 48, M: 5, scaling: 0.5, act: 'gelu' },
  { lead: [2, 35], C: 33, M: 3, scaling: 2, act: 'swish' },
  { lead: [65], C: 64, M: 64, scaling: 1, act: 'gelu_new' },
  { lead: [1, 7], C: 16, M: 1, scaling: 1, act: 'silu' },
  { lead: [3, 5], C: 24, M: 6, scaling: -1.5, act: 'gelu_pytorch_tanh' },
];

const product = (shape: number[]) => shape.reduce((p, x) => p * x, 1);

function randomWeights(C: number, M: number, seed: number): AdapterWeights {
  const random = rng(seed);
  return {
    downWeight: randomArray(M * C, random, 0.6),
    downBias: randomArray(M, random, 0.5),
    upWeight: randomArray(C * M, random, 0.6),
    upBias: randomArray(C, random, 0.5),
  };
}

function setWeights(adapter: BottleneckAdapter, w: AdapterWeights): void {
  uploadInto(adapter.downWeight, toF32(w.downWeight), 'down weight');
  uploadInto(adapter.downBias, toF32(w.downBias), 'down bias');
  uploadInto(adapter.upWeight, toF32(w.upWeight), 'up weight');
  uploadInto(adapter.upBias, toF32(w.upBias), 'up bias');
}

describe('BottleneckAdapter', () => {
  it.each(cases)('GPU forward and gradients match the float64 reference: %o', async (c) => {
    const R = product(c.lead);
    const random = rng(R * 7 + c.C * 3 + c.M);
    const x = randomArray(R * c.C, random, 2);
    const dOut = randomArray(R * c.C, random);
    const w = randomWeights(c.C, c.M, R + c.C);
    const adapter = new BottleneckAdapter(engine, { hiddenSize: c.C, downSize: c.M, nonLinearity: c.act, scaling: c.scaling });
    try {
      setWeights(adapter, w);
      await engine.scope(async () => {
        const input = engine.tensor(toF32(x), [...c.lead, c.C], { requiresGrad: true });
        const { delta } = adapter.delta(input);
        expect(delta.shape).toEqual([...c.lead, c.C]);
        const expected = bottleneckReference(x, w, R, c.C, c.M, c.scaling, c.act).out;
        const actual = await delta.read();
        expectClose(actual, expected, 1e-4, 'delta');
        engine.backward(delta, engine.tensor(toF32(dOut), delta.shape));
        const grads = bottleneckBackwardReference(x, w, dOut, R, c.C, c.M, c.scaling, c.act);
        const pairs: [string, Tensor, Float64Array][] = [
          ['dx', input, grads.dx],
          ['dW_down', adapter.downWeight, grads.dDownWeight],
          ['db_down', adapter.downBias, grads.dDownBias],
          ['dW_up', adapter.upWeight, grads.dUpWeight],
          ['db_up', adapter.upBias, grads.dUpBias],
        ];
        let worst = relativeError(actual, expected);
        for (const [what, tensor, reference] of pairs) {
          const grad = await tensor.grad!.read();
          worst = Math.max(worst, relativeError(grad, reference));
          expectClose(grad, reference, 1e-4, what);
        }
        seen.push(`R ${R}, C ${c.C}, M ${c.M}, ${c.act}: ${worst.toExponential(2)}`);
      });
    } finally {
      for (const tensor of adapter.parameters().values()) {
        tensor.grad?.dispose();
        tensor.grad = null;
      }
      adapter.dispose();
    }
  });

  it('forward() adds the residual', async () => {
    const w = randomWeights(8, 2, 5);
    const adapter = new BottleneckAdapter(engine, { hiddenSize: 8, downSize: 2, nonLinearity: 'relu' });
    try {
      setWeights(adapter, w);
      const x = randomArray(24, rng(1));
      const residual = randomArray(24, rng(2));
      await engine.scope(async () => {
        const out = adapter.forward(engine.tensor(toF32(x), [3, 8]), engine.tensor(toF32(residual), [3, 8]));
        const delta = bottleneckReference(x, w, 3, 8, 2, 1, 'relu').out;
        expectClose(await out.read(), delta.map((v, i) => v + residual[i]), 1e-5);
      });
    } finally {
      adapter.dispose();
    }
  });

  it.each(BOTTLENECK_NON_LINEARITIES)('reference gradients agree with central finite differences: %s', (act) => {
    const [R, C, M, s] = [3, 5, 2, 0.7];
    const random = rng(act.length * 31);
    const x = randomArray(R * C, random, 2);
    const w = randomWeights(C, M, 77);
    const weights = randomArray(R * C, random);
    const loss = (xs: Float64Array, ws: AdapterWeights) => dot(bottleneckReference(xs, ws, R, C, M, s, act).out, weights);
    const grads = bottleneckBackwardReference(x, w, weights, R, C, M, s, act);
    expectClose(numericGradient((v) => loss(v, w), x), grads.dx, 1e-6, 'dx');
    const fields = [
      ['downWeight', grads.dDownWeight],
      ['downBias', grads.dDownBias],
      ['upWeight', grads.dUpWeight],
      ['upBias', grads.dUpBias],
    ] as const;
    for (const [field, reference] of fields) {
      expectClose(numericGradient((v) => loss(x, { ...w, [field]: v }), w[field]), reference, 1e-6, field);
    }
  });

  it('the mam_adapter init is the exact identity: Kaiming-uniform down, everything else zero', async () => {
    const C = 64;
    const adapter = new BottleneckAdapter(engine, { hiddenSize: C, downSize: 4, nonLinearity: 'relu', seed: 3 });
    try {
      const down = Array.from(await adapter.downWeight.read());
      const bound = 1 / Math.sqrt(C);
      expect(Math.max(...down.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...down.map(Math.abs))).toBeGreaterThan(0.8 * bound);
      for (const tensor of [adapter.downBias, adapter.upWeight, adapter.upBias]) expect(Array.from(await tensor.read()).every((v) => v === 0)).toBe(true);
      await engine.scope(async () => {
        const { delta } = adapter.delta(engine.tensor(toF32(randomArray(5 * C, rng(4), 3)), [5, C]));
        expect(Array.from(await delta.read()).every((v) => v === 0)).toBe(true);
      });
      for (const tensor of adapter.parameters().values()) {
        expect(tensor.category).toBe('adapters');
        expect(tensor.requiresGrad).toBe(true);
      }
      expect(adapter.parameterCount).toBe(2 * 4 * C + 4 + C);
    } finally {
      adapter.dispose();
    }
  });

  it('bert and houlsby inits: small non-zero weights, zero biases; seeded and reproducible', async () => {
    const read = async (init: 'bert' | 'houlsby', seed: number) => {
      const adapter = new BottleneckAdapter(engine, { hiddenSize: 128, downSize: 16, nonLinearity: 'relu', init, seed });
      try {
        return {
          down: Array.from(await adapter.downWeight.read()),
          up: Array.from(await adapter.upWeight.read()),
          biases: [...(await adapter.downBias.read()), ...(await adapter.upBias.read())],
        };
      } finally {
        adapter.dispose();
      }
    };
    const std = (values: number[]) => Math.sqrt(values.reduce((s, v) => s + v * v, 0) / values.length);
    const bert = await read('bert', 1);
    expect(std(bert.down)).toBeGreaterThan(0.018);
    expect(std(bert.down)).toBeLessThan(0.022);
    expect(std(bert.up)).toBeGreaterThan(0.018);
    expect(bert.biases.every((v) => v === 0)).toBe(true);
    const houlsby = await read('houlsby', 1);
    expect(Math.max(...houlsby.down.map(Math.abs), ...houlsby.up.map(Math.abs))).toBeLessThanOrEqual(0.02);
    expect(std(houlsby.up)).toBeGreaterThan(0.006);
    expect((await read('bert', 1)).down).toEqual(bert.down);
    expect((await read('bert', 2)).down).not.toEqual(bert.down);
  });

  it('rejects bad sizes, options and inputs with typed errors', async () => {
    expect(() => new BottleneckAdapter(engine, { hiddenSize: 0, downSize: 1, nonLinearity: 'relu' })).toThrow(BottleneckError);
    expect(() => new BottleneckAdapter(engine, { hiddenSize: 8, downSize: 1.5, nonLinearity: 'relu' })).toThrow(BottleneckError);
    expect(() => new BottleneckAdapter(engine, { hiddenSize: 8, downSize: 2, nonLinearity: 'tanh' as BottleneckNonLinearity })).toThrow(/non-linearity/);
    expect(() => new BottleneckAdapter(engine, { hiddenSize: 8, downSize: 2, nonLinearity: 'relu', scaling: Infinity })).toThrow(BottleneckError);
    expect(() => new BottleneckAdapter(engine, { hiddenSize: 8, downSize: 2, nonLinearity: 'relu', dropout: 1 })).toThrow(BottleneckError);
    const adapter = new BottleneckAdapter(engine, { hiddenSize: 8, downSize: 2, nonLinearity: 'relu' });
    try {
      engine.scope(() => {
        expect(() => adapter.delta(engine.zeros([3, 7]))).toThrow(ShapeError);
        expect(() => adapter.delta(engine.tensor(new Int32Array(8), [1, 8]))).toThrow(DTypeError);
        expect(() => projection(engine.zeros([3, 8]), engine.zeros([2, 7]))).toThrow(ShapeError);
      });
    } finally {
      adapter.dispose();
    }
    expect(() => adapter.delta(engine.zeros([1, 8]))).toThrow(/after dispose/);
  });

  it('dropout on the scaled up-projection follows the stream and reports the counters used', async () => {
    const adapter = new BottleneckAdapter(engine, { hiddenSize: 16, downSize: 4, nonLinearity: 'relu', dropout: 0.5 });
    try {
      setWeights(adapter, randomWeights(16, 4, 9));
      await engine.scope(async () => {
        const x = engine.tensor(toF32(randomArray(64, rng(3))), [4, 16]);
        const plain = Array.from(await adapter.delta(x).delta.read());
        const first = adapter.delta(x, { seed: 5, offset: 0 });
        const again = adapter.delta(x, { seed: 5, offset: 0 });
        expect(first.used).toBe(64);
        const dropped = Array.from(await first.delta.read());
        expect(Array.from(await again.delta.read())).toEqual(dropped);
        const zeros = dropped.filter((v) => v === 0).length;
        expect(zeros).toBeGreaterThan(10);
        expect(zeros).toBeLessThan(54);
        dropped.forEach((v, i) => {
          if (v !== 0) expect(Math.abs(v - 2 * plain[i])).toBeLessThan(1e-5 * Math.max(1, Math.abs(v)));
        });
      });
    } finally {
      adapter.dispose();
    }
  });
});

describe('configs and placements', () => {
  const llama = parseModelConfig(
    JSON.stringify({ model_type: 'llama', vocab_size: 10, hidden_size: 96, intermediate_size: 8, num_hidden_layers: 4, num_attention_heads: 4 }),
  );

  it('presets as AdapterHub defines them, overridable', () => {
    expect(BOTTLENECK_PRESETS.seq_bn).toMatchObject({ mhAdapter: false, outputAdapter: true, reductionFactor: 16, nonLinearity: 'relu', originalLnBefore: true });
    expect(BOTTLENECK_PRESETS.double_seq_bn).toMatchObject({ mhAdapter: true, outputAdapter: true, reductionFactor: 16, nonLinearity: 'swish', originalLnBefore: false });
    expect(bottleneckConfig('pfeiffer')).toEqual(BOTTLENECK_PRESETS.seq_bn);
    expect(bottleneckConfig('houlsby', { reductionFactor: 8 })).toMatchObject({ mhAdapter: true, reductionFactor: 8, nonLinearity: 'swish' });
    expect(() => bottleneckConfig('lora')).toThrow(/unknown bottleneck preset/);
    expect(() => bottleneckConfig('seq_bn', { reductionFactor: 0 })).toThrow(/reduction_factor/);
    expect(() => bottleneckConfig('seq_bn', { outputAdapter: false })).toThrow(/add nothing/);
    expect(() => bottleneckConfig('seq_bn', { reductionFactor: { '1': 4 } })).not.toThrow();
    expect(() => bottleneckConfig('seq_bn', { reductionFactor: { x: 4 } })).toThrow(/layer numbers/);
    expect(() => bottleneckConfig('seq_bn', { leaveOut: [-1] })).toThrow(/leave_out/);
  });

  it('Pfeiffer places one module per layer after the MLP, Houlsby two (after attention and after the MLP)', () => {
    const pfeiffer = planBottleneck(llama, bottleneckConfig('seq_bn'));
    expect(pfeiffer.map((p) => `${p.layer}:${p.slot}:${p.downSize}`)).toEqual([0, 1, 2, 3].map((i) => `${i}:output_adapters:6`));
    const houlsby = planBottleneck(llama, bottleneckConfig('double_seq_bn', { leaveOut: [2], reductionFactor: { '0': 4, default: 32 } }));
    expect(houlsby.map((p) => `${p.layer}:${p.site}:${p.downSize}`)).toEqual([
      '0:attention:24',
      '0:mlp:24',
      '1:attention:3',
      '1:mlp:3',
      '3:attention:3',
      '3:mlp:3',
    ]);
  });

  it('the bottleneck width is Python int(hidden // reduction_factor), at least 1', () => {
    expect(pythonFloorDivide(32, 16)).toBe(2);
    expect(pythonFloorDivide(1, 0.1)).toBe(9); // Python: 1 // 0.1 == 9.0
    expect(pythonFloorDivide(768, 3.5)).toBe(219);
    expect(pythonFloorDivide(7, 2)).toBe(3);
    expect(planBottleneck(llama, bottleneckConfig('seq_bn', { reductionFactor: 200 }))[0].downSize).toBe(1);
    expect(reductionFactorOf(bottleneckConfig('seq_bn', { reductionFactor: { '2': 3, default: 5 } }), 2)).toBe(3);
    expect(() => planBottleneck(llama, bottleneckConfig('seq_bn', { reductionFactor: { '0': 3 } }))).toThrow(/no entry for layer 1/);
  });
});
