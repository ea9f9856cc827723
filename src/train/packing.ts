// Packing tokenized examples into fixed-length rows for training, the held-out validation split, and the
// seeded order in which rows are drawn.
//
// A row of L input positions is cut from a window of up to L + 1 tokens: inputs are window[0..L), and the label
// at position i is window[i + 1] (the next token), or IGNORE_INDEX (−100, what crossEntropy skips) when
//   - window[i + 1] is not a target (a prompt, a user turn, the first token of an example), or
//   - window[i + 1] belongs to another example than window[i] (no learning to predict across a boundary), or
//   - position i + 1 is padding.
// Examples are never split across rows: each row is filled greedily with whole examples in order (an example is
// at most L + 1 tokens; data.ts truncates or splits longer ones) and padded with `padId`. Examples packed into one
// row attend to one another (the causal attention has no block-diagonal mask), as in common packed fine-tuning.
//
// Order: the examples are shuffled once by the seed before the validation split and packing; training then draws
// rows epoch after epoch, each epoch a fresh permutation of all rows derived from (seed, epoch). The only state is
// the number of rows drawn so far, so a checkpoint resumes the exact order.

import type { TokenizedDataset, TokenizedExample } from './data.ts';

export const IGNORE_INDEX = -100;

/** Seeds are integers in [0, 2^32). */
export const MAX_SEED = 2 ** 32 - 1;

export function checkSeed(seed: number, what = 'seed'): void {
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > MAX_SEED) throw new RangeError(`${what} must be an integer in [0, 2^32), got ${seed}`);
}

