// float64 CPU reference for attention: defines the right answer for the GPU kernels and their
// gradients. Layouts as in ops/attention.ts: q, out [B, T, H, D]; k, v [B, S, KVH, D]; query head h
// reads kv head floor(h / (H / KVH)). Query t attends to keys s <= t + kvOffset when causal, to all
// keys otherwise. Written for clarity: it builds each row's probabilities explicitly.

export interface AttentionReferenceDims {
  B: number;
  T: number;
  S: number;
  H: number;
  KVH: number;
  D: number;
  scale: number;
  causal: boolean;
  /** Key position of query 0 (S − T for a full KV cache). */
  kvOffset: number;
}

/** Dims with the op's defaults: scale 1/sqrt(D), causal, kvOffset S − T. */
export function attentionReferenceDims(
  B: number,
  T: number,
  S: number,
  H: number,
  KVH: number,
  D: number,
  options: { scale?: number; causal?: boolean; kvOffset?: number } = {},
): AttentionReferenceDims {
  return { B, T, S, H, KVH, D, scale: options.scale ?? 1 / Math.sqrt(D), causal: options.causal ?? true, kvOffset: options.kvOffset ?? S - T };
}

const queryIndex = (d: AttentionReferenceDims, b: number, t: number, h: number) => ((b * d.T + t) * d.H + h) * d.D;
const keyIndex = (d: AttentionReferenceDims, b: number, s: number, kvh: number) => ((b * d.S + s) * d.KVH + kvh) * d.D;
const kvHead = (d: AttentionReferenceDims, h: number) => Math.floor(h / (d.H / d.KVH));
/** How many keys query t sees: keys 0 .. visibleKeys − 1. */
const visibleKeys = (d: AttentionReferenceDims, t: number) => (d.causal ? Math.min(d.S, t + d.kvOffset + 1) : d.S);

function dotRows(x: Float64Array, xBase: number, y: Float64Array, yBase: number, D: number): number {
  let sum = 0;
  for (let i = 0; i < D; i++) sum += x[xBase + i] * y[yBase + i];
  return sum;
}

/** Softmax probabilities of query (b, t, h) over its visible keys, and their log-sum-exp. */
function rowProbabilities(q: Float64Array, k: Float64Array, d: AttentionReferenceDims, b: number, t: number, h: number) {
  const count = visibleKeys(d, t);
  const scores = new Float64Array(count);
  for (let s = 0; s < count; s++) {
    scores[s] = d.scale * dotRows(q, queryIndex(d, b, t, h), k, keyIndex(d, b, s, kvHead(d, h)), d.D);
  }
  const max = Math.max(...scores);
  let sum = 0;
  for (const score of scores) sum += Math.exp(score - max);
  const probabilities = scores.map((score) => Math.exp(score - max) / sum);
  return { probabilities, logSumExp: max + Math.log(sum) };
}

/** out [B, T, H, D] = softmax(scale · q kᵀ, masked) v, and the log-sum-exp [B, H, T] of each row. */
export function attentionReference(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  d: AttentionReferenceDims,
): { out: Float64Array; logSumExp: Float64Array } {
  const out = new Float64Array(d.B * d.T * d.H * d.D);
  const logSumExp = new Float64Array(d.B * d.H * d.T);
  for (let b = 0; b < d.B; b++) {
    for (let t = 0; t < d.T; t++) {
      for (let h = 0; h < d.H; h++) {
        const row = rowProbabilities(q, k, d, b, t, h);
        logSumExp[(b * d.H + h) * d.T + t] = row.logSumExp;
        const o = queryIndex(d, b, t, h);
        row.probabilities.forEach((p, s) => {
          const kv = keyIndex(d, b, s, kvHead(d, h));
          for (let i = 0; i < d.D; i++) out[o + i] += p * v[kv + i];
        });
      }
    }
  }
  return { out, logSumExp };
}

/**
 * dQ, dK, dV for an output gradient dOut, analytically. Per row with probabilities p:
 * dp_s = dO · v_s, dScore_s = p_s (dp_s − Σ_r p_r dp_r), dQ += scale · dScore_s k_s,
 * dK_s += scale · dScore_s q, dV_s += p_s dO. Key gradients sum over every query head of the group.
 */
export function attentionBackwardReference(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  dOut: Float64Array,
  d: AttentionReferenceDims,
): { dQ: Float64Array; dK: Float64Array; dV: Float64Array } {
  const dQ = new Float64Array(q.length);
  const dK = new Float64Array(k.length);
  const dV = new Float64Array(v.length);
  for (let b = 0; b < d.B; b++) {
    for (let t = 0; t < d.T; t++) {
      for (let h = 0; h < d.H; h++) {
        const { probabilities } = rowProbabilities(q, k, d, b, t, h);
        const row = queryIndex(d, b, t, h);
        const dp = probabilities.map((_, s) => dotRows(dOut, row, v, keyIndex(d, b, s, kvHead(d, h)), d.D));
        let weighted = 0;
        probabilities.forEach((p, s) => (weighted += p * dp[s]));
        probabilities.forEach((p, s) => {
          const kv = keyIndex(d, b, s, kvHead(d, h));
          const dScore = p * (dp[s] - weighted);
          for (let i = 0; i < d.D; i++) {
            dQ[row + i] += d.scale * dScore * k[kv + i];
            dK[kv + i] += d.scale * dScore * q[row + i];
            dV[kv + i] += p * dOut[row + i];
          }
        });
      }
    }
  }
  return { dQ, dK, dV };
}
