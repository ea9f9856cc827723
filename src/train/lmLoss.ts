// The language-model loss of a batch without materialising its [N, V] logits: the LM head and the cross-entropy
// run over chunks of rows of the final hidden states. Letters: N rows (tokens of the batch), C hidden size,
// V vocabulary, n rows of one chunk.
//
// Forward, per chunk: hidden rows [n, C] are copied out, logits [n, V] = h · Wᵀ, the row losses go into one
// [N] tensor (crossEntropyRows). When a gradient is wanted it is formed right there, while the chunk's logits
// exist: dLogits = crossEntropyRowsBackward(…, dLoss = 1, count), dH rows = dLogits · W, and, when the head
// weight itself is trained, dW += dLogitsᵀ · h. So peak memory holds one chunk of logits, plus dH [N, C] (and
// dW [V, C]) until backward, where they are scaled by the incoming gradient of the loss. The row losses and
// gradients are the same numbers as crossEntropy(model.forward(ids)) up to float summation order in dW.

import { matmul, matmulInto } from '../engine/ops/matmul.ts';
import { crossEntropyCount, crossEntropyMean, crossEntropyRows, crossEntropyRowsBackward } from '../engine/ops/crossEntropy.ts';
import { mul } from '../engine/ops/arithmetic.ts';
import { ShapeError, shapeText } from '../engine/errors.ts';
import { requireDType } from '../engine/ops/checks.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { CausalLM } from '../models/model.ts';
import { IGNORE_INDEX } from './packing.ts';

/** Logit elements per chunk by default (16 MiB of f32). */
export const DEFAULT_CHUNK_ELEMENTS = 1 << 22;

export interface LmLossOptions {
  /** Rows per chunk; default as many as fit DEFAULT_CHUNK_ELEMENTS logits (at least 1). */
  chunkRows?: number;
}

/**
 * The LM head weight [V, C] (the token embedding when tied). Uses the model's own `headWeight()` when it exposes
 * one, else finds the tensor among parameters(): `lm_head.weight`, or the tied embedding.
 */
export function lmHeadWeight(model: CausalLM): Tensor {
  const own = (model as unknown as { headWeight?: () => Tensor }).headWeight;
  if (typeof own === 'function') return own.call(model);
  const { vocabSize: V, hiddenSize: C, tieWordEmbeddings } = model.config;
  const suffixes = tieWordEmbeddings ? ['embed_tokens.weight', 'wte.weight'] : ['lm_head.weight'];
  for (const [name, tensor] of model.parameters()) {
    if (suffixes.some((suffix) => name === suffix || name.endsWith(`.${suffix}`)) && tensor.rank === 2 && tensor.shape[0] === V && tensor.shape[1] === C) {
      return tensor;
    }
  }
  throw new Error(`lmHeadWeight: the ${model.config.modelType} model exposes no LM head weight [${V}, ${C}]`);
}

/**
 * [] f32: mean cross-entropy of the logits hidden · headᵀ against targets over the rows whose target is not
 * IGNORE_INDEX (0 when none counts). hidden [..., C] with N rows in all, targets i32 with N elements, head [V, C].
 * Records a backward for hidden and head when either requires a gradient.
 */
export function chunkedLmLoss(hidden: Tensor, targets: Tensor, head: Tensor, options: LmLossOptions = {}): Tensor {
  const op = 'chunkedLmLoss';
  requireDType(op, hidden, 'f32');
  requireDType(op, head, 'f32');
  requireDType(op, targets, 'i32');
  if (head.rank !== 2 || hidden.rank < 1 || hidden.shape[hidden.rank - 1] !== head.shape[1]) {
    throw new ShapeError(`${op}: hidden ${shapeText(hidden.shape)} does not end in the head's width, head ${shapeText(head.shape)}`);
  }
  const [V, C] = head.shape;
  const N = hidden.size / C;
  if (targets.size !== N) throw new ShapeError(`${op}: hidden ${shapeText(hidden.shape)} has ${N} rows but targets ${shapeText(targets.shape)} has ${targets.size}`);
  const chunkRows = options.chunkRows ?? Math.max(1, Math.floor(DEFAULT_CHUNK_ELEMENTS / Math.max(1, V)));
  if (!Number.isSafeInteger(chunkRows) || chunkRows < 1) throw new RangeError(`${op}: chunkRows must be a positive integer, got ${chunkRows}`);

  const engine = hidden.engine;
  const needHidden = engine.needsGrad([hidden]);
  const needHead = engine.needsGrad([head]);
  const flatTargets = targets.rank === 1 ? targets : targets.view([N]);
  const count = crossEntropyCount(flatTargets, { ignoreIndex: IGNORE_INDEX });
  const rowLoss = engine.empty([N]);
  const dHidden = needHidden ? engine.empty(hidden.shape) : null; // filled row chunk by row chunk
  const dHead = needHead ? engine.zeros([V, C]) : null;
  const ones = needHidden || needHead ? engine.full([], 1) : null;

  engine.noGrad(() => {
    for (let r0 = 0; r0 < N; r0 += chunkRows) {
      const n = Math.min(chunkRows, N - r0);
      engine.scope(() => {
        const rows = engine.empty([n, C]);
        engine.gpu.copy(hidden.buffer, r0 * C * 4, rows.buffer, 0, n * C * 4);
        const logits = matmul(rows, head, { transposeB: true }); // [n, V]
        const { rowStats } = crossEntropyRows(logits, flatTargets, { rowOffset: r0, rowLoss, ignoreIndex: IGNORE_INDEX });
        if (!ones) return;
        const dLogits = crossEntropyRowsBackward(logits, flatTargets, rowStats, ones, count, { rowOffset: r0, ignoreIndex: IGNORE_INDEX });
        if (dHidden) {
          const dRows = matmul(dLogits, head); // [n, C]
          engine.gpu.copy(dRows.buffer, 0, dHidden.buffer, r0 * C * 4, n * C * 4);
        }
        if (dHead) {
          // dW [V, C] += dLogitsᵀ [V, n] · rows [n, C]
          matmulInto(dHead, dLogits, rows, { batch: 1, M: V, N: C, K: n, aBatched: false, bBatched: false }, true, false, 1, 1);
        }
      });
    }
  });
  const loss = crossEntropyMean(rowLoss, count);
  rowLoss.dispose();
  count.dispose();
  if (flatTargets !== targets) flatTargets.dispose();
  ones?.dispose();

  if (needHidden || needHead) {
    const saved = [dHidden, dHead].filter((t): t is Tensor => t !== null);
    engine.record(loss, [hidden, head], saved, (dLoss, [wantHidden, wantHead]) => [
      wantHidden && dHidden ? mul(dHidden, dLoss) : null,
      wantHead && dHead ? mul(dHead, dLoss) : null,
    ]);
    // The tape holds its own references.
    for (const tensor of saved) tensor.dispose();
  }
  return loss;
}
