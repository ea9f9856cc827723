// LoraLinear on each kind of base (dense nn.Linear [OUT, IN], GPT-2 Conv1D [IN, OUT], frozen 4-bit) against
// the float64 reference: PEFT's init, the forward y = base(x) + s · B(A · dropout(x)), gradients only in A and
// B, named adapters, disabling, merge / unmerge, and the typed errors of bad hyperparameters.

import { describe, expect, it } from 'vitest';
import type { Tensor } from '../../src/engine/tensor.ts';
import { dropoutReference } from '../../src/engine/reference/dropout.ts';
import { loraBackwardReference, loraReference } from '../../src/engine/reference/lora.ts';
import { DenseLinear, type Linear } from '../../src/models/linear.ts';
import { uploadQuantState } from '../../src/quant/gpuQuantize.ts';
import { dequantize4bit, quantize4bit } from '../../src/quant/quantize.ts';
import { Linear4bitModule } from '../../src/peft/linear4bitModule.ts';
import { kaimingUniform, LoraConfigError, LoraLinear, LoraRuntime, loraScaling } from '../../src/peft/loraLinear.ts';
import { testEngine } from '../helpers/gpu.ts';
import { expectClose, randomArray, relativeError, rng, toF32 } from '../helpers/numeric.ts';

const engine = await testEngine();
const [T, IN, OUT, R] = [5, 40, 24, 3];

type Kind = 'dense' | 'fanInFanOut' | '4bit';

/** A base module and its effective weight [OUT, IN] and bias as float64 (for the reference). */
function makeBase(kind: Kind, seed: number): { module: Linear; w: Float64Array; bias: Float64Array } {
  const random = rng(seed);
  const w = randomArray(OUT * IN, random, 0.3); // [OUT, IN]
  const bias = randomArray(OUT, random, 0.1);
  const biasTensor = engine.keep(engine.tensor(toF32(bias), [OUT]));
  if (kind === 'dense') {
    return { module: new DenseLinear('layer', engine.keep(engine.tensor(toF32(w), [OUT, IN])), biasTensor), w, bias };
  }
  if (kind === 'fanInFanOut') {
    const stored = new Float32Array(IN * OUT); // [IN, OUT]
    for (let o = 0; o < OUT; o++) for (let i = 0; i < IN; i++) stored[i * OUT + o] = w[o * IN + i];
    return { module: new DenseLinear('layer', engine.keep(engine.tensor(stored, [IN, OUT])), biasTensor, { fanInFanOut: true }), w, bias };
  }
  const state = quantize4bit('layer.weight', toF32(w), [OUT, IN], { blocksize: 32, doubleQuant: true });
  return { module: new Linear4bitModule('layer', uploadQuantState(engine, 'layer.weight', state), biasTensor), w: Float64Array.from(dequantize4bit(state)), bias };
}

/** base(x) = x · Wᵀ + b in float64. */
function baseReference(x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number>): Float64Array {
  const y = new Float64Array(T * OUT);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < OUT; o++) {
      let sum = bias[o];
      for (let i = 0; i < IN; i++) sum += x[t * IN + i] * w[o * IN + i];
      y[t * OUT + o] = sum;
    }
  }
  return y;
}

const read = async (t: Tensor) => Float64Array.from((await t.read()) as Float32Array);