/** murmur3's 32-bit finalizer: mixes a seed and a stream number into an independent seed. */
export function deriveSeed(seed: number, ...streams: number[]): number {
  let h = seed >>> 0;
  for (const stream of streams) {
    h = (h ^ Math.imul((stream >>> 0) + 0x9e3779b9, 0x85ebca6b)) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** mulberry32: a small seeded generator whose whole state is one 32-bit number. */
export class SeededRandom {
  constructor(public state: number) {
    checkSeed(state, 'random state');
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  nextInt(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** Fisher–Yates, in place. */
export function shuffleInPlace<T>(items: T[], random: SeededRandom): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = random.nextInt(i + 1);
    const held = items[i];
    items[i] = items[j];
    items[j] = held;
  }
  return items;
}

/** The identity permutation of n shuffled by `seed`. */
export function permutation(n: number, seed: number): Uint32Array {
  const order = Array.from({ length: n }, (_, i) => i);
  return Uint32Array.from(shuffleInPlace(order, new SeededRandom(seed)));
}

export interface PackOptions {
  /** L: input positions per row. */
  seqLen: number;
  /** Token id of padding positions (never a label). */
  padId: number;
}

export interface PackedSequences {
  readonly seqLen: number;
  readonly rows: number;
  /** [rows, seqLen] token ids. */
  readonly inputs: Int32Array;
  /** [rows, seqLen] next-token labels, IGNORE_INDEX where nothing is learned. */
  readonly labels: Int32Array;
  /** Labels that are not IGNORE_INDEX, per row and in all. */
  readonly targetsPerRow: Uint32Array;
  readonly targetTokens: number;
  readonly examples: number;
  /** Positions holding a token rather than padding. */
  readonly realTokens: number;
}

/** Pack examples, in the order given, into rows (see the file header). */
export function packSequences(examples: readonly TokenizedExample[], options: PackOptions): PackedSequences {
  const { seqLen, padId } = options;
  if (!Number.isSafeInteger(seqLen) || seqLen < 1) throw new RangeError(`packSequences: seqLen must be a positive integer, got ${seqLen}`);
  if (!Number.isSafeInteger(padId) || padId < 0) throw new RangeError(`packSequences: padId must be a non-negative integer, got ${padId}`);
  const capacity = seqLen + 1;
  // Row boundaries first: rows[r] = [first example, end example).
  const starts: number[] = [];
  let used = capacity;
  examples.forEach((example, index) => {
    const n = example.ids.length;
    if (n > capacity) throw new RangeError(`packSequences: the example from line ${example.line} has ${n} tokens, over the ${capacity} a row of ${seqLen} holds`);
    if (n === 0) return;
    if (used + n > capacity) {
      starts.push(index);
      used = 0;
    }
    used += n;
  });
  const rows = starts.length;
  const inputs = new Int32Array(rows * seqLen).fill(padId);
  const labels = new Int32Array(rows * seqLen).fill(IGNORE_INDEX);
  const targetsPerRow = new Uint32Array(rows);
  let targetTokens = 0;
  let realTokens = 0;
  for (let r = 0; r < rows; r++) {
    const end = r + 1 < rows ? starts[r + 1] : examples.length;
    let at = 0; // position in the window
    for (let e = starts[r]; e < end; e++) {
      const { ids, targets } = examples[e];
      for (let k = 0; k < ids.length; k++, at++) {
        if (at < seqLen) {
          inputs[r * seqLen + at] = ids[k];
          realTokens++;
        }
        // Token k is the label of the previous position when both are in this example.
        if (k > 0 && targets[k] === 1) {
          labels[r * seqLen + at - 1] = ids[k];
          targetsPerRow[r]++;
        }
      }
    }
    targetTokens += targetsPerRow[r];
  }
  return { seqLen, rows, inputs, labels, targetsPerRow, targetTokens, examples: examples.length, realTokens };
}

export interface PackDatasetOptions extends PackOptions {
  seed: number;
  /** Share of examples held out for validation (default 0.1; at least one when there are two or more examples). */
  validationFraction?: number;
  /** Exact number of examples held out; overrides validationFraction. */
  validationExamples?: number;
}

export interface PackedDataset {
  readonly train: PackedSequences;
  /** Null when nothing is held out (validation 0, or a single example). */
  readonly validation: PackedSequences | null;
}

/** Shuffle the examples by the seed, hold out the validation examples, pack both parts. */
export function packDataset(dataset: Pick<TokenizedDataset, 'examples'>, options: PackDatasetOptions): PackedDataset {
  checkSeed(options.seed);
  const n = dataset.examples.length;
  const fraction = options.validationFraction ?? 0.1;
  if (!(fraction >= 0 && fraction < 1)) throw new RangeError(`validationFraction must be in [0, 1), got ${fraction}`);
  let held: number;
  if (options.validationExamples !== undefined) {
    held = options.validationExamples;
    if (!Number.isSafeInteger(held) || held < 0 || (held > 0 && held >= n)) {
      throw new RangeError(`validationExamples must be an integer in [0, ${Math.max(0, n - 1)}] for ${n} examples, got ${held}`);
    }
  } else {
    held = fraction === 0 || n < 2 ? 0 : Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
  }
  const order = shuffleInPlace([...dataset.examples], new SeededRandom(deriveSeed(options.seed, 1)));
  const validation = order.slice(0, held);
  const train = order.slice(held);
  if (train.length === 0) throw new RangeError('packDataset: no examples left for training');
  return { train: packSequences(train, options), validation: held > 0 ? packSequences(validation, options) : null };
}

/** Rows for the next micro-batches: epoch after epoch, each a permutation of all rows from (seed, epoch). */
export class RowSampler {
  private epochOrder: Uint32Array | null = null;
  private orderEpoch = -1;

  constructor(
    readonly rows: number,
    readonly seed: number,
    /** Rows drawn so far (the data position a checkpoint stores). */
    public position = 0,
  ) {
    if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`RowSampler: need at least one row, got ${rows}`);
    checkSeed(seed);
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`RowSampler: position must be a non-negative integer, got ${position}`);
  }

  get epoch(): number {
    return Math.floor(this.position / this.rows);
  }

  /** The next `count` row indices. */
  next(count: number): number[] {
    const out: number[] = [];
    for (let k = 0; k < count; k++) {
      const epoch = Math.floor(this.position / this.rows);
      if (epoch !== this.orderEpoch) {
        this.epochOrder = permutation(this.rows, deriveSeed(this.seed, 2, epoch));
        this.orderEpoch = epoch;
      }
      out.push(this.epochOrder![this.position % this.rows]);
      this.position++;
    }
    return out;
  }
}

export interface RowBatch {
  /** [B, L] */
  readonly inputs: Int32Array;
  /** [B, L] */
  readonly labels: Int32Array;
  readonly rows: number;
  /** Labels that count (not IGNORE_INDEX). */
  readonly targets: number;
}

/** Copy rows (by index) of packed sequences into one batch. */
export function gatherRows(packed: PackedSequences, rowIndices: readonly number[]): RowBatch {
  const L = packed.seqLen;
  const inputs = new Int32Array(rowIndices.length * L);
  const labels = new Int32Array(rowIndices.length * L);
  let targets = 0;
  rowIndices.forEach((row, b) => {
    if (!(row >= 0 && row < packed.rows)) throw new RangeError(`gatherRows: row ${row} is outside [0, ${packed.rows})`);
    inputs.set(packed.inputs.subarray(row * L, (row + 1) * L), b * L);
    labels.set(packed.labels.subarray(row * L, (row + 1) * L), b * L);
    targets += packed.targetsPerRow[row];
  });
  return { inputs, labels, rows: rowIndices.length, targets };
}

/** FNV-1a (32-bit) over the shape, inputs and labels, as 8 hex digits: identifies the data a checkpoint was trained on. */
export function packedFingerprint(packed: PackedSequences): string {
  let h = 0x811c9dc5;
  const mix = (value: number) => {
    for (let shift = 0; shift < 32; shift += 8) {
      h ^= (value >>> shift) & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  };
  mix(packed.seqLen);
  mix(packed.rows);
  for (const value of packed.inputs) mix(value);
  for (const value of packed.labels) mix(value);
  return h.toString(16).padStart(8, '0');
}
