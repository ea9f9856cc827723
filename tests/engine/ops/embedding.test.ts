import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../../src/engine/errors.ts';
import { embedding } from '../../../src/engine/ops/embedding.ts';
import { embeddingBackwardReference, embeddingReference } from '../../../src/engine/reference/embedding.ts';
import { testEngine } from '../../helpers/gpu.ts';
import { dot, expectClose, numericGradient, randomArray, rng, toF32 } from '../../helpers/numeric.ts';

const engine = await testEngine();

interface Case {
  idsShape: number[];
  vocab: number;
  width: number;
}

// Awkward sizes: a single token and column, odd widths, widths past the 64-column scatter block,
// a scalar id, and far more tokens than vocabulary rows (many repeats per row).
const cases: Case[] = [
  { idsShape: [1], vocab: 1, width: 1 },
  { idsShape: [], vocab: 4, width: 3 },
  { idsShape: [2, 3], vocab: 7, width: 5 },
  { idsShape: [3, 17], vocab: 50, width: 33 },
  { idsShape: [2, 2, 5], vocab: 9, width: 130 },
  { idsShape: [200], vocab: 3, width: 7 },
];

const size = (shape: number[]) => shape.reduce((p, x) => p * x, 1);

function randomIds(n: number, vocab: number, random: () => number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(random() * vocab));
}

describe('embedding', () => {
  it.each(cases)('GPU forward and table gradient match the float64 reference: %o', async ({ idsShape, vocab, width }) => {
    const random = rng(vocab * 100 + width);
    const ids = randomIds(size(idsShape), vocab, random);
    const tableData = randomArray(vocab * width, random);
    const dOutData = randomArray(ids.length * width, random);

    await engine.scope(async () => {
      const table = engine.tensor(toF32(tableData), [vocab, width], { requiresGrad: true });
      const out = embedding(engine.tensor(ids, idsShape), table);
      expect(out.shape).toEqual([...idsShape, width]);
      const outRead = await out.read();
      expectClose(outRead, embeddingReference(ids, tableData, vocab, width), 1e-5, 'out');

      engine.backward(out, engine.tensor(toF32(dOutData), out.shape));
      const expected = embeddingBackwardReference(ids, dOutData, vocab, width);
      const dTable = await table.grad!.read();
      expect(table.grad!.shape).toEqual([vocab, width]);
      expectClose(dTable, expected, 1e-5, 'dTable');
    });
  });

  it('zero-fills unused rows and ignores out-of-range ids in both directions', async () => {
    const vocab = 6;
    const width = 4;
    const ids = Int32Array.from([2, -1, 6, 2, 1000000, 4, -2147483648]);
    const random = rng(3);
    const tableData = randomArray(vocab * width, random);
    const dOutData = randomArray(ids.length * width, random);
    await engine.scope(async () => {
      const table = engine.tensor(toF32(tableData), [vocab, width], { requiresGrad: true });
      const out = embedding(engine.tensor(ids, [ids.length]), table);
      const values = await out.read();
      expectClose(values, embeddingReference(ids, tableData, vocab, width), 1e-6, 'out');
      // Rows of out-of-range ids are exactly zero.
      for (const n of [1, 2, 4, 6]) expect(Array.from(values.subarray(n * width, (n + 1) * width))).toEqual([0, 0, 0, 0]);

      engine.backward(out, engine.tensor(toF32(dOutData), out.shape));
      const dTable = await table.grad!.read();
      expectClose(dTable, embeddingBackwardReference(ids, dOutData, vocab, width), 1e-6, 'dTable');
      // Rows 0, 1, 3 and 5 are never looked up: their gradient is exactly zero.
      for (const row of [0, 1, 3, 5]) expect(Array.from(dTable.subarray(row * width, (row + 1) * width))).toEqual([0, 0, 0, 0]);
      // Row 2 is hit twice: the sum of both output gradients.
      for (let c = 0; c < width; c++) expect(dTable[2 * width + c]).toBeCloseTo(dOutData[c] + dOutData[3 * width + c], 6);
    });
  });

  it('gives the same table gradient bit for bit on every run (no atomics)', async () => {
    const random = rng(11);
    const vocab = 5;
    const width = 70;
    const ids = randomIds(300, vocab, random);
    const dOutData = toF32(randomArray(ids.length * width, random));
    const runs: Float32Array[] = [];
    for (let run = 0; run < 2; run++) {
      await engine.scope(async () => {
        const table = engine.zeros([vocab, width], { requiresGrad: true });
        const out = embedding(engine.tensor(ids, [ids.length]), table);
        engine.backward(out, engine.tensor(dOutData, out.shape));
        runs.push((await table.grad!.read()) as Float32Array);
      });
    }
    expect(Array.from(runs[1])).toEqual(Array.from(runs[0]));
  });

  it('records nothing for a frozen table', async () => {
    await engine.scope(async () => {
      const table = engine.tensor(toF32(randomArray(12, rng(5))), [4, 3]);
      const out = embedding(engine.tensor(Int32Array.from([3, 0]), [2]), table);
      expect(out.requiresGrad).toBe(false);
      expect(table.grad).toBeNull();
    });
  });

  it('reference table gradient agrees with central finite differences', () => {
    const random = rng(9);
    const vocab = 5;
    const width = 3;
    const ids = Int32Array.from([0, 4, 4, 2, -1, 7, 2]);
    const table = randomArray(vocab * width, random);
    const weights = randomArray(ids.length * width, random);
    expectClose(
      numericGradient((t) => dot(embeddingReference(ids, t, vocab, width), weights), table),
      embeddingBackwardReference(ids, weights, vocab, width),
      1e-6,
      'dTable',
    );
  });

  it('rejects ids that are not i32 and tables that are not f32 [V, C]', () => {
    engine.scope(() => {
      const table = engine.zeros([4, 3]);
      expect(() => embedding(engine.zeros([2]), table)).toThrow(DTypeError);
      expect(() => embedding(engine.zeros([2]), table)).toThrow('must be i32');
      const ids = engine.tensor(Int32Array.from([1, 2]), [2]);
      expect(() => embedding(ids, engine.zeros([12]))).toThrow(ShapeError);
      expect(() => embedding(ids, engine.zeros([12]))).toThrow('[V, C], got [12]');
      expect(() => embedding(ids, engine.zeros([2, 2, 3]))).toThrow(ShapeError);
      expect(() => embedding(ids, engine.zeros([4, 3], { dtype: 'i32' }))).toThrow(DTypeError);
    });
  });
});