describe.each<Kind>(['dense', 'fanInFanOut', '4bit'])('LoraLinear over a %s base', (kind) => {
  it('PEFT init leaves the output unchanged; forward and gradients match the reference; the base gets none', async () => {
    const { module: base, w, bias } = makeBase(kind, 7);
    const lora = new LoraLinear(base, new LoraRuntime(), kind === 'fanInFanOut');
    const adapter = lora.addAdapter(engine, 'default', { r: R, alpha: 6 });
    lora.setActive('default');
    try {
      const A0 = await read(adapter.A);
      const bound = 1 / Math.sqrt(IN);
      expect(Math.max(...A0.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...A0.map(Math.abs))).toBeGreaterThan(0.9 * bound); // spread over the whole interval
      expect([...(await read(adapter.B))].every((v) => v === 0)).toBe(true);
      expect(adapter.scaling).toBe(2);

      const random = rng(11);
      const xData = randomArray(T * IN, random);
      await engine.scope(async () => {
        const x = engine.tensor(toF32(xData), [T, IN]);
        expect(relativeError(await lora.forward(x).read(), await base.forward(x).read())).toBe(0);
      });

      // Non-zero B, then forward and backward against the reference.
      const bData = randomArray(OUT * R, random);
      engine.gpu.upload(adapter.B.buffer, toF32(bData));
      const dY = randomArray(T * OUT, random);
      await engine.scope(async () => {
        const x = engine.tensor(toF32(xData), [T, IN], { requiresGrad: true });
        const y = lora.forward(x);
        const dims = { rows: T, inFeatures: IN, outFeatures: OUT, rank: R };
        expectClose(await y.read(), loraReference(xData, A0, bData, 2, dims, baseReference(xData, w, bias)), 1e-5, `${kind} forward`);
        engine.backward(y, engine.tensor(toF32(dY), y.shape));
        const ref = loraBackwardReference(xData, A0, bData, 2, dY, dims);
        expectClose(await read(adapter.A.grad!), ref.dA, 1e-4, 'dA');
        expectClose(await read(adapter.B.grad!), ref.dB, 1e-4, 'dB');
        const dxBase = new Float64Array(T * IN);
        for (let t = 0; t < T; t++) for (let o = 0; o < OUT; o++) for (let i = 0; i < IN; i++) dxBase[t * IN + i] += dY[t * OUT + o] * w[o * IN + i];
        expectClose(await read(x.grad!), dxBase.map((v, k) => v + ref.dx[k]), 1e-4, 'dx');
        for (const tensor of base.parameters().values()) expect(tensor.grad).toBeNull();
        expect([...lora.parameters().keys()].filter((k) => k.includes('lora_'))).toEqual(['layer.lora_A.default.weight', 'layer.lora_B.default.weight']);
      });
      adapter.A.grad?.dispose();
      adapter.B.grad?.dispose();
      adapter.A.grad = adapter.B.grad = null;
    } finally {
      lora.dispose();
    }
  });

  it('named adapters switch instantly; disable gives the base; merge / unmerge', async () => {
    const { module: base } = makeBase(kind, 21);
    const baseModule = base;
    const lora = new LoraLinear(base, new LoraRuntime(), kind === 'fanInFanOut');
    const random = rng(5);
    const weights = () => ({ A: toF32(randomArray(R * IN, random, 0.3)), B: toF32(randomArray(OUT * R, random, 0.3)) });
    const first = lora.addAdapter(engine, 'first', { r: R, alpha: 3 }, { weights: weights() });
    const second = lora.addAdapter(engine, 'second', { r: 2, alpha: 4, useRslora: true }, { weights: { A: toF32(randomArray(2 * IN, random)), B: toF32(randomArray(OUT * 2, random)) } });
    expect(second.scaling).toBeCloseTo(4 / Math.sqrt(2), 12);
    try {
      // Inference (nothing recorded, so no tape keeps a deleted adapter's tensors alive).
      const run = (module: Linear, x: Tensor) => read(engine.noGrad(() => module.forward(x)));
      await engine.scope(async () => {
        const x = engine.tensor(toF32(randomArray(T * IN, random)), [T, IN]);
        const baseOut = await run(base, x);
        lora.setActive('first');
        expect(first.A.requiresGrad && !second.A.requiresGrad).toBe(true);
        const outFirst = await run(lora, x);
        lora.setActive('second');
        expect(!first.B.requiresGrad && second.B.requiresGrad).toBe(true);
        const outSecond = await run(lora, x);
        expect(relativeError(outSecond, outFirst)).toBeGreaterThan(0.05);
        lora.setActive('first');
        expect(relativeError(await run(lora, x), outFirst)).toBe(0);
        lora.disabled = true;
        expect(relativeError(await run(lora, x), baseOut)).toBe(0);
        lora.disabled = false;

        await lora.merge(engine);
        expect(lora.mergedAdapter).toBe('first');
        expect(lora.base).toBeInstanceOf(DenseLinear);
        expect((lora.base as DenseLinear).fanInFanOut).toBe(kind === 'fanInFanOut');
        const merged = await run(lora, x);
        const mergeError = relativeError(merged, outFirst);
        expect(mergeError).toBeLessThan(1e-5);
        expect(() => lora.setActive('second')).toThrow(LoraConfigError);
        lora.unmerge();
        if (kind === '4bit') expect(lora.base).toBe(baseModule); // the 4-bit layer itself, untouched
        const unmerged = await run(base, x);
        expect(relativeError(unmerged, baseOut)).toBeLessThan(kind === '4bit' ? 1e-12 : 1e-6);
      });
      lora.deleteAdapter('second');
      expect([...lora.adapters.keys()]).toEqual(['first']);
      expect(second.A.isDestroyed).toBe(true);
    } finally {
      lora.dispose();
    }
  });
});

