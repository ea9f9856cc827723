import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { adamwStep } from '../../../src/engine/ops/adamw.ts';
import { clipScale, gradNorm, nonFiniteFlag } from '../../../src/engine/ops/gradNorm.ts';
import { adamwReference, type AdamWReferenceOptions, type AdamWState } from '../../../src/engine/reference/adamw.ts';
import type { Tensor } from '../../../src/engine/tensor.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { expectClose, randomArray, rng, toF32, toF64 } from '../../helpers/numeric.ts';

const engine = await testEngine();

/** Written by tests/fixtures/make_adamw_golden.py from torch.optim.AdamW and clip_grad_norm_. */
interface Golden {
  cases: {
    name: string;
    hyper: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number };
    maxNorm: number | null;
    params0: number[][];
    steps: { grads: number[][]; norm?: number; params: number[][]; m: number[][]; v: number[][] }[];
  }[];
}
const golden: Golden = JSON.parse(readFileSync(new URL('../../fixtures/adamw_golden.json', import.meta.url), 'utf8'));

interface GpuState {
  param: Tensor;
  m: Tensor;
  v: Tensor;
}

function upload(state: AdamWState): GpuState {
  const n = state.param.length;
  return {
    param: engine.tensor(toF32(state.param), [n]),
    m: engine.tensor(toF32(state.m), [n]),
    v: engine.tensor(toF32(state.v), [n]),
  };
}

async function expectState(gpu: GpuState, expected: AdamWState, tolerance: number, what: string): Promise<void> {
  expectClose(await gpu.param.read(), expected.param, tolerance, `${what}: param`);
  expectClose(await gpu.m.read(), expected.m, tolerance, `${what}: m`);
  expectClose(await gpu.v.read(), expected.v, tolerance, `${what}: v`);
}

const hyper = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05 };

