// embedding: rows of a [V, C] table gathered by integer ids of any shape (shaders/embedding.wgsl).
// The table gradient is a deterministic scatter-add over all V rows (zeros where no id points).
// Ids outside [0, V) are not an error, because checking them would need a readback: their output
// rows are zero and they contribute no gradient. The kernel never reads outside the table.

import { u32 } from '../../gpu/runtime.ts';
import { ShapeError, shapeText } from '../errors.ts';
import { grid1d, MAX_WORKGROUPS_PER_DIMENSION } from '../kernels/grid.ts';
import type { Tensor } from '../tensor.ts';
import { requireDType } from './checks.ts';

const WORKGROUP_SIZE = 256;
const SCATTER_COLUMNS = 64; // SCATTER_COLUMNS in the shader
/** Aim for about this many scatter-add threads: columns × vocabulary chunks. */
const SCATTER_THREADS = 16384;

/** out [...ids.shape, C] = table[ids]. ids: i32 of any shape; table: f32 [V, C]. */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  requireDType('embedding', ids, 'i32');
  requireDType('embedding', table, 'f32');
  if (table.rank !== 2) {
    throw new ShapeError(`embedding: table must be [V, C], got ${shapeText(table.shape)}`);
  }
  const [vocab, width] = table.shape;
  if (Math.ceil(width / SCATTER_COLUMNS) > MAX_WORKGROUPS_PER_DIMENSION) {
    throw new ShapeError(`embedding: table ${shapeText(table.shape)} is wider than the scatter-add grid allows`);
  }
  const engine = table.engine;
  const tokens = ids.size;
  const out = engine.empty([...ids.shape, width]);
  if (out.size > 0) {
    engine.gpu.dispatch(
      { shader: 'embedding', entryPoint: 'embeddingForward' },
      {
        params: [u32(tokens), u32(vocab), u32(width), u32(0)],
        bindings: [ids.binding, table.binding, out.binding],
        workgroups: grid1d(out.size, WORKGROUP_SIZE),
      },
    );
  }

  if (engine.needsGrad([table])) {
    engine.record(out, [table], [ids], (dOut) => [embeddingTableGrad(ids, dOut, vocab, width)]);
  }
  return out;
}

/** dTable [V, C]: per vocabulary row, the sum of the output gradients of the tokens with that id. */
function embeddingTableGrad(ids: Tensor, dOut: Tensor, vocab: number, width: number): Tensor {
  const engine = dOut.engine;
  const dTable = engine.zeros([vocab, width]);
  if (dTable.size === 0 || ids.size === 0) return dTable;
  // Split the vocabulary into chunks so that columns × chunks threads keep the device busy; each
  // thread still reads every id, so more chunks than that only adds work.
  const chunks = Math.min(vocab, MAX_WORKGROUPS_PER_DIMENSION, Math.max(1, Math.ceil(SCATTER_THREADS / width)));
  const rowsPerChunk = Math.ceil(vocab / chunks);
  engine.gpu.dispatch(
    { shader: 'embedding', entryPoint: 'embeddingBackward' },
    {
      params: [u32(ids.size), u32(vocab), u32(width), u32(rowsPerChunk)],
      bindings: [ids.binding, undefined, undefined, dOut.binding, dTable.binding],
      workgroups: [Math.ceil(width / SCATTER_COLUMNS), Math.ceil(vocab / rowsPerChunk)],
    },
  );
  return dTable;
}