describe('LoraLinear', () => {
  it('dropout applies in training only, with the Philox mask of the dropout op, and advances the counter', async () => {
    const { module: base, w, bias } = makeBase('dense', 3);
    const runtime = new LoraRuntime(1234, 10);
    const lora = new LoraLinear(base, runtime);
    const random = rng(8);
    const A = randomArray(R * IN, random, 0.3);
    const B = randomArray(OUT * R, random, 0.3);
    lora.addAdapter(engine, 'default', { r: R, alpha: R, dropout: 0.25 }, { weights: { A: toF32(A), B: toF32(B) } });
    lora.setActive('default');
    try {
      await engine.scope(async () => {
        const xData = randomArray(T * IN, random);
        const x = engine.tensor(toF32(xData), [T, IN]);
        const dims = { rows: T, inFeatures: IN, outFeatures: OUT, rank: R };
        const baseOut = baseReference(xData, w, bias);
        expectClose(await lora.forward(x).read(), loraReference(xData, A, B, 1, dims, baseOut), 1e-5, 'eval: no dropout');
        expect(runtime.offset).toBe(10);
        runtime.training = true;
        const trained = await lora.forward(x).read();
        expectClose(trained, loraReference(dropoutReference(xData, 0.25, 1234, 10), A, B, 1, dims, baseOut), 1e-5, 'training: dropout on x');
        expect(runtime.offset).toBe(10 + T * IN);
        expect(relativeError(await lora.forward(x).read(), trained)).toBeGreaterThan(1e-3); // the next mask differs
        engine.clearTape();
      });
    } finally {
      lora.dispose();
    }
  });

  it('refuses bad hyperparameters with an error naming the field', () => {
    const base = new DenseLinear('model.layers.0.self_attn.q_proj', engine.keep(engine.zeros([OUT, IN])));
    const lora = new LoraLinear(base, new LoraRuntime());
    const fieldOf = (config: Parameters<LoraLinear['addAdapter']>[2]) => {
      try {
        lora.addAdapter(engine, 'x', config);
      } catch (error) {
        expect(error).toBeInstanceOf(LoraConfigError);
        return [(error as LoraConfigError).field, (error as Error).message];
      }
      return null;
    };
    expect(fieldOf({ r: 0, alpha: 8 })).toEqual(['r', expect.stringContaining('positive integer')]);
    expect(fieldOf({ r: 2.5, alpha: 8 })?.[0]).toBe('r');
    expect(fieldOf({ r: 25, alpha: 8 })).toEqual(['r', expect.stringContaining('larger than model.layers.0.self_attn.q_proj allows (min(in 40, out 24) = 24)')]);
    expect(fieldOf({ r: 2, alpha: Number.NaN })?.[0]).toBe('lora_alpha');
    expect(fieldOf({ r: 2, alpha: 0 })?.[0]).toBe('lora_alpha');
    expect(fieldOf({ r: 2, alpha: 8, dropout: 1 })?.[0]).toBe('lora_dropout');
    expect(lora.adapters.size).toBe(0);
    expect(() => new LoraLinear(lora, new LoraRuntime())).toThrow(/already LoRA-adapted/);
    lora.dispose();
  });

  it('Kaiming-uniform(a=√5) init is U(−1/√in, 1/√in) and seeded', () => {
    const a = kaimingUniform(16, 100, 1);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(0.1);
    const variance = a.reduce((s, v) => s + v * v, 0) / a.length;
    expect(variance).toBeGreaterThan(0.8 * (0.01 / 3));
    expect(variance).toBeLessThan(1.2 * (0.01 / 3)); // U(−b, b) has variance b² / 3
    expect(kaimingUniform(16, 100, 1)).toEqual(a);
    expect(kaimingUniform(16, 100, 2)).not.toEqual(a);
    expect(loraScaling(16, 32, false)).toBe(2);
    expect(loraScaling(16, 32, true)).toBe(8);
  });
});