describe('adamwStep', () => {
  it.each([1, 1000, 4099])('follows the float64 reference over six steps (n = %i)', async (n) => {
    const random = rng(n);
    let state: AdamWState = { param: randomArray(n, random), m: new Float64Array(n), v: new Float64Array(n) };
    await engine.scope(async () => {
      const gpu = upload(state);
      for (let step = 1; step <= 6; step++) {
        const grad = randomArray(n, random, 0.5);
        adamwStep(gpu.param, engine.tensor(toF32(grad), [n]), gpu.m, gpu.v, { ...hyper, step });
        state = adamwReference(state, grad, { ...hyper, step });
      }
      await expectState(gpu, state, 1e-5, `n = ${n}`);
    });
  });

  it('multiplies a GPU gradScale into the gradient, and honours the skip flag', async () => {
    const n = 300;
    const random = rng(3);
    const start: AdamWState = { param: randomArray(n, random), m: randomArray(n, random, 0.1), v: toF64(randomArray(n, random, 0.01).map(Math.abs)) };
    const grad = randomArray(n, random);
    const options: AdamWReferenceOptions = { ...hyper, step: 4, gradScale: Math.fround(0.37) };
    await engine.scope(async () => {
      const g = engine.tensor(toF32(grad), [n]);
      const gradScale = engine.tensor([0.37], []);

      const scaled = upload(start);
      adamwStep(scaled.param, g, scaled.m, scaled.v, { ...hyper, step: 4, gradScale });
      await expectState(scaled, adamwReference(start, grad, options), 1e-5, 'scaled');

      const skipped = upload(start);
      adamwStep(skipped.param, g, skipped.m, skipped.v, { ...hyper, step: 4, gradScale, skipFlag: engine.tensor(Uint32Array.of(1), []) });
      adamwStep(skipped.param, g, skipped.m, skipped.v, { ...hyper, step: 4, skipFlag: engine.tensor(Uint32Array.of(1), []) });
      expect(Array.from(await skipped.param.read())).toEqual(Array.from(toF32(start.param)));
      expect(Array.from(await skipped.m.read())).toEqual(Array.from(toF32(start.m)));
      expect(Array.from(await skipped.v.read())).toEqual(Array.from(toF32(start.v)));

      const kept = upload(start);
      adamwStep(kept.param, g, kept.m, kept.v, { ...hyper, step: 4, skipFlag: engine.tensor(Uint32Array.of(0), []) });
      await expectState(kept, adamwReference(start, grad, { ...hyper, step: 4 }), 1e-5, 'flag clear');
    });
  });

  it('a NaN gradient is skipped entirely when its norm flag guards the step', async () => {
    await engine.scope(async () => {
      const param = engine.tensor([1, 2, 3], [3]);
      const m = engine.zeros([3]);
      const v = engine.zeros([3]);
      const grad = engine.tensor([0.1, NaN, 0.3], [3]);
      const norm = gradNorm([grad]);
      adamwStep(param, grad, m, v, { ...hyper, step: 1, gradScale: clipScale(norm, 1), skipFlag: nonFiniteFlag(norm) });
      expect(await param.toArray()).toEqual([1, 2, 3]);
      expect(await m.toArray()).toEqual([0, 0, 0]);
      expect(await v.toArray()).toEqual([0, 0, 0]);
    });
  });

  it.each(golden.cases.map((c) => [c.name, c] as const))('matches PyTorch 1.13 AdamW golden values: %s', async (_name, c) => {
    // The float64 reference follows torch too (to f32 rounding of torch's own arithmetic).
    let reference: AdamWState[] = c.params0.map((p) => ({ param: toF64(p), m: new Float64Array(p.length), v: new Float64Array(p.length) }));
    await engine.scope(async () => {
      const states = reference.map(upload);
      for (const [index, step] of c.steps.entries()) {
        const grads = step.grads.map((g) => engine.tensor(toF32(g), [g.length]));
        let gradScale: Tensor | undefined;
        let scaleValue = 1;
        if (c.maxNorm !== null) {
          const norm = gradNorm(grads);
          expectClose(await norm.toArray(), [step.norm!], 1e-6, `step ${index + 1}: norm`);
          gradScale = clipScale(norm, c.maxNorm);
          scaleValue = (await gradScale.toArray())[0];
        }
        states.forEach((s, i) => adamwStep(s.param, grads[i], s.m, s.v, { ...c.hyper, step: index + 1, gradScale }));
        reference = reference.map((r, i) => adamwReference(r, step.grads[i], { ...c.hyper, step: index + 1, gradScale: scaleValue }));
        for (let i = 0; i < states.length; i++) {
          const expected: AdamWState = { param: toF64(step.params[i]), m: toF64(step.m[i]), v: toF64(step.v[i]) };
          await expectState(states[i], expected, 1e-5, `step ${index + 1}, tensor ${i}`);
          expectClose(reference[i].param, expected.param, 1e-5, `reference step ${index + 1}: param`);
          expectClose(reference[i].m, expected.m, 1e-5, `reference step ${index + 1}: m`);
          expectClose(reference[i].v, expected.v, 1e-5, `reference step ${index + 1}: v`);
        }
      }
    });
  });

  it('rejects mismatched tensors and invalid hyperparameters', () => {
    engine.scope(() => {
      const [p, g, m, v] = [engine.zeros([4]), engine.zeros([4]), engine.zeros([4]), engine.zeros([4])];
      expect(() => adamwStep(p, engine.zeros([5]), m, v, { lr: 1e-3, step: 1 })).toThrow(ShapeError);
      expect(() => adamwStep(p, g, engine.zeros([2, 2]), v, { lr: 1e-3, step: 1 })).toThrow(ShapeError);
      expect(() => adamwStep(p, g, m, engine.zeros([4], { dtype: 'i32' }), { lr: 1e-3, step: 1 })).toThrow(DTypeError);
      expect(() => adamwStep(p, g, m, v, { lr: 1e-3, step: 1, gradScale: engine.zeros([2]) })).toThrow(ShapeError);
      expect(() => adamwStep(p, g, m, v, { lr: 1e-3, step: 1, skipFlag: engine.zeros([]) })).toThrow(DTypeError);
      for (const bad of [{ step: 0 }, { step: 1.5 }, { lr: -1 }, { beta1: 1 }, { beta2: -0.1 }, { eps: NaN }, { weightDecay: -1 }]) {
        expect(() => adamwStep(p, g, m, v, { lr: 1e-3, step: 1, ...bad })).toThrow(RangeError);
      }
    });
  });
});
